"""Image preflight: find out, before sending, whether Jumio will accept an image; optionally fix it.

The documented limits for ``frontsideImage``, ``backsideImage`` and ``faceImage`` are: JPEG or PNG, at most 15
MB, each side below 8000 pixels, longest side above 300 pixels. :func:`check_image_sync` checks an image
against them and reports every problem with a stable code and a sentence a person understands:

==========================  =========================================================================
error code                  meaning
==========================  =========================================================================
``unsupported_format``      the content is not JPEG or PNG, whatever the file name or mime type says
``mime_mismatch``           the declared mime type disagrees with the content (or is not one the API takes)
``too_small``               the longest side is not above ``MIN_LONGEST_SIDE_PX`` (300) pixels
``too_large_dimensions``    a side is not below ``MAX_SIDE_PX`` (8000) pixels
``file_too_large``          more than ``MAX_IMAGE_BYTES`` (15,000,000) raw bytes
``corrupt_image``           truncated, damaged or undecodable data
``decompression_bomb``      the header promises far more pixels than any acceptable image can have
==========================  =========================================================================

Warnings never block a submission; they name things that make a good verification less likely (``animated``,
``alpha_channel``, ``cmyk``, ``grayscale``, ``unusual_aspect_ratio``, ``low_resolution``, ``narrow_width``,
``exif_orientation``, ``exif_unreadable``, ``gps_location``). :data:`ERROR_CODES` and :data:`WARNING_CODES`
list them.

**Why 15,000,000 raw bytes.** The guide gives the size limit as "Max. 15MB" on a field that carries the image
as a base64 string. The limit sits next to the pixel limits, which only make sense for the decoded image, so
it is read as a limit on the image file itself (the base64 text of a 15,000,000-byte file is 20,000,000
characters). "MB" is not defined; 15 MiB would be 15,728,640 bytes. We take the smaller reading, so that no
image we let through can be refused for its size; the price is refusing files between the two readings, which
are rare and which ``fix=True`` re-encodes anyway.

**Contradiction on small images.** performNetverify.md requires the *longest side* to be above 300 pixels, the
revision history says images with a *width* below 300 pixels are refused. The error ``too_small`` follows the
endpoint's own guide; a portrait image that passes it with a width below 300 pixels gets the ``narrow_width``
warning.

**Order and cost.** Cheap checks run first and the check stops as soon as the image is certainly refused: byte
count, then a hand-read of the JPEG/PNG header (so that a decompression bomb is refused before Pillow
allocates anything), then Pillow's lazy open (header only), then the decode. ``integrity="header"`` never
decodes pixel data; it still finds most truncated uploads, because a JPEG must end with an EOI marker after
its scan data and a PNG with an IEND chunk. ``integrity="decode"`` (the default) also decodes the image; JPEGs
are decoded with libjpeg's 1/8 scaling, which still entropy-decodes every byte of scan data (so truncation and
damaged data are found) while running the inverse DCT on 1/64 of the pixels. Pillow's global settings
(``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) are never changed.

**Normalisation** (``fix=True``, opt-in) repairs what can be repaired without guessing: converts WebP, TIFF,
BMP, GIF (first frame) and, when ``pillow-heif`` is installed, HEIC to JPEG; applies the EXIF orientation;
flattens transparency onto white; converts CMYK to RGB; downscales images with a side of 8000 pixels or more
to 7999; and re-encodes to fit the byte limit with the least quality loss (the highest JPEG quality that fits,
then a downscale). Re-encoded images carry no EXIF (so no GPS position), XMP or comments; an ICC colour
profile is kept when the colour space did not change. Images that are too small are never upscaled. An image
that needs nothing is returned unchanged, byte for byte, and ``PreflightReport.changes`` lists what was done
otherwise.

All Pillow work of the async functions runs in worker threads (bounded by a per-event-loop
:class:`anyio.CapacityLimiter` sized to the CPU count); Pillow itself is imported only when first needed.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import threading
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import attrs

from ._constants import MAX_IMAGE_BYTES, MAX_SIDE_PX, MIN_LONGEST_SIDE_PX
from ._errors import PreflightError, PreflightWarning
from ._models import Image, MimeType, sniff_mime_type

if TYPE_CHECKING:
    import anyio
    from anyio.lowlevel import RunVar
    from PIL import Image as PILImage

    from ._models import NetverifyRequest

__all__ = [
    "DECOMPRESSION_BOMB_PIXELS",
    "ERROR_CODES",
    "LOW_RESOLUTION_LONGEST_SIDE_PX",
    "MAX_ASPECT_RATIO",
    "WARNING_CODES",
    "Integrity",
    "PreflightIssue",
    "PreflightReport",
    "Role",
    "changed_images",
    "check_image_sync",
    "preflight",
    "preflight_request",
]

Role = Literal["front", "back", "face"]
Integrity = Literal["header", "decode"]

ROLES: tuple[str, ...] = ("front", "back", "face")
INTEGRITY_LEVELS: tuple[str, ...] = ("header", "decode")

# --- error codes --------------------------------------------------------------------------------------------
UNSUPPORTED_FORMAT = "unsupported_format"
MIME_MISMATCH = "mime_mismatch"
TOO_SMALL = "too_small"
TOO_LARGE_DIMENSIONS = "too_large_dimensions"
FILE_TOO_LARGE = "file_too_large"
CORRUPT_IMAGE = "corrupt_image"
DECOMPRESSION_BOMB = "decompression_bomb"
# --- warning codes ------------------------------------------------------------------------------------------
ANIMATED = "animated"
ALPHA_CHANNEL = "alpha_channel"
CMYK = "cmyk"
GRAYSCALE = "grayscale"
UNUSUAL_ASPECT_RATIO = "unusual_aspect_ratio"
LOW_RESOLUTION = "low_resolution"
NARROW_WIDTH = "narrow_width"
EXIF_ORIENTATION = "exif_orientation"
EXIF_UNREADABLE = "exif_unreadable"
GPS_LOCATION = "gps_location"

#: Every error code, each of which makes Jumio refuse the image.
ERROR_CODES: frozenset[str] = frozenset(
    {
        UNSUPPORTED_FORMAT,
        MIME_MISMATCH,
        TOO_SMALL,
        TOO_LARGE_DIMENSIONS,
        FILE_TOO_LARGE,
        CORRUPT_IMAGE,
        DECOMPRESSION_BOMB,
    }
)
#: Every warning code: accepted by Jumio, but a good result is less likely.
WARNING_CODES: frozenset[str] = frozenset(
    {
        ANIMATED,
        ALPHA_CHANNEL,
        CMYK,
        GRAYSCALE,
        UNUSUAL_ASPECT_RATIO,
        LOW_RESOLUTION,
        NARROW_WIDTH,
        EXIF_ORIENTATION,
        EXIF_UNREADABLE,
        GPS_LOCATION,
    }
)

#: A header promising more pixels than this is refused as a decompression bomb without decoding anything. No
#: acceptable image has more than 7999 x 7999 pixels; twice that still lets ``fix=True`` downscale photos from
#: 108-megapixel phone cameras, and decoding stays below about 400 MB of RGB pixel memory.
DECOMPRESSION_BOMB_PIXELS = 2 * (MAX_SIDE_PX - 1) ** 2
#: Images more elongated than this (longest side / shortest side) get ``unusual_aspect_ratio``. Documents are
#: about 1.4:1 (passport page) to 1.6:1 (ID card); anything beyond 4:1 is usually a mis-crop or a screenshot.
MAX_ASPECT_RATIO = 4.0
#: Below this longest side, ``low_resolution`` is reported. 1000 px across an ID-1 card (85.6 mm) is about
#: 300 dpi, what reading the machine-readable zone needs; a face needs less, so its bound is a VGA frame.
LOW_RESOLUTION_LONGEST_SIDE_PX: Mapping[str, int] = {"front": 1000, "back": 1000, "face": 640}
#: Quality range searched when an image must be re-encoded as JPEG to fit the byte limit. Below 75, text and
#: security features suffer more than from a moderate downscale, so the search downscales instead.
JPEG_QUALITY_MAX = 95
JPEG_QUALITY_MIN = 75

#: Formats Pillow may try when opening untrusted bytes. Plugins that shell out (EPS) or are rarely exercised
#: are left out on purpose. HEIF is present only when pillow-heif is installed.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "AVIF", "HEIF")
_ACCEPTED_FORMATS = {"JPEG": MimeType.JPEG, "PNG": MimeType.PNG}
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_EXIF_PREFIX = b"Exif\x00\x00"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND"
_JPEG_EOI = b"\xff\xd9"
# SOF markers carry the frame size; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frames.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_ORIENTATION_NAMES = {
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}


# ============================================================================================================
# Report objects
# ============================================================================================================


@attrs.frozen
class PreflightIssue:
    """One finding: a stable machine ``code`` and a ``message`` for people. Never contains image bytes."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"

    def to_dict(self) -> dict[str, str]:
        """``{"code": ..., "message": ...}`` for JSON output."""
        return {"code": self.code, "message": self.message}


@attrs.frozen
class PreflightReport:
    """The verdict on one image.

    ``ok`` is True when Jumio is expected to accept the image (no errors; warnings do not count).
    ``format`` is Pillow's name for the content (``"JPEG"``, ``"PNG"``, ``"WEBP"``...) or None when it could
    not be identified; ``width``/``height`` are None when unknown; ``bytes`` is the raw size. With
    ``fix=True`` and a change made, the report describes the fixed image, ``image`` is that image and
    ``changes`` says what was done; otherwise ``image`` is the input (the same object when an
    :class:`~netverify_async.Image` was given).
    """

    ok: bool
    role: str
    format: str | None
    width: int | None
    height: int | None
    bytes: int
    errors: tuple[PreflightIssue, ...] = ()
    warnings: tuple[PreflightIssue, ...] = ()
    changes: tuple[str, ...] = ()
    image: Image | None = None

    @property
    def error_codes(self) -> frozenset[str]:
        """The codes of all errors."""
        return frozenset(e.code for e in self.errors)

    @property
    def warning_codes(self) -> frozenset[str]:
        """The codes of all warnings."""
        return frozenset(w.code for w in self.warnings)

    @property
    def changed(self) -> bool:
        """True when normalisation produced a different image (or mime type) than the input."""
        return bool(self.changes)

    def raise_for_errors(self) -> PreflightReport:
        """Raise :class:`~netverify_async.PreflightError` if there are errors; else return the report."""
        if self.errors:
            listed = "; ".join(f"{e.code}: {e.message}" for e in self.errors)
            raise PreflightError(f"{self.role} image failed preflight: {listed}", report=self, role=self.role)
        return self

    def emit_warnings(self, stacklevel: int = 2) -> None:
        """Issue each warning as a :class:`~netverify_async.PreflightWarning` through :mod:`warnings`."""
        for issue in self.warnings:
            warnings.warn(PreflightWarning(f"{self.role} image: {issue}"), stacklevel=stacklevel)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (no image bytes)."""
        return {
            "ok": self.ok,
            "role": self.role,
            "format": self.format,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": [w.to_dict() for w in self.warnings],
            "changes": list(self.changes),
        }


# ============================================================================================================
# Public entry points
# ============================================================================================================


def check_image_sync(
    data: bytes,
    declared_mime: MimeType | str | None = None,
    *,
    role: Role = "front",
    integrity: Integrity = "decode",
    fix: bool = False,
) -> PreflightReport:
    """Check one image, blocking the calling thread (the sync core of :func:`preflight`).

    ``declared_mime`` is the mime type the request will declare; None means "not declared", which skips the
    ``mime_mismatch`` check. ``integrity="header"`` reads headers only (no pixel decoding). Never raises for
    bad image data: every malformed input gets a verdict. Raises ValueError/TypeError only for bad arguments.
    """
    _check_options(role, integrity)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"image data must be bytes, not {type(data).__name__}")
    return _run_check(bytes(data), declared_mime, None, role, integrity, fix)


async def preflight(
    image: Image | bytes,
    *,
    role: Role = "front",
    integrity: Integrity = "decode",
    fix: bool = False,
    limiter: anyio.CapacityLimiter | None = None,
) -> PreflightReport:
    """Check (and with ``fix=True`` normalise) one image in a worker thread; the event loop stays free.

    ``image`` is an :class:`~netverify_async.Image` (its ``mime_type`` is the declared mime type) or raw bytes
    (nothing declared). ``limiter`` bounds concurrent Pillow work; by default one limiter per event loop
    allows as many images at once as there are CPUs.
    """
    _check_options(role, integrity)
    data, declared, original = _coerce_image(image)
    import anyio.to_thread

    work = functools.partial(_run_check, data, declared, original, role, integrity, fix)
    return await anyio.to_thread.run_sync(work, limiter=limiter or _default_limiter())


async def preflight_request(
    request: NetverifyRequest,
    *,
    integrity: Integrity = "decode",
    fix: bool = False,
    limiter: anyio.CapacityLimiter | None = None,
) -> dict[str, PreflightReport]:
    """Preflight every image of a request concurrently; returns ``{role: report}`` for the roles present.

    With ``fix=True``, apply the fixes with ``request.replace_images(**changed_images(reports))``.
    """
    import anyio

    images = request.images
    reports: dict[str, PreflightReport] = {}

    async def one(role: Role, img: Image) -> None:
        reports[role] = await preflight(img, role=role, integrity=integrity, fix=fix, limiter=limiter)

    async with anyio.create_task_group() as tg:
        for role, img in images.items():
            tg.start_soon(one, cast("Role", role), img)
    return {role: reports[role] for role in images}


def changed_images(reports: Mapping[str, PreflightReport]) -> dict[str, Image]:
    """The images that normalisation changed, keyed by role, ready for ``NetverifyRequest.replace_images``."""
    return {role: r.image for role, r in reports.items() if r.changes and r.image is not None}


# ============================================================================================================
# Plumbing
# ============================================================================================================


def _check_options(role: object, integrity: object) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if integrity not in INTEGRITY_LEVELS:
        raise ValueError(f"integrity must be one of {', '.join(INTEGRITY_LEVELS)}, not {integrity!r}")


def _coerce_image(image: object) -> tuple[bytes, MimeType | str | None, Image | None]:
    if isinstance(image, Image):
        return image.data, image.mime_type, image
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), None, None
    raise TypeError(f"image must be a netverify_async.Image or bytes, not {type(image).__name__}")


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


_limiter_var: RunVar[anyio.CapacityLimiter] | None = None


def _default_limiter() -> anyio.CapacityLimiter:
    """The limiter of the running event loop (anyio's RunVar keeps one per loop, asyncio and trio alike)."""
    global _limiter_var
    import anyio
    from anyio.lowlevel import RunVar

    if _limiter_var is None:
        _limiter_var = RunVar("netverify_async.preflight_limiter")
    try:
        return _limiter_var.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_cpu_count())
        _limiter_var.set(limiter)
        return limiter


_pil_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _open_formats() -> tuple[str, ...]:
    """Import the Pillow plugins we open with (once) and register pillow-heif's opener when it is installed.

    Returns the formats ``Image.open`` may try on untrusted bytes.
    """
    with _pil_lock:
        import importlib

        from PIL import Image as PILImage

        for plugin in ("Jpeg", "Png", "WebP", "Tiff", "Bmp", "Gif", "Avif"):
            try:
                importlib.import_module(f"PIL.{plugin}ImagePlugin")
            except ImportError:  # pragma: no cover - depends on how Pillow was built
                pass
        try:
            importlib.import_module("pillow_heif").register_heif_opener()
        except Exception:  # noqa: S110 - an optional extra; any failure only means no HEIC support
            pass
        return tuple(f for f in _OPEN_FORMATS if f in PILImage.OPEN)


class _Findings:
    """What the analysis learned so far (mutable while it runs)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.format: str | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.errors: list[PreflightIssue] = []
        self.warnings: list[PreflightIssue] = []
        self.orientation = 1
        self.has_gps = False
        self.frames = 1
        self.mode: str | None = None
        self.image: PILImage.Image | None = None  # the opened (lazy) Pillow image, kept only for fix=True
        self.decoded = False

    def error(self, code: str, message: str) -> None:
        if code not in {e.code for e in self.errors}:
            self.errors.append(PreflightIssue(code, message))

    def warn(self, code: str, message: str) -> None:
        if code not in {w.code for w in self.warnings}:
            self.warnings.append(PreflightIssue(code, message))

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors}

    def report(self, role: str, image: Image | None, changes: Iterable[str] = ()) -> PreflightReport:
        return PreflightReport(
            ok=not self.errors,
            role=role,
            format=self.format,
            width=self.width,
            height=self.height,
            bytes=self.size,
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
            changes=tuple(changes),
            image=image,
        )

    def close(self) -> None:
        if self.image is not None:
            try:
                self.image.close()
            except Exception:  # noqa: S110 - closing a BytesIO-backed image cannot matter
                pass
            self.image = None


def _run_check(
    data: bytes,
    declared: MimeType | str | None,
    original: Image | None,
    role: str,
    integrity: str,
    fix: bool,
) -> PreflightReport:
    def input_image() -> Image:
        return original if original is not None else Image.from_bytes(data, declared)

    found = _analyse(data, declared, role, integrity, fix=fix)
    try:
        if not fix:
            return found.report(role, input_image())
        outcome = _normalise(data, found)
        if outcome is None:
            return found.report(role, input_image())
        new_data, new_mime, changes = outcome
        if new_data is data:  # only the declared mime type was wrong: check the same bytes again, fully
            fixed = _analyse(data, new_mime, role, integrity, fix=False)
        else:  # our own encoder's output needs no decode
            fixed = _analyse(new_data, new_mime, role, "header", fix=False)
        return fixed.report(role, Image(new_data, new_mime), changes)
    finally:
        found.close()


# ============================================================================================================
# Analysis
# ============================================================================================================


def _describe_failure(exc: BaseException) -> str:
    """A message for a Pillow failure that names the problem without quoting any of the image's bytes."""
    text = str(exc).lower()
    if isinstance(exc, MemoryError):
        return "the image could not be read: decoding it needs more memory than is available"
    if "truncated" in text or isinstance(exc, EOFError):
        return "the file is cut short (truncated): the image data ends too early"
    if "decompressed data too large" in text or "too much memory used in text chunks" in text:
        return "the image carries text metadata larger than decoders accept"
    if isinstance(exc, Warning):
        return f"the image was refused by Pillow's safety checks ({type(exc).__name__})"
    return f"the image data is damaged and cannot be decoded ({type(exc).__name__})"


def _analyse(
    data: bytes, declared: MimeType | str | None, role: str, integrity: str, *, fix: bool
) -> _Findings:
    """Run the checks in order of cost, stopping as soon as the verdict is certain.

    With ``fix=True`` the opened Pillow image is kept in the findings for :func:`_normalise` (unless it was
    decoded here), and fixable errors do not stop the analysis.
    """
    found = _Findings(len(data))
    if not data:
        found.error(CORRUPT_IMAGE, "the file is empty")
        return found
    if len(data) > MAX_IMAGE_BYTES:
        found.error(
            FILE_TOO_LARGE,
            f"the file is {len(data):,} bytes; the API accepts at most {MAX_IMAGE_BYTES:,} bytes per image",
        )

    # 1. Our own reading of the JPEG/PNG header: dimensions before Pillow allocates anything.
    magic = sniff_mime_type(data)
    header: _Header | None = None
    if magic is MimeType.JPEG:
        header = _read_jpeg_header(data)
    elif magic is MimeType.PNG:
        header = _read_png_header(data)
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
    formats = _open_formats()
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
        found.error(CORRUPT_IMAGE, _describe_failure(exc))
        return found

    keep = False
    try:
        _inspect_opened(found, im, declared, role)
        if found.codes & _UNFIXABLE or (found.errors and not fix):
            return found
        # 3. Full decode, only when everything else passed, and not when normalisation will decode anyway.
        if fix and _needs_reencode(found):
            keep = True
        elif integrity == "decode" and not found.errors:
            _decode(found, im)
    except Exception as exc:  # - lazily parsed metadata can fail late; still a verdict
        found.error(CORRUPT_IMAGE, _describe_failure(exc))
        keep = False
    finally:
        if keep:
            found.image = im
        else:
            im.close()
    return found


def _check_dimensions(found: _Findings, width: int, height: int) -> bool:
    """Record dimension errors; returns True when the image is a decompression bomb (stop at once)."""
    longest = max(width, height)
    if longest >= MAX_SIDE_PX:
        found.error(
            TOO_LARGE_DIMENSIONS,
            f"the image is {width}x{height} pixels; each side must be smaller than {MAX_SIDE_PX} pixels",
        )
    if width * height > DECOMPRESSION_BOMB_PIXELS:
        found.error(
            DECOMPRESSION_BOMB,
            f"the header promises {width}x{height} pixels, far more than any acceptable image has; "
            "it was refused without decoding",
        )
        return True
    if longest <= MIN_LONGEST_SIDE_PX:
        found.error(
            TOO_SMALL,
            f"the image is {width}x{height} pixels; its longest side must be larger than "
            f"{MIN_LONGEST_SIDE_PX} pixels (images are never upscaled)",
        )
    return False


def _inspect_opened(found: _Findings, im: PILImage.Image, declared: MimeType | str | None, role: str) -> None:
    fmt = "JPEG" if im.format == "MPO" else im.format  # MPO: the first picture is a plain JPEG
    found.format = fmt
    found.width, found.height = width, height = im.size
    found.mode = im.mode
    if _check_dimensions(found, width, height):
        return
    if fmt not in _ACCEPTED_FORMATS:
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
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
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
    if im.mode in _GRAY_MODES and role in ("front", "back"):
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


def _check_mime(found: _Findings, declared: MimeType | str | None, fmt: str | None) -> None:
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
    actual = _ACCEPTED_FORMATS.get(fmt or "")
    if actual is None:
        found.error(
            MIME_MISMATCH, f"the image is declared as {normalised} but its content is {fmt or 'unknown'}"
        )
    elif normalised != actual.value:
        found.error(
            MIME_MISMATCH,
            f"the image is declared as {normalised} but its content is {fmt} (declare {actual.value})",
        )


def _inspect_exif(found: _Findings, im: PILImage.Image) -> None:
    raw = im.info.get("exif")
    if isinstance(raw, (bytes, bytearray)) and raw:
        summary = _parse_exif(bytes(raw))
        if summary is None:
            found.warn(EXIF_UNREADABLE, "the EXIF metadata is malformed and was ignored")
            return
        orientation, has_gps = summary
    elif im.format == "TIFF":  # TIFF tags are the EXIF; Pillow has already parsed them at open
        try:
            exif = im.getexif()
            orientation = int(exif.get(0x0112, 1) or 1)
            has_gps = bool(exif.get(0x8825))
        except Exception:  # - broken tags must not break the check
            found.warn(EXIF_UNREADABLE, "the TIFF/EXIF tags are malformed and were ignored")
            return
    else:
        return
    if orientation in _ORIENTATION_NAMES:
        found.orientation = orientation
        found.warn(
            EXIF_ORIENTATION,
            f"the picture is stored {_ORIENTATION_NAMES[orientation]} and relies on the EXIF orientation "
            "tag; "
            "if the tag is ignored the document is read sideways (fix=True applies it)",
        )
    if has_gps:
        found.has_gps = True
        found.warn(
            GPS_LOCATION,
            "the EXIF metadata holds a GPS position (personal data); a re-encoded image (fix=True) drops it",
        )


def _hand_whole_file_to_decoder(im: PILImage.Image, size: int) -> None:
    """Let Pillow pass the whole file to the decoder in one call instead of 64 KiB pieces.

    The decoder runs without the GIL, but picks it up again between pieces; with many pieces, threads decoding
    side by side spend their time queueing for the GIL. One piece keeps them parallel. (Per image; Pillow's
    global default is left alone.)
    """
    im.decodermaxblock = max(size, 65536)  # type: ignore[attr-defined]


def _decode(found: _Findings, im: PILImage.Image) -> None:
    try:
        _hand_whole_file_to_decoder(im, found.size)
        if im.format in ("JPEG", "MPO"):
            # libjpeg's 1/8 scaling: every entropy-coded byte is still decoded; the IDCT runs on 1/64 of them.
            im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
        im.load()
    except Exception as exc:  # - any decoder failure is a damaged image
        found.error(CORRUPT_IMAGE, _describe_failure(exc))


# --- hand-read headers --------------------------------------------------------------------------------------


@attrs.frozen
class _Header:
    format: str
    width: int
    height: int
    truncated: bool


def _read_png_header(data: bytes) -> _Header | None:
    """Width and height from IHDR and whether IEND is there; None when IHDR is not where it must be."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if int.from_bytes(data[8:12], "big") != 13:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return _Header("PNG", width, height, truncated=data.rfind(_PNG_IEND, 33) < 0)


def _read_jpeg_header(data: bytes) -> _Header | None:
    """Walk the JPEG marker segments up to the first scan; None when the structure is not followed."""
    size, pos = len(data), 2
    frame: tuple[int, int] | None = None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        if marker in (0xD8, 0xD9):  # a second SOI or an EOI before any scan
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS and frame is None:
            if pos + 9 > size:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            frame = (width, height)
        if marker == 0xDA:  # start of scan: the header is over
            if frame is None:
                return None
            # In scan data 0xFF is always followed by 0x00 or a restart marker, so FFD9 can only be the EOI.
            truncated = data.rfind(_JPEG_EOI, pos + 2 + length) < 0
            return _Header("JPEG", frame[0], frame[1], truncated)
        pos += 2 + length
    return None


_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFD_ENTRIES = 1000


def _read_ifd(tiff: bytes, offset: int, endian: str) -> dict[int, tuple[int, int, bytes]] | None:
    """The entries of one IFD (tag -> type, count, 4-byte value), or None when it points outside the data."""
    if offset < 8 or offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    end = offset + 2 + 12 * count
    if count > _MAX_IFD_ENTRIES or end > len(tiff):
        return None
    entries: dict[int, tuple[int, int, bytes]] = {}
    for start in range(offset + 2, end, 12):
        tag, typ, n = struct.unpack(endian + "HHI", tiff[start : start + 8])
        value = tiff[start + 8 : start + 12]
        width = _TIFF_TYPE_SIZES.get(typ, 0) * n
        if width > 4:
            (pointer,) = struct.unpack(endian + "I", value)
            if pointer + width > len(tiff):
                return None
        entries[tag] = (typ, n, value)
    return entries


def _parse_exif(raw: bytes) -> tuple[int, bool] | None:
    """(orientation, has a GPS position) from EXIF bytes, or None when the structure is broken."""
    tiff = raw[len(_EXIF_PREFIX) :] if raw.startswith(_EXIF_PREFIX) else raw
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    endian = "<" if tiff[:2] == b"II" else ">"
    magic, ifd0_offset = struct.unpack(endian + "HI", tiff[2:8])
    if magic != 42:
        return None
    ifd0 = _read_ifd(tiff, ifd0_offset, endian)
    if ifd0 is None:
        return None
    orientation = 1
    if 0x0112 in ifd0:
        typ, _, value = ifd0[0x0112]
        if typ == 3:
            orientation = struct.unpack(endian + "H", value[:2])[0]
    has_gps = False
    if 0x8825 in ifd0:
        (gps_offset,) = struct.unpack(endian + "I", ifd0[0x8825][2])
        gps = _read_ifd(tiff, gps_offset, endian)
        if gps is None:
            return None
        has_gps = bool(gps)
    return orientation, has_gps


# ============================================================================================================
# Normalisation
# ============================================================================================================

_UNFIXABLE = frozenset({TOO_SMALL, CORRUPT_IMAGE, DECOMPRESSION_BOMB})
_FIXED_BY_REENCODING = frozenset({UNSUPPORTED_FORMAT, TOO_LARGE_DIMENSIONS, FILE_TOO_LARGE})
_WARNINGS_FIXED_BY_REENCODING = frozenset({EXIF_ORIENTATION, ALPHA_CHANNEL, CMYK})


def _needs_reencode(found: _Findings) -> bool:
    return bool(
        found.codes & _FIXED_BY_REENCODING or {w.code for w in found.warnings} & _WARNINGS_FIXED_BY_REENCODING
    )


def _normalise(data: bytes, found: _Findings) -> tuple[bytes, MimeType, tuple[str, ...]] | None:
    """Fix what can be fixed: (data, mime, changes), or None when nothing was (or could be) changed."""
    if found.codes & _UNFIXABLE:
        return None
    if not _needs_reencode(found):
        if MIME_MISMATCH in found.codes and found.format in _ACCEPTED_FORMATS:
            mime = _ACCEPTED_FORMATS[found.format]
            return data, mime, (f"declared mime type corrected to {mime.value}",)
        return None
    if found.image is None:
        return None
    try:
        return _reencode(found.image, found)
    except Exception as exc:  # - decoding for the fix is where a damaged image shows itself
        found.error(CORRUPT_IMAGE, _describe_failure(exc))
        return None


def _fit_within(width: int, height: int, longest: int) -> tuple[int, int]:
    scale = longest / max(width, height)
    return max(1, min(longest, round(width * scale))), max(1, min(longest, round(height * scale)))


def _reencode(im: PILImage.Image, found: _Findings) -> tuple[bytes, MimeType, tuple[str, ...]]:
    from PIL import Image as PILImage

    changes: list[str] = []
    source_format = found.format or "unknown"
    width, height = im.size
    target: tuple[int, int] | None = None
    if max(width, height) >= MAX_SIDE_PX:
        target = _fit_within(width, height, MAX_SIDE_PX - 1)
        if source_format == "JPEG":
            im.draft(
                None, target
            )  # let libjpeg decode at 1/2, 1/4 or 1/8 scale when that is still large enough
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
    _hand_whole_file_to_decoder(im, found.size)
    im.load()
    icc = im.info.get("icc_profile")
    work: PILImage.Image = im
    if found.orientation in _ORIENTATION_NAMES:
        work = work.transpose(_transpose_method(found.orientation))
        changes.append(f"applied the EXIF orientation ({_ORIENTATION_NAMES[found.orientation]})")
        if target is not None and found.orientation >= 5:  # a quarter turn swaps width and height
            target = (target[1], target[0])
    source_mode = work.mode
    work, converted = _to_plain_mode(work, icc)
    changes.extend(converted)
    if target is not None:
        work = work.resize(target, PILImage.Resampling.LANCZOS, reducing_gap=3.0)
        changes.append(f"downscaled from {width}x{height} to {target[0]}x{target[1]} pixels")
    keep_icc = icc if isinstance(icc, bytes) and work.mode == source_mode else None
    if source_format not in _ACCEPTED_FORMATS:
        changes.append(f"converted {source_format} to JPEG")
    encoded, out_format, notes = _encode_to_fit(
        work, "PNG" if source_format == "PNG" else "JPEG", MAX_IMAGE_BYTES, keep_icc
    )
    changes.extend(notes)
    if stripped:
        gps = " including the GPS position" if found.has_gps else ""
        changes.append(f"removed metadata ({', '.join(stripped)}){gps}")
    return encoded, _ACCEPTED_FORMATS[out_format], tuple(changes)


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
    if im.mode in _ALPHA_MODES:
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


def _encode_to_fit(
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
