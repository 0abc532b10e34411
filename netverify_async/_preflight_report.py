"""What preflight says about an image: the codes, the report, and the findings collected while checking.

==========================  =========================================================================
error code                  meaning
==========================  =========================================================================
``unsupported_format``      the content is not JPEG or PNG, whatever the file name or mime type says
``mime_mismatch``           the declared mime type disagrees with the content (or is not one the API takes)
``too_small``               the longest side is not above ``MIN_LONGEST_SIDE_PX`` (300) pixels
``too_large_dimensions``    a side is not below ``MAX_SIDE_PX`` (8000) pixels
``file_too_large``          more than ``MAX_IMAGE_BYTES`` (15,000,000) raw bytes
``corrupt_image``           truncated, damaged or undecodable data
``decompression_bomb``      the header promises far more pixels than any acceptable image has
==========================  =========================================================================

Warnings never block a submission; they name things that make a good verification less likely (``animated``,
``alpha_channel``, ``cmyk``, ``grayscale``, ``unusual_aspect_ratio``, ``low_resolution``, ``narrow_width``,
``exif_orientation``, ``exif_unreadable``, ``gps_location``). :data:`ERROR_CODES` and :data:`WARNING_CODES`
list them; :data:`UNFIXABLE` and the ``FIXED_BY_REENCODING`` sets say which of them ``fix=True`` repairs (the
analysis and the fixer both need that, so it lives here, with the codes).

Nothing here imports Pillow or the request models.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

import attrs

from ._errors import PreflightError, PreflightWarning

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from ._parts import Image

__all__ = [
    "ERROR_CODES",
    "INTEGRITY_LEVELS",
    "WARNING_CODES",
    "Findings",
    "Integrity",
    "PreflightIssue",
    "PreflightReport",
]

#: How deep the check goes: ``header`` reads headers only, ``decode`` also decodes the pixel data.
Integrity = Literal["header", "decode"]
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

# --- what fix=True can repair -------------------------------------------------------------------------------
#: Errors no normalisation repairs: images are never upscaled, damaged data is never guessed at.
UNFIXABLE = frozenset({TOO_SMALL, CORRUPT_IMAGE, DECOMPRESSION_BOMB})
#: Errors and warnings that a re-encode (convert, downscale, apply the orientation, flatten) repairs.
ERRORS_FIXED_BY_REENCODING = frozenset({UNSUPPORTED_FORMAT, TOO_LARGE_DIMENSIONS, FILE_TOO_LARGE})
WARNINGS_FIXED_BY_REENCODING = frozenset({EXIF_ORIENTATION, ALPHA_CHANNEL, CMYK})


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


class Findings:
    """What the analysis learned so far (mutable while it runs); the fixer reads it and may add an error."""

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
        self.image: PILImage.Image | None = None  # the opened (lazy) Pillow image, kept only for fix=True

    def add(self, issue: PreflightIssue) -> None:
        """Record an error found by a shared rule (each code once)."""
        if issue.code not in self.codes:
            self.errors.append(issue)

    def error(self, code: str, message: str) -> None:
        self.add(PreflightIssue(code, message))

    def warn(self, code: str, message: str) -> None:
        if code not in {w.code for w in self.warnings}:
            self.warnings.append(PreflightIssue(code, message))

    @property
    def codes(self) -> set[str]:
        return {e.code for e in self.errors}

    @property
    def unfixable(self) -> bool:
        """True when an error was found that no normalisation repairs."""
        return bool(self.codes & UNFIXABLE)

    @property
    def needs_reencode(self) -> bool:
        """True when ``fix=True`` has to decode and re-encode the image (not merely correct the mime type)."""
        warned = {w.code for w in self.warnings}
        return bool(self.codes & ERRORS_FIXED_BY_REENCODING or warned & WARNINGS_FIXED_BY_REENCODING)

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
