"""Normalisation (``fix=True``): repair what can be repaired without guessing, then re-encode to fit.

Converts WebP, TIFF, BMP, GIF (first frame) and, when ``pillow-heif`` is installed, HEIC to JPEG; applies the
EXIF orientation; flattens transparency onto white; converts CMYK to RGB; downscales images with a side of
8000 pixels or more to 7999; and re-encodes to fit the byte limit with the least quality loss (the highest
JPEG quality that fits, then a downscale). Re-encoded images carry no EXIF (so no GPS position), XMP or
comments; an ICC colour profile is kept when the colour space did not change. Images that are too small are
never upscaled. An image that needs nothing is returned unchanged, and the changes made are listed otherwise.

Works on the :class:`~netverify_async._preflight_report.Findings` of the analysis (and the Pillow image it
kept open); blocking, like the analysis.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from ._constants import MAX_IMAGE_BYTES, MAX_SIDE_PX
from ._imageheaders import ORIENTATION_NAMES
from ._models import MimeType
from ._pillow import ACCEPTED_FORMATS, ALPHA_MODES, describe_failure, hand_whole_file_to_decoder
from ._preflight_report import CORRUPT_IMAGE, MIME_MISMATCH, Findings

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["JPEG_QUALITY_MAX", "JPEG_QUALITY_MIN", "encode_to_fit", "normalise"]

#: Quality range searched when an image must be re-encoded as JPEG to fit the byte limit. Below 75, text and
#: security features suffer more than from a moderate downscale, so the search downscales instead.
JPEG_QUALITY_MAX = 95
JPEG_QUALITY_MIN = 75


def normalise(data: bytes, found: Findings) -> tuple[bytes, MimeType, tuple[str, ...]] | None:
    """Fix what can be fixed: (data, mime, changes), or None when nothing was (or could be) changed.

    When only the declared mime type was wrong, the same ``data`` object is returned with the right type.
    A failure while decoding for the fix is recorded in ``found`` as ``corrupt_image``.
    """
    if found.unfixable:
        return None
    if not found.needs_reencode:
        if MIME_MISMATCH in found.codes and found.format in ACCEPTED_FORMATS:
            mime = ACCEPTED_FORMATS[found.format]
            return data, mime, (f"declared mime type corrected to {mime.value}",)
        return None
    if found.image is None:
        return None
    try:
        return _reencode(found.image, found)
    except Exception as exc:  # - decoding for the fix is where a damaged image shows itself
        found.error(CORRUPT_IMAGE, describe_failure(exc))
        return None


def _fit_within(width: int, height: int, longest: int) -> tuple[int, int]:
    scale = longest / max(width, height)
    return max(1, min(longest, round(width * scale))), max(1, min(longest, round(height * scale)))


def _reencode(im: PILImage.Image, found: Findings) -> tuple[bytes, MimeType, tuple[str, ...]]:
    from PIL import Image as PILImage

    changes: list[str] = []
    source_format = found.format or "unknown"
    width, height = im.size
    target: tuple[int, int] | None = None
    if max(width, height) >= MAX_SIDE_PX:
        target = _fit_within(width, height, MAX_SIDE_PX - 1)
        if source_format == "JPEG":
            # let libjpeg decode at 1/2, 1/4 or 1/8 scale when that is still large enough
            im.draft(None, target)
    if found.frames > 1:
        changes.append(f"kept the first of {found.frames} frames")
    stripped = [
        name
        for name, keys in (
            ("EXIF", ("exif",)),
            ("XMP", ("xmp", "XML:com.adobe.xmp")),
            ("comments", ("comment",)),
        )
        if any(im.info.get(key) for key in keys)
    ]
    hand_whole_file_to_decoder(im, found.size)
    im.load()
    icc = im.info.get("icc_profile")
    work: PILImage.Image = im
    if found.orientation in ORIENTATION_NAMES:
        work = work.transpose(_transpose_method(found.orientation))
        changes.append(f"applied the EXIF orientation ({ORIENTATION_NAMES[found.orientation]})")
        if target is not None and found.orientation >= 5:  # a quarter turn swaps width and height
            target = (target[1], target[0])
    source_mode = work.mode
    work, converted = _to_plain_mode(work, icc)
    changes.extend(converted)
    if target is not None:
        work = work.resize(target, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
        changes.append(f"downscaled from {width}x{height} to {target[0]}x{target[1]} pixels")
    keep_icc = icc if isinstance(icc, bytes) and work.mode == source_mode else None
    if source_format not in ACCEPTED_FORMATS:
        changes.append(f"converted {source_format} to JPEG")
    encoded, out_format, notes = encode_to_fit(
        work, "PNG" if source_format == "PNG" else "JPEG", MAX_IMAGE_BYTES, keep_icc
    )
    changes.extend(notes)
    if stripped:
        gps = " including the GPS position" if found.has_gps else ""
        changes.append(f"removed metadata ({', '.join(stripped)}){gps}")
    return encoded, ACCEPTED_FORMATS[out_format], tuple(changes)


def _transpose_method(orientation: int) -> PILImage.Transpose:
    """The transposition that undoes an EXIF orientation (the same table ``ImageOps.exif_transpose`` uses)."""
    from PIL.Image import Transpose

    return {
        2: Transpose.FLIP_LEFT_RIGHT,
        3: Transpose.ROTATE_180,
        4: Transpose.FLIP_TOP_BOTTOM,
        5: Transpose.TRANSPOSE,
        6: Transpose.ROTATE_270,
        7: Transpose.TRANSVERSE,
        8: Transpose.ROTATE_90,
    }[orientation]


def _to_8bit_gray(im: PILImage.Image) -> PILImage.Image:
    """16/32-bit greyscale to 8-bit by scaling (a plain convert would clip everything above 255 to white)."""
    return im.convert("I").point(lambda value: value * (1 / 256)).convert("L")


def _to_plain_mode(im: PILImage.Image, icc: object) -> tuple[PILImage.Image, list[str]]:
    """Flatten transparency onto white and bring the image to a mode both JPEG and PNG can hold."""
    from PIL import Image as PILImage

    changes: list[str] = []
    if "transparency" in im.info and im.mode in ("P", "L", "RGB", "I;16"):
        im = im.convert("LA" if im.mode in ("L", "I;16") else "RGBA")
    if im.mode in ALPHA_MODES:
        gray = im.mode in ("LA", "La")
        rgba = im.convert("LA" if gray else "RGBA")
        background = PILImage.new("L" if gray else "RGB", rgba.size, 255 if gray else (255, 255, 255))
        background.paste(rgba.convert("L" if gray else "RGB"), mask=rgba.getchannel("A"))
        im = background
        changes.append("flattened the transparency onto white")
    elif im.mode == "CMYK":
        im = _cmyk_to_rgb(im, icc)
        changes.append("converted CMYK to RGB")
    elif im.mode in ("I", "F", "I;16B", "I;16L", "I;16N"):
        im = _to_8bit_gray(im)
    elif im.mode not in ("1", "L", "P", "RGB", "I;16"):
        im = im.convert("RGB")
    return im, changes


def _cmyk_to_rgb(im: PILImage.Image, icc: object) -> PILImage.Image:
    """Convert with the embedded CMYK profile to sRGB when there is a usable one, naively otherwise."""
    if isinstance(icc, bytes):
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(
                im, source, ImageCms.createProfile("sRGB"), outputMode="RGB"
            )
            if converted is not None:
                return converted
        except Exception:  # noqa: S110 - an odd ICC profile falls back to the plain conversion
            pass
    return im.convert("RGB")


def _encode(im: PILImage.Image, fmt: str, icc: bytes | None, quality: int = JPEG_QUALITY_MAX) -> bytes:
    if fmt == "JPEG" and im.mode not in ("L", "RGB"):
        im = _to_8bit_gray(im) if im.mode == "I;16" else im.convert("L" if im.mode == "1" else "RGB")
    im.info = {}  # nothing from the source (EXIF, XMP, comments, text) may travel into the new file
    options: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if fmt == "JPEG":
        options["quality"] = quality
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def encode_to_fit(
    im: PILImage.Image, fmt: str, limit: int, icc: bytes | None
) -> tuple[bytes, str, list[str]]:
    """Encode ``im`` as ``fmt`` in at most ``limit`` bytes with the least quality loss.

    PNG is kept when it fits; otherwise JPEG at the highest quality that fits (binary search between
    :data:`JPEG_QUALITY_MIN` and :data:`JPEG_QUALITY_MAX`); when even the lowest quality is too large, the
    image is downscaled in proportion to the excess and searched again. Returns (bytes, format, notes).
    """
    from PIL import Image as PILImage

    notes: list[str] = []
    if fmt == "PNG":
        encoded = _encode(im, "PNG", icc)
        if len(encoded) <= limit:
            return encoded, "PNG", notes
        notes.append("converted PNG to JPEG to fit the byte limit")
    for _ in range(8):
        best = _encode(im, "JPEG", icc, JPEG_QUALITY_MAX)
        if len(best) <= limit:
            return best, "JPEG", notes
        lowest = _encode(im, "JPEG", icc, JPEG_QUALITY_MIN)
        if len(lowest) <= limit:
            best, quality = lowest, JPEG_QUALITY_MIN
            low, high = JPEG_QUALITY_MIN + 1, JPEG_QUALITY_MAX - 1
            while low <= high:
                middle = (low + high) // 2
                candidate = _encode(im, "JPEG", icc, middle)
                if len(candidate) <= limit:
                    best, quality, low = candidate, middle, middle + 1
                else:
                    high = middle - 1
            notes.append(f"re-encoded as JPEG quality {quality} to fit {limit:,} bytes")
            return best, "JPEG", notes
        # Even the lowest quality is too big: shrink the area in proportion to the excess, with a margin.
        factor = math.sqrt(limit / len(lowest)) * 0.95
        new_size = (max(1, int(im.width * factor)), max(1, int(im.height * factor)))
        notes.append(
            f"downscaled from {im.width}x{im.height} to {new_size[0]}x{new_size[1]} to fit the byte limit"
        )
        im = im.resize(new_size, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
    raise ValueError("the image could not be encoded within the byte limit")
