"""Image preflight: find out, before sending, whether Jumio will accept an image; optionally fix it.

The documented limits for ``frontsideImage``, ``backsideImage`` and ``faceImage`` are: JPEG or PNG, at most 15
MB, each side below 8000 pixels, longest side above 300 pixels. :func:`check_image_sync` checks an image
against them and reports every problem with a stable code and a sentence a person understands; with
``fix=True`` (opt-in) it also repairs what can be repaired without guessing. This module is the public entry
and the threading; the work is done below it:

=================================  ===============================================================
module                             job
=================================  ===============================================================
``_preflight_report``              the codes (:data:`ERROR_CODES`, :data:`WARNING_CODES`), the report
``_imagerules``                    Jumio's hard limits, applied (shared with request validation)
``_imageheaders``                  sans-I/O readers of JPEG/PNG headers and EXIF
``_pillow``                        Pillow on untrusted bytes, as the analysis and the fixer use it
``_imagecheck``                    the analysis, in order of cost
``_imagefix``                      normalisation and re-encoding
=================================  ===============================================================

All Pillow work of the async functions runs in worker threads (bounded by a per-event-loop
:class:`anyio.CapacityLimiter` sized to the CPU count); Pillow itself is imported only when first needed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from ._imagecheck import LOW_RESOLUTION_LONGEST_SIDE_PX as LOW_RESOLUTION_LONGEST_SIDE_PX
from ._imagecheck import MAX_ASPECT_RATIO as MAX_ASPECT_RATIO
from ._imagecheck import analyse
from ._imagefix import JPEG_QUALITY_MAX as JPEG_QUALITY_MAX
from ._imagefix import JPEG_QUALITY_MIN as JPEG_QUALITY_MIN
from ._imagefix import normalise
from ._imagerules import DECOMPRESSION_BOMB_PIXELS as DECOMPRESSION_BOMB_PIXELS
from ._imagerules import ROLES as ROLES
from ._imagerules import Role as Role
from ._models import Image, MimeType
from ._preflight_report import ERROR_CODES as ERROR_CODES
from ._preflight_report import INTEGRITY_LEVELS as INTEGRITY_LEVELS
from ._preflight_report import WARNING_CODES as WARNING_CODES
from ._preflight_report import Integrity as Integrity
from ._preflight_report import PreflightIssue as PreflightIssue
from ._preflight_report import PreflightReport as PreflightReport

if TYPE_CHECKING:
    import anyio
    from anyio.lowlevel import RunVar

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
# Plumbing: arguments, the per-loop limiter, and check -> fix -> check again
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


def _run_check(
    data: bytes,
    declared: MimeType | str | None,
    original: Image | None,
    role: str,
    integrity: str,
    fix: bool,
) -> PreflightReport:
    """Analyse; with ``fix``, normalise and analyse the result again. Blocking (runs in a worker thread)."""

    def input_image() -> Image:
        return original if original is not None else Image.from_bytes(data, declared)

    found = analyse(data, declared, role, integrity, fix=fix)
    try:
        if not fix:
            return found.report(role, input_image())
        outcome = normalise(data, found)
        if outcome is None:
            return found.report(role, input_image())
        new_data, new_mime, changes = outcome
        if new_data is data:  # only the declared mime type was wrong: check the same bytes again, fully
            fixed = analyse(data, new_mime, role, integrity, fix=False)
        else:  # our own encoder's output needs no decode
            fixed = analyse(new_data, new_mime, role, "header", fix=False)
        return fixed.report(role, Image(new_data, new_mime), changes)
    finally:
        found.close()
