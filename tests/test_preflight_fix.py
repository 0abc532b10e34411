"""Normalisation (``fix=True``): what is repaired, what is never touched, and what the output looks like."""

from __future__ import annotations

import pytest
from _preflight_support import (
    apng,
    encode,
    exif_block,
    flat_png,
    jpeg,
    noise,
    open_image,
    pad_jpeg_to,
    picture,
    png,
)
from PIL import Image as PILImage
from PIL import ImageCms

from netverify_async import Image, MimeType, PreflightReport, check_image_sync
from netverify_async._constants import MAX_IMAGE_BYTES
from netverify_async._imagefix import JPEG_QUALITY_MAX, JPEG_QUALITY_MIN, encode_to_fit


def fix(data: bytes, mime: str | None = None, **options: object) -> PreflightReport:
    return check_image_sync(data, mime, fix=True, **options)  # type: ignore[arg-type]


def output_of(report: PreflightReport) -> PILImage.Image:
    assert report.image is not None
    return open_image(report.image.data)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("WEBP", {}),
        ("TIFF", {}),
        ("BMP", {}),
        ("GIF", {}),
        ("WEBP", {"exif": exif_block(gps=True)}),
    ],
)
def test_other_formats_are_converted_to_jpeg(fmt: str, options: dict[str, object]) -> None:
    report = fix(encode(picture(1200, 800), fmt, **options))
    assert report.ok, report.errors
    assert report.format == "JPEG" and (report.width, report.height) == (1200, 800)
    assert f"converted {fmt} to JPEG" in report.changes
    assert report.image is not None and report.image.mime_type is MimeType.JPEG
    out = output_of(report)
    assert out.format == "JPEG" and out.mode == "RGB"
    assert not out.getexif()


def test_heic_is_converted_when_pillow_heif_is_installed() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    data = encode(picture(1200, 800), "HEIF", quality=80)
    assert check_image_sync(data).error_codes == {"unsupported_format"}
    report = fix(data)
    assert report.ok and report.changes == ("converted HEIF to JPEG",)
    assert output_of(report).size == (1200, 800)


def test_animated_gif_keeps_its_first_frame() -> None:
    frames = [PILImage.new("RGB", (1200, 800), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    report = fix(data)
    assert report.ok
    assert "kept the first of 2 frames" in report.changes
    r, _, b = output_of(report).convert("RGB").getpixel((600, 400))  # type: ignore[misc]
    assert r > 200 and b < 60


def test_exif_orientation_is_applied_and_dropped() -> None:
    stored = PILImage.new("RGB", (400, 600), "white")
    stored.paste((255, 0, 0), (0, 0, 50, 50))  # red mark in the stored top-left corner
    report = fix(encode(stored, "JPEG", exif=exif_block(orientation=6)))
    assert report.ok
    assert (report.width, report.height) == (600, 400)
    assert any("EXIF orientation" in c for c in report.changes)
    assert "exif_orientation" not in report.warning_codes
    out = output_of(report)
    r, g, b = out.getpixel((575, 25))  # type: ignore[misc]  # rotating 90° clockwise moves it to the top-right
    assert r > 200 and g < 60 and b < 60
    assert 0x0112 not in out.getexif()


def test_gps_position_and_other_metadata_are_stripped_when_reencoding() -> None:
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    data = encode(picture(1200, 800), "JPEG", exif=exif_block(orientation=8, gps=True), comment=b"x", xmp=xmp)
    before = fix(data, integrity="header")
    source = open_image(data)
    assert source.getexif().get_ifd(0x8825) and "comment" in source.info and "xmp" in source.info
    assert before.ok
    assert any("GPS" in c and "EXIF" in c and "XMP" in c and "comments" in c for c in before.changes)
    out = output_of(before)
    assert not out.getexif() and not out.getexif().get_ifd(0x8825)
    assert "comment" not in out.info and "xmp" not in out.info
    assert "gps_location" not in before.warning_codes


def test_valid_image_is_returned_byte_identical_even_with_metadata() -> None:
    original = Image.from_bytes(jpeg(exif=exif_block(gps=True)))
    report = check_image_sync(original.data, original.mime_type, fix=True)
    assert report.ok and report.changes == ()
    assert report.image is not None and report.image.data is original.data
    assert report.warning_codes == {"gps_location"}  # only re-encoding drops it; nothing else needed that


def test_wide_png_is_downscaled_below_8000_pixels() -> None:
    report = fix(flat_png(8000, 10))
    assert report.ok
    assert (report.format, report.width, report.height) == ("PNG", 7999, 10)
    assert "downscaled from 8000x10 to 7999x10 pixels" in report.changes


def test_huge_jpeg_is_downscaled_keeping_its_aspect_ratio() -> None:
    report = fix(encode(picture(9000, 600, "L"), "JPEG"))
    assert report.ok
    assert (report.format, report.width, report.height) == ("JPEG", 7999, 533)
    assert output_of(report).size == (7999, 533)


def test_file_over_the_byte_limit_is_reencoded_below_it() -> None:
    data = pad_jpeg_to(jpeg(1200, 800), MAX_IMAGE_BYTES + 1)
    assert check_image_sync(data).error_codes == {"file_too_large"}
    report = fix(data)
    assert report.ok
    assert report.bytes < MAX_IMAGE_BYTES
    assert output_of(report).size == (1200, 800)
    assert any("comments" in c for c in report.changes)


def test_quality_search_finds_the_highest_quality_that_fits() -> None:
    im = noise(480, 360)
    at_max = len(encode(im, "JPEG", quality=JPEG_QUALITY_MAX))
    at_min = len(encode(im, "JPEG", quality=JPEG_QUALITY_MIN))
    limit = (at_max + at_min) // 2
    data, fmt, notes = encode_to_fit(im.copy(), "JPEG", limit, None)
    assert fmt == "JPEG" and len(data) <= limit
    quality = int(notes[0].split("quality ")[1].split()[0])
    assert JPEG_QUALITY_MIN <= quality < JPEG_QUALITY_MAX
    assert len(encode(im, "JPEG", quality=quality + 1)) > limit  # one step better would not fit


def test_downscale_when_even_the_lowest_quality_is_too_big() -> None:
    im = noise(480, 360)
    limit = len(encode(im, "JPEG", quality=JPEG_QUALITY_MIN)) // 3
    data, _, notes = encode_to_fit(im, "JPEG", limit, None)
    assert len(data) <= limit
    assert any(n.startswith("downscaled from 480x360") for n in notes)
    assert open_image(data).size[0] < 480


def test_png_that_cannot_fit_becomes_jpeg() -> None:
    im = noise(300, 200)
    limit = len(encode(im, "PNG")) // 2
    data, fmt, notes = encode_to_fit(im, "PNG", limit, None)
    assert fmt == "JPEG" and len(data) <= limit
    assert notes[0] == "converted PNG to JPEG to fit the byte limit"


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_is_flattened_onto_white(mode: str) -> None:
    im = PILImage.new(mode, (1200, 800), (0, 0, 0, 255) if mode == "RGBA" else (0, 255))
    im.paste((0, 0, 0, 0) if mode == "RGBA" else (0, 0), (0, 0, 100, 100))
    report = fix(encode(im, "PNG"))
    assert report.ok and report.format == "PNG"
    assert "flattened the transparency onto white" in report.changes
    out = output_of(report)
    assert out.mode == ("RGB" if mode == "RGBA" else "L")
    assert out.convert("L").getpixel((10, 10)) == 255  # was transparent
    assert out.convert("L").getpixel((600, 400)) == 0  # was opaque black


def test_palette_transparency_is_flattened() -> None:
    im = picture(1200, 800).convert("P")
    report = fix(encode(im, "PNG", transparency=0))
    assert report.ok and "alpha_channel" not in report.warning_codes
    assert output_of(report).mode == "RGB"


@pytest.mark.parametrize("icc", [None, b"not an icc profile at all"])
def test_cmyk_is_converted_to_rgb_even_with_an_odd_profile(icc: bytes | None) -> None:
    options = {"icc_profile": icc} if icc else {}
    report = fix(encode(picture(1200, 800, "CMYK"), "JPEG", **options))
    assert report.ok and "converted CMYK to RGB" in report.changes
    out = output_of(report)
    assert out.mode == "RGB" and "icc_profile" not in out.info


def test_icc_profile_is_kept_when_the_colour_space_stays() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    report = fix(jpeg(exif=exif_block(orientation=3), icc_profile=srgb))
    assert report.ok
    assert output_of(report).info.get("icc_profile") == srgb


def test_sixteen_bit_greyscale_is_scaled_not_clipped_when_converted() -> None:
    report = fix(encode(PILImage.new("I;16", (1200, 800), 40000), "TIFF"))
    assert report.ok and report.format == "JPEG"
    value = output_of(report).convert("L").getpixel((600, 400))
    assert value == pytest.approx(40000 // 256, abs=2)  # a plain conversion would clip it to 255


def test_mime_mismatch_alone_is_fixed_without_touching_the_bytes() -> None:
    data = png()
    report = fix(data, "image/jpeg")
    assert report.ok
    assert report.changes == ("declared mime type corrected to image/png",)
    assert report.image == Image(data, MimeType.PNG) and report.image.data is data


def test_apng_reencoded_for_another_reason_keeps_the_first_frame() -> None:
    report = fix(apng(8000, 20, frames=2))
    assert report.ok and (report.width, report.height) == (7999, 20)
    assert "kept the first of 2 frames" in report.changes
    assert "animated" not in report.warning_codes


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(png(300, 200), "too_small", id="never-upscaled"),
        pytest.param(jpeg()[:-200], "corrupt_image", id="truncated"),
        pytest.param(encode(picture(200, 300), "WEBP"), "too_small", id="small-webp"),
    ],
)
def test_what_cannot_be_fixed_stays_an_error_and_untouched(data: bytes, code: str) -> None:
    report = fix(data)
    assert not report.ok and code in report.error_codes
    assert report.changes == ()
    assert report.image is not None and report.image.data is data


def test_damaged_data_found_while_fixing_is_corrupt() -> None:
    data = bytearray(encode(picture(1200, 800), "WEBP", lossless=True))
    del data[len(data) // 2 :]
    report = fix(bytes(data))
    assert not report.ok and "corrupt_image" in report.error_codes
    assert report.changes == ()


def test_fixed_output_is_clean_under_a_full_decode() -> None:
    report = fix(encode(picture(1200, 800, "RGBA"), "WEBP", exif=exif_block(orientation=6, gps=True)))
    assert report.image is not None
    again = check_image_sync(report.image.data, report.image.mime_type, integrity="decode")
    assert again.ok and again.warnings == () and again.error_codes == set()
    assert len(report.image.data) == report.bytes
