"""Preflight verdicts on real generated files: every error code, every warning, and the exact boundaries."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import typing
import warnings
import zlib

import pytest
from _preflight_support import (
    apng,
    bomb_bmp,
    bomb_jpeg,
    bomb_png,
    broken_exif_block,
    encode,
    exif_block,
    flat_png,
    jpeg,
    jpeg_with_app1,
    open_image,
    pad_jpeg_to,
    pad_png_to,
    picture,
    png,
    png_chunk,
    png_insert_chunk,
)
from PIL import Image as PILImage

from netverify_async import (
    Image,
    MimeType,
    NetverifyError,
    PreflightError,
    PreflightReport,
    PreflightWarning,
    check_image_sync,
)
from netverify_async._constants import MAX_IMAGE_BYTES
from netverify_async._imagerules import ROLES, Role, image_bytes_issue
from netverify_async._preflight import DECOMPRESSION_BOMB_PIXELS, ERROR_CODES, WARNING_CODES

BOTH_LEVELS = pytest.mark.parametrize("integrity", ["header", "decode"])


def check(data: bytes, mime: str | None = None, **options: object) -> PreflightReport:
    return check_image_sync(data, mime, **options)  # type: ignore[arg-type]


# --- acceptable images --------------------------------------------------------------------------------------


@BOTH_LEVELS
@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        pytest.param(jpeg(), "JPEG", id="baseline-jpeg"),
        pytest.param(jpeg(progressive=True), "JPEG", id="progressive-jpeg"),
        pytest.param(png(), "PNG", id="rgb-png"),
        pytest.param(encode(picture(1200, 800).convert("P"), "PNG"), "PNG", id="palette-png"),
        pytest.param(
            encode(picture(1200, 800, "RGB"), "MPO", save_all=True, append_images=[picture(1200, 800)]),
            "JPEG",
            id="mpo-reads-as-jpeg",
        ),
    ],
)
def test_valid_images_pass_and_come_back_untouched(data: bytes, fmt: str, integrity: str) -> None:
    report = check(data, integrity=integrity)
    assert report.ok, report.errors
    assert (report.format, report.width, report.height, report.bytes) == (fmt, 1200, 800, len(data))
    assert report.errors == () and report.changes == ()
    assert report.image is not None and report.image.data is data


def test_sixteen_bit_png_passes_with_only_the_greyscale_warning() -> None:
    data = encode(PILImage.new("I;16", (1200, 800), 40000), "PNG")
    assert open_image(data).mode.startswith("I;16")
    report = check(data)
    assert report.ok
    assert report.warning_codes == {"grayscale"}


def test_declared_mime_type_matching_the_content_is_accepted_in_any_spelling() -> None:
    data = jpeg()
    for declared in ("image/jpeg", "IMAGE/JPEG", "image/jpeg; charset=binary", MimeType.JPEG):
        assert check(data, declared).ok, declared


# --- boundaries ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "codes"),
    [
        ((300, 200), {"too_small"}),
        ((200, 300), {"too_small"}),
        ((300, 300), {"too_small"}),
        ((301, 200), set()),
        ((200, 301), set()),
    ],
)
def test_longest_side_must_be_above_300_pixels(size: tuple[int, int], codes: set[str]) -> None:
    report = check(png(*size))
    assert report.error_codes == codes
    assert report.ok is (not codes)


@pytest.mark.parametrize(
    ("size", "codes"),
    [
        ((7999, 10), set()),
        ((10, 7999), set()),
        ((8000, 10), {"too_large_dimensions"}),
        ((10, 8000), {"too_large_dimensions"}),
        ((8000, 8000), {"too_large_dimensions"}),
    ],
)
@BOTH_LEVELS
def test_each_side_must_be_below_8000_pixels(size: tuple[int, int], codes: set[str], integrity: str) -> None:
    report = check(flat_png(*size), integrity=integrity)
    assert report.error_codes == codes
    assert (report.width, report.height) == size


@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize(("delta", "ok"), [(-1, True), (0, True), (1, False)])
def test_byte_limit_is_15_000_000_raw_bytes(kind: str, delta: int, ok: bool) -> None:
    base = png(600, 400) if kind == "png" else jpeg(600, 400)
    pad = pad_png_to if kind == "png" else pad_jpeg_to
    data = pad(base, MAX_IMAGE_BYTES + delta)
    assert len(data) == MAX_IMAGE_BYTES + delta
    assert open_image(data).size == (600, 400)  # the padding leaves a valid image
    report = check(data)
    assert report.ok is ok
    assert report.error_codes == (set() if ok else {"file_too_large"})
    assert report.bytes == len(data)
    if not ok:
        assert "15,000,000" in report.errors[0].message


# --- formats and mime types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "BMP", "TIFF"])
def test_other_formats_are_unsupported_whatever_they_are_declared_as(fmt: str) -> None:
    data = encode(picture(1200, 800), fmt)
    report = check(data)
    assert report.error_codes == {"unsupported_format"}
    assert report.format == fmt
    assert (report.width, report.height) == (1200, 800)
    declared = check(data, "image/jpeg")
    assert declared.error_codes == {"unsupported_format", "mime_mismatch"}


@pytest.mark.parametrize("data", [b"just some text, not a picture at all" * 4, b"%PDF-1.4\n" + b"\0" * 200])
def test_content_that_is_no_image_is_unsupported(data: bytes) -> None:
    report = check(data, "image/png")
    assert report.format is None
    assert "unsupported_format" in report.error_codes


@pytest.mark.parametrize(
    ("data", "declared", "expected_in_message"),
    [
        (png(), "image/jpeg", "declare image/png"),
        (jpeg(), "image/png", "declare image/jpeg"),
        (jpeg(), "image/gif", "not one the API accepts"),
        (jpeg(), "image/jpg", "not one the API accepts"),
    ],
)
def test_declared_mime_type_must_match_the_bytes(
    data: bytes, declared: str, expected_in_message: str
) -> None:
    report = check(data, declared)
    assert report.error_codes == {"mime_mismatch"}
    assert expected_in_message in report.errors[0].message


def test_image_object_without_declared_type_is_not_a_mismatch() -> None:
    assert check(png(), None).ok


# --- corrupt images -----------------------------------------------------------------------------------------


@BOTH_LEVELS
@pytest.mark.parametrize("kind", ["jpeg", "png", "progressive"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files_are_corrupt(kind: str, keep: float, integrity: str) -> None:
    full = {"jpeg": jpeg(), "png": png(), "progressive": jpeg(progressive=True)}[kind]
    report = check(full[: int(len(full) * keep)], integrity=integrity)
    assert report.error_codes == {"corrupt_image"}
    assert "truncated" in report.errors[0].message


def test_damaged_png_data_is_found_by_decoding_but_not_by_the_header_check() -> None:
    data = bytearray(png())
    idat = data.index(b"IDAT")
    for i in range(idat + 200, idat + 400):
        data[i] ^= 0x5A
    damaged = bytes(data)
    assert check(damaged, integrity="header").ok
    assert check(damaged, integrity="decode").error_codes == {"corrupt_image"}


def test_png_with_a_bad_header_checksum_is_corrupt() -> None:
    data = bytearray(png())
    data[29] ^= 0xFF  # inside the IHDR CRC
    assert check(bytes(data)).error_codes == {"corrupt_image"}


def test_empty_file_is_corrupt() -> None:
    report = check(b"")
    assert report.error_codes == {"corrupt_image"}
    assert report.bytes == 0


def test_png_header_with_zero_width_is_corrupt() -> None:
    assert check(bomb_png(0, 500)).error_codes == {"corrupt_image"}


def test_oversized_text_metadata_gets_a_verdict_not_a_traceback() -> None:
    huge_text = png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * 3_000_000))
    before_data = png_insert_chunk(png(), huge_text, before=b"IDAT")
    report = check(before_data)
    assert report.error_codes == {"corrupt_image"}
    assert "text metadata" in report.errors[0].message
    after_data = png_insert_chunk(png(), huge_text, before=b"IEND")
    assert check(after_data, integrity="header").ok  # only read when the image data is decoded
    assert check(after_data, integrity="decode").error_codes == {"corrupt_image"}


@pytest.mark.parametrize("seed", range(4))
def test_random_damage_never_raises(seed: int) -> None:
    rng = random.Random(seed)
    originals = [jpeg(400, 320), png(400, 320), jpeg(400, 320, progressive=True)]
    for _ in range(40):
        data = bytearray(rng.choice(originals))
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.4:
            del data[rng.randrange(len(data)) :]
        for integrity in ("header", "decode"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow may warn about what it skips; that is fine
                report = check(bytes(data), integrity=integrity, fix=rng.random() < 0.3)
            assert report.ok is (not report.errors)
            assert report.error_codes <= ERROR_CODES


# --- decompression bombs ------------------------------------------------------------------------------------


def test_png_bomb_header_is_refused_from_the_header() -> None:
    report = check(bomb_png(100_000, 100_000))
    assert report.error_codes == {"decompression_bomb", "too_large_dimensions"}
    assert (report.width, report.height) == (100_000, 100_000)


@pytest.mark.parametrize("make", [bomb_png, bomb_jpeg])
def test_bombs_pillow_would_only_warn_about_never_reach_pillow(make: object) -> None:
    # 12000 x 12000 = 144 M pixels: above our limit, but Pillow's default would only warn and then decode it.
    assert 12000 * 12000 > DECOMPRESSION_BOMB_PIXELS
    data = make(12000, 12000)  # type: ignore[operator]
    for fix in (False, True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = check(data, fix=fix)
        assert "decompression_bomb" in report.error_codes
        assert not [w for w in caught if issubclass(w.category, PILImage.DecompressionBombWarning)]


def test_bomb_in_another_format_is_caught_from_pillows_own_check() -> None:
    report = check(bomb_bmp(100_000, 100_000))
    assert report.error_codes == {"decompression_bomb"}


def test_pillows_bomb_warning_turned_into_an_error_is_a_bomb_verdict() -> None:
    data = bomb_jpeg(10000, 9000)  # 90 M pixels: below our limit, above Pillow's default warning threshold
    assert 10000 * 9000 > (PILImage.MAX_IMAGE_PIXELS or 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        report = check(data, fix=True)  # with fix=True the oversized image is handed to Pillow to downscale
    assert report.error_codes == {"decompression_bomb", "too_large_dimensions"}


def test_pillows_global_limits_are_left_alone() -> None:
    from PIL import ImageFile

    before = (PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    check(bomb_png(100_000, 100_000))
    check(jpeg()[:-100])
    check(encode(picture(9000, 40, "L"), "PNG"), fix=True)
    assert (PILImage.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --- warnings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "role", "expected"),
    [
        pytest.param(apng(), "front", {"animated"}, id="apng"),
        pytest.param(png(mode="RGBA"), "front", {"alpha_channel"}, id="rgba"),
        pytest.param(
            encode(picture(1200, 800).convert("P"), "PNG", transparency=0), "front", {"alpha_channel"}
        ),
        pytest.param(encode(picture(1200, 800, "CMYK"), "JPEG"), "front", {"cmyk"}, id="cmyk"),
        pytest.param(png(mode="L"), "back", {"grayscale"}, id="grey-document"),
        pytest.param(png(mode="L"), "face", set(), id="grey-face-is-fine"),
        pytest.param(png(2001, 500), "front", {"unusual_aspect_ratio"}, id="beyond-4-to-1"),
        pytest.param(png(2000, 500), "front", set(), id="exactly-4-to-1"),
        pytest.param(png(999, 600), "front", {"low_resolution"}, id="document-999"),
        pytest.param(png(1000, 600), "front", set(), id="document-1000"),
        pytest.param(png(639, 480), "face", {"low_resolution"}, id="face-639"),
        pytest.param(png(640, 480), "face", set(), id="face-640"),
        pytest.param(png(299, 1000), "front", {"narrow_width"}, id="narrow-299"),
        pytest.param(png(300, 1000), "front", set(), id="width-300"),
    ],
)
def test_warnings_do_not_block(data: bytes, role: str, expected: set[str]) -> None:
    report = check(data, role=role)
    assert report.ok
    assert report.warning_codes == expected
    assert report.warning_codes <= WARNING_CODES


def test_exif_orientation_and_gps_are_reported() -> None:
    data = jpeg(exif=exif_block(orientation=6, gps=True))
    report = check(data)
    assert report.ok
    assert report.warning_codes == {"exif_orientation", "gps_location"}
    assert "rotated 90° clockwise" in next(w.message for w in report.warnings if w.code == "exif_orientation")


def test_plain_exif_gives_no_warning() -> None:
    assert check(jpeg(exif=exif_block(orientation=1))).warnings == ()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(jpeg_with_app1(jpeg(), broken_exif_block()), id="jpeg-app1"),
        pytest.param(
            png_insert_chunk(png(), png_chunk(b"eXIf", broken_exif_block()[6:]), before=b"IDAT"),
            id="png-exif",
        ),
        pytest.param(jpeg_with_app1(jpeg(), b"Exif\x00\x00garbage"), id="jpeg-garbage"),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow's own note when it reads the dpi
def test_broken_exif_is_a_warning_and_the_image_still_passes(data: bytes) -> None:
    report = check(data)
    assert report.ok
    assert report.warning_codes == {"exif_unreadable"}


# --- the report ---------------------------------------------------------------------------------------------


def test_raise_for_errors_lists_codes_and_messages() -> None:
    report = check(png(300, 200), "image/jpeg")
    with pytest.raises(PreflightError) as caught:
        report.raise_for_errors()
    error = caught.value
    assert isinstance(error, NetverifyError) and isinstance(error, ValueError)
    assert error.report is report and error.role == "front"
    assert "too_small" in str(error) and "mime_mismatch" in str(error)
    assert "300x200" in str(error)
    ok = check(png())
    assert ok.raise_for_errors() is ok


def test_nothing_from_inside_the_image_leaks_into_reports() -> None:
    marker = b"PERSONAL-DATA-7f3a"
    data = encode(picture(300, 200), "JPEG", comment=marker)[:-50]
    report = check(data, "image/png")
    text = repr(report) + json.dumps(report.to_dict())
    with pytest.raises(PreflightError) as caught:
        report.raise_for_errors()
    text += str(caught.value)
    assert marker.decode() not in text
    assert "\\x" not in text


def test_to_dict_is_json_ready() -> None:
    report = check(jpeg(exif=exif_block(orientation=3)), role="back")
    as_json = json.loads(json.dumps(report.to_dict()))
    assert as_json["ok"] is True and as_json["role"] == "back" and as_json["format"] == "JPEG"
    assert as_json["warnings"][0]["code"] == "exif_orientation"
    assert set(as_json) == {
        "ok",
        "role",
        "format",
        "width",
        "height",
        "bytes",
        "errors",
        "warnings",
        "changes",
    }


def test_emit_warnings_uses_preflight_warning() -> None:
    report = check(png(mode="RGBA"))
    with pytest.warns(PreflightWarning, match="alpha_channel"):
        report.emit_warnings()


def test_report_image_keeps_the_declared_type() -> None:
    data = png()
    report = check(data, "image/png")
    assert report.image == Image(data, MimeType.PNG)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"role": "selfie"}, ValueError), ({"integrity": "full"}, ValueError)],
)
def test_bad_arguments_are_refused(kwargs: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        check(png(), **kwargs)
    with pytest.raises(TypeError):
        check_image_sync("not bytes")  # type: ignore[arg-type]


def test_importing_preflight_does_not_import_pillow_or_the_synthetic_documents() -> None:
    code = (
        "import sys, netverify_async, netverify_async._preflight\n"
        "print(sorted(m for m in sys.modules if m == 'PIL' or m.startswith('netverify_async.emulator')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_role_type_and_the_role_names_agree() -> None:
    assert typing.get_args(Role) == ROLES


def test_preflight_reports_the_byte_rule_as_the_shared_rule_states_it() -> None:
    too_large = pad_png_to(flat_png(400, 400), MAX_IMAGE_BYTES + 1)
    issue = image_bytes_issue(len(too_large))
    assert image_bytes_issue(MAX_IMAGE_BYTES) is None
    assert issue is not None and issue.code == "file_too_large"
    assert check(too_large).errors == (issue,)
