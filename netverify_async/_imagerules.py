"""Jumio's hard limits on an image, each written once: the roles, the byte count, the pixel dimensions.

performNetverify takes three images (``frontsideImage``, ``backsideImage``, ``faceImage``): JPEG or PNG, at
most 15 MB, each side below 8000 pixels, longest side above 300 pixels. The numbers live in
:mod:`netverify_async._constants`; this module applies them, for request validation and for preflight alike,
and imports neither Pillow nor the request models (so that :mod:`netverify_async._validation` can use it).

**Why 15,000,000 raw bytes.** The guide gives the size limit as "Max. 15MB" on a field that carries the image
as a base64 string. The limit sits next to the pixel limits, which only make sense for the decoded image, so
it is read as a limit on the image file itself (the base64 text of a 15,000,000-byte file is 20,000,000
characters). "MB" is not defined; 15 MiB would be 15,728,640 bytes. We take the smaller reading, so that no
image we let through can be refused for its size; the price is refusing files between the two readings, which
are rare and which ``fix=True`` re-encodes anyway.

**Contradiction on small images.** performNetverify.md requires the *longest side* to be above 300 pixels, the
revision history says images with a *width* below 300 pixels are refused. ``too_small`` follows the
endpoint's own guide; the analysis warns about the narrow width (``narrow_width``).
"""

from __future__ import annotations

from typing import Literal

from ._constants import MAX_IMAGE_BYTES, MAX_SIDE_PX, MIN_LONGEST_SIDE_PX
from ._enums import ImageRole
from ._preflight_report import (
    DECOMPRESSION_BOMB,
    FILE_TOO_LARGE,
    TOO_LARGE_DIMENSIONS,
    TOO_SMALL,
    PreflightIssue,
)

__all__ = [
    "DECOMPRESSION_BOMB_PIXELS",
    "DOCUMENT_ROLES",
    "ROLES",
    "Role",
    "dimension_issues",
    "image_bytes_issue",
]

#: The images of a request, by role (:class:`~netverify_async.ImageRole`, whose members equal the plain strings).
ROLES: tuple[ImageRole, ...] = tuple(ImageRole)
FRONT, BACK, FACE = ImageRole.FRONT, ImageRole.BACK, ImageRole.FACE
#: The roles that show the document itself (not the person).
DOCUMENT_ROLES = frozenset({FRONT, BACK})
#: The type of a role argument; the same names as :data:`ROLES` (a test holds them equal).
Role = Literal["front", "back", "face"]

#: A header promising more pixels than this is refused as a decompression bomb without decoding anything. No
#: acceptable image has more than 7999 x 7999 pixels; twice that still lets ``fix=True`` downscale photos from
#: 108-megapixel phone cameras, and decoding stays below about 400 MB of RGB pixel memory.
DECOMPRESSION_BOMB_PIXELS = 2 * (MAX_SIDE_PX - 1) ** 2


def image_bytes_issue(size: int) -> PreflightIssue | None:
    """The ``file_too_large`` issue for an image file of ``size`` raw bytes, or None when it is within the limit.

    The limit applies to the raw file, before base64 (see the module docstring).
    """
    if size <= MAX_IMAGE_BYTES:
        return None
    return PreflightIssue(
        FILE_TOO_LARGE,
        f"the file is {size:,} bytes; the API accepts at most {MAX_IMAGE_BYTES:,} bytes per image",
    )


def dimension_issues(width: int, height: int) -> list[PreflightIssue]:
    """The errors of an image of ``width`` x ``height`` pixels, in the order they are reported.

    A decompression bomb is the last issue listed, and the only one after ``too_large_dimensions``: it stops
    every further check.
    """
    issues: list[PreflightIssue] = []
    longest = max(width, height)
    if longest >= MAX_SIDE_PX:
        issues.append(
            PreflightIssue(
                TOO_LARGE_DIMENSIONS,
                f"the image is {width}x{height} pixels; each side must be smaller than {MAX_SIDE_PX} pixels",
            )
        )
    if width * height > DECOMPRESSION_BOMB_PIXELS:
        issues.append(
            PreflightIssue(
                DECOMPRESSION_BOMB,
                f"the header promises {width}x{height} pixels, far more than any acceptable image has; "
                "it was refused without decoding",
            )
        )
        return issues
    if longest <= MIN_LONGEST_SIDE_PX:
        issues.append(
            PreflightIssue(
                TOO_SMALL,
                f"the image is {width}x{height} pixels; its longest side must be larger than "
                f"{MIN_LONGEST_SIDE_PX} pixels (images are never upscaled)",
            )
        )
    return issues
