"""The analysis: every check of one image, in order of cost, stopping as soon as the verdict is certain.

Byte count first, then our own reading of the JPEG/PNG header (:mod:`netverify_async._imageheaders`, so that a
decompression bomb is refused before Pillow allocates anything), then Pillow's lazy open (header only), then
the decode. ``integrity="header"`` never decodes pixel data; it still finds most truncated uploads, because a
JPEG must end with an EOI marker after its scan data and a PNG with an IEND chunk. ``integrity="decode"`` also
decodes the image; JPEGs are decoded with libjpeg's 1/8 scaling, which still entropy-decodes every byte of
scan data (so truncation and damaged data are found) while running the inverse DCT on 1/64 of the pixels.

Blocking: runs in the caller's thread (the async entry points in :mod:`netverify_async._preflight` put it in
a worker thread).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._constants import MIN_LONGEST_SIDE_PX
from ._imageheaders import (
    GPS_IFD_TAG,
    ORIENTATION_NAMES,
    ORIENTATION_TAG,
    ImageHeader,
    parse_exif,
    read_jpeg_header,
    read_png_header,
)
from ._imagerules import BACK, DOCUMENT_ROLES, FACE, FRONT, dimension_issues, image_bytes_issue
from ._models import MimeType, sniff_mime_type
from ._pillow import (
    ACCEPTED_FORMATS,
    ALPHA_MODES,
    GRAY_MODES,
    describe_failure,
    hand_whole_file_to_decoder,
    open_formats,
)
from ._preflight_report import (
    ALPHA_CHANNEL,
    ANIMATED,
    CMYK,
    CORRUPT_IMAGE,
    DECOMPRESSION_BOMB,
    EXIF_ORIENTATION,
    EXIF_UNREADABLE,
    GPS_LOCATION,
    GRAYSCALE,
    LOW_RESOLUTION,
    MIME_MISMATCH,
    NARROW_WIDTH,
    TOO_LARGE_DIMENSIONS,
    UNSUPPORTED_FORMAT,
    UNUSUAL_ASPECT_RATIO,
    Findings,
)

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["LOW_RESOLUTION_LONGEST_SIDE_PX", "MAX_ASPECT_RATIO", "analyse"]

#: Images more elongated than this (longest side / shortest side) get ``unusual_aspect_ratio``. Documents are
#: about 1.4:1 (passport page) to 1.6:1 (ID card); anything beyond 4:1 is usually a mis-crop or a screenshot.
MAX_ASPECT_RATIO = 4.0
#: Below this longest side, ``low_resolution`` is reported. 1000 px across an ID-1 card (85.6 mm) is about
#: 300 dpi, what reading the machine-readable zone needs; a face needs less, so its bound is a VGA frame.
LOW_RESOLUTION_LONGEST_SIDE_PX: Mapping[str, int] = {FRONT: 1000, BACK: 1000, FACE: 640}


def analyse(
    data: bytes, declared: MimeType | str | None, role: str, integrity: str, *, fix: bool
) -> Findings:
    """Run the checks in order of cost, stopping as soon as the verdict is certain.

    With ``fix=True`` the opened Pillow image is kept in the findings for the fixer (unless it was decoded
    here), and fixable errors do not stop the analysis.
    """
    found = Findings(len(data))
    if not data:
        found.error(CORRUPT_IMAGE, "the file is empty")
        return found
    too_large = image_bytes_issue(len(data))
    if too_large is not None:
        found.add(too_large)

    # 1. Our own reading of the JPEG/PNG header: dimensions before Pillow allocates anything.
    magic = sniff_mime_type(data)
    header: ImageHeader | None = None
    if magic is MimeType.JPEG:
        header = read_jpeg_header(data)
    elif magic is MimeType.PNG:
        header = read_png_header(data)
    if header is not None:
        found.format = header.format
        found.width, found.height = header.width, header.height
        if header.width == 0 or header.height == 0:
            found.error(CORRUPT_IMAGE, "the header declares an image with no width or height")
            return found
        if _check_dimensions(found, header.width, header.height):
            return found  # decompression bomb: never hand it to Pillow
        if header.truncated:
            found.error(
                CORRUPT_IMAGE, f"the file is cut short (truncated): the {header.format} end marker is missing"
            )
            return found
        if TOO_LARGE_DIMENSIONS in found.codes and not fix:
            return found  # refused anyway; Pillow need not even look at the huge header

    # 2. Pillow's lazy open: format, mode, frames, metadata. Nothing is decoded yet.
    formats = open_formats()
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        im = PILImage.open(io.BytesIO(data), formats=formats)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        # The warning arrives as an exception only when warnings are turned into errors; same verdict.
        found.error(DECOMPRESSION_BOMB, "the header promises more pixels than Pillow will decode safely")
        return found
    except UnidentifiedImageError:
        if magic is not None:
            found.error(CORRUPT_IMAGE, f"the file starts like a {magic.name} image but its header is damaged")
        else:
            found.error(
                UNSUPPORTED_FORMAT,
                "the content is not a JPEG or PNG image (nor any image format that could be converted)",
            )
        return found
    except Exception as exc:  # - Pillow raises many types on bad input; all mean "damaged"
        found.error(CORRUPT_IMAGE, describe_failure(exc))
        return found

    keep = False
    try:
        _inspect_opened(found, im, declared, role)
        if found.unfixable or (found.errors and not fix):
            return found
        # 3. Full decode, only when everything else passed, and not when normalisation will decode anyway.
        if fix and found.needs_reencode:
            keep = True
        elif integrity == "decode" and not found.errors:
            _decode(found, im)
    except Exception as exc:  # - lazily parsed metadata can fail late; still a verdict
        found.error(CORRUPT_IMAGE, describe_failure(exc))
        keep = False
    finally:
        if keep:
            found.image = im
        else:
            im.close()
    return found


def _check_dimensions(found: Findings, width: int, height: int) -> bool:
    """Record dimension errors; returns True when the image is a decompression bomb (stop at once)."""
    for issue in dimension_issues(width, height):
        found.add(issue)
    return DECOMPRESSION_BOMB in found.codes


def _inspect_opened(found: Findings, im: PILImage.Image, declared: MimeType | str | None, role: str) -> None:
    fmt = "JPEG" if im.format == "MPO" else im.format  # MPO: the first picture is a plain JPEG
    found.format = fmt
    found.width, found.height = width, height = im.size
    if _check_dimensions(found, width, height):
        return
    if fmt not in ACCEPTED_FORMATS:
        found.error(
            UNSUPPORTED_FORMAT,
            f"the content is {fmt or 'an unknown format'}; the API accepts only JPEG and PNG "
            "(fix=True converts it to JPEG)",
        )
    _check_mime(found, declared, fmt)

    frames = int(getattr(im, "n_frames", 1) or 1)
    found.frames = frames
    if frames > 1 and fmt == "PNG":
        found.warn(
            ANIMATED, f"the PNG is animated ({frames} frames); the service will see only the first frame"
        )
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        found.warn(
            ALPHA_CHANNEL,
            "the image has transparency; transparent areas may be shown as black "
            "(fix=True flattens onto white)",
        )
    if im.mode == "CMYK":
        found.warn(
            CMYK,
            "the image is CMYK; some decoders show CMYK images with wrong colours (fix=True converts to RGB)",
        )
    if im.mode in GRAY_MODES and role in DOCUMENT_ROLES:
        found.warn(
            GRAYSCALE,
            "the document image is greyscale; Jumio may reject black-and-white copies of documents",
        )
    longest, shortest = max(width, height), min(width, height)
    if shortest and longest / shortest > MAX_ASPECT_RATIO:
        found.warn(
            UNUSUAL_ASPECT_RATIO,
            f"the image is {width}x{height} pixels, more elongated than {MAX_ASPECT_RATIO:g}:1; "
            "check that it is cropped to the document",
        )
    minimum = LOW_RESOLUTION_LONGEST_SIDE_PX[role]
    if MIN_LONGEST_SIDE_PX < longest < minimum:
        found.warn(
            LOW_RESOLUTION,
            f"the longest side is {longest} pixels; below {minimum} pixels the {role} image "
            "may be hard to read",
        )
    if width < MIN_LONGEST_SIDE_PX < longest:
        found.warn(
            NARROW_WIDTH,
            f"the image is only {width} pixels wide; one part of Jumio's documentation says images narrower "
            f"than {MIN_LONGEST_SIDE_PX} pixels are refused",
        )
    _inspect_exif(found, im)


def _check_mime(found: Findings, declared: MimeType | str | None, fmt: str | None) -> None:
    if declared is None:
        return
    raw = declared.value if isinstance(declared, MimeType) else str(declared)
    normalised = raw.split(";", 1)[0].strip().lower()
    if normalised not in {m.value for m in MimeType}:
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        found.error(
            MIME_MISMATCH,
            f"the declared mime type {shown!r} is not one the API accepts (image/jpeg or image/png)",
        )
        return
    actual = ACCEPTED_FORMATS.get(fmt or "")
    if actual is None:
        found.error(
            MIME_MISMATCH, f"the image is declared as {normalised} but its content is {fmt or 'unknown'}"
        )
    elif normalised != actual.value:
        found.error(
            MIME_MISMATCH,
            f"the image is declared as {normalised} but its content is {fmt} (declare {actual.value})",
        )


def _inspect_exif(found: Findings, im: PILImage.Image) -> None:
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        summary = parse_exif(bytes(raw))
        if summary is None:
            found.warn(EXIF_UNREADABLE, "the EXIF metadata is malformed and was ignored")
            return
        orientation, has_gps = summary
    elif im.format == "TIFF":  # TIFF tags are the EXIF; Pillow has already parsed them at open
        try:
            exif = im.getexif()
            orientation = int(exif.get(ORIENTATION_TAG, 1) or 1)
            has_gps = bool(exif.get(GPS_IFD_TAG))
        except Exception:  # - broken tags must not break the check
            found.warn(EXIF_UNREADABLE, "the TIFF/EXIF tags are malformed and were ignored")
            return
    else:
        return
    if orientation in ORIENTATION_NAMES:
        found.orientation = orientation
        found.warn(
            EXIF_ORIENTATION,
            f"the picture is stored {ORIENTATION_NAMES[orientation]} and relies on the EXIF orientation "
            "tag; "
            "if the tag is ignored the document is read sideways (fix=True applies it)",
        )
    if has_gps:
        found.has_gps = True
        found.warn(
            GPS_LOCATION,
            "the EXIF metadata holds a GPS position (personal data); a re-encoded image (fix=True) drops it",
        )


def _decode(found: Findings, im: PILImage.Image) -> None:
    try:
        hand_whole_file_to_decoder(im, found.size)
        if im.format in ("JPEG", "MPO"):
            # libjpeg's 1/8 scaling: every entropy-coded byte is still decoded; the IDCT runs on 1/64 of them.
            im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    except Exception as exc:  # - any decoder failure is a damaged image
        found.error(CORRUPT_IMAGE, describe_failure(exc))
