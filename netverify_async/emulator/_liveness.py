"""Synthetic liveness images: the frames Jumio keeps of the face capture of a transaction with identity
verification, served by ``GET .../scans/{ref}/images/liveness/{n}`` and listed as ``livenessImages``.

The frames are small plain pictures (no face, nothing personal), the same for every scan: odd numbers are JPEG,
even numbers PNG (the retrieval guide allows both and names the type in ``Content-Type``), so a client meets
both types. The list is given in descending order, since the guide warns that liveness images "may not be
returned in chronological order".
"""

from __future__ import annotations

import functools
import io

__all__ = ["MAX_LIVENESS_FRAMES", "liveness_frame", "liveness_numbers"]

#: Most liveness frames a scan may have in the emulator (``EmulatorConfig.liveness_images``).
MAX_LIVENESS_FRAMES = 20
#: Size of a frame, in pixels.
FRAME_SIZE = (160, 120)


@functools.lru_cache(maxsize=MAX_LIVENESS_FRAMES)
def liveness_frame(number: int) -> tuple[bytes, str]:
    """Frame ``number`` (from 1) as ``(bytes, content type)``: JPEG for an odd number, PNG for an even one."""
    from PIL import Image

    if number < 1:
        raise ValueError("a liveness frame number starts at 1")
    shade = (40 + 9 * number) % 200
    picture = Image.new("RGB", FRAME_SIZE, (shade, 90, 200 - shade))
    buffer = io.BytesIO()
    if number % 2:
        picture.save(buffer, "JPEG", quality=80)
        return buffer.getvalue(), "image/jpeg"
    picture.save(buffer, "PNG")
    return buffer.getvalue(), "image/png"


def liveness_numbers(count: int) -> list[int]:
    """The numbers of a scan's ``count`` frames in the order the list gives them (descending)."""
    return list(range(count, 0, -1))
