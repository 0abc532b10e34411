"""Helpers shared by the tests (importable as ``_support``)."""

from __future__ import annotations

import io
from typing import Any

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


def emulator_client(emu: Any, sleeps: SleepRecorder | None = None, **kwargs: Any) -> Any:
    """A NetverifyClient pointed at a running emulator, with no rate limit and an optional sleep recorder."""
    from netverify_async import NetverifyClient

    params: dict[str, Any] = {
        "api_token": emu.api_token,
        "api_secret": emu.api_secret,
        "user_agent": USER_AGENT,
        "base_url": emu.base_url,
        "rate_limit": None,
        "sleep": sleeps,
    }
    params.update(kwargs)
    return NetverifyClient(**params)
