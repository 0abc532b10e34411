"""Helpers shared by the tests (importable as ``_support``)."""

from __future__ import annotations

import io

USER_AGENT = "Example Corp SampleApp/1.0.1"


def make_jpeg(width: int = 640, height: int = 420, *, quality: int = 85, seed: int = 1) -> bytes:
    """A real JPEG with some texture, decodable by Pillow."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), (200 + seed % 50, 210, 190))
    draw = ImageDraw.Draw(img)
    for i in range(0, width, 40):
        draw.line([(i, 0), (width - i, height)], fill=(i % 255, 80, 120), width=3)
    draw.rectangle([20, 20, width // 3, height // 2], outline=(10, 10, 10), width=4)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


class SleepRecorder:
    """A stand-in for ``anyio.sleep`` that records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
