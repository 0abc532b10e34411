"""Helpers for the batch and journal tests: real generated images, requests, and a client for an emulator."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image as PILImage

from netverify_async import Image, NetverifyClient, NetverifyRequest, RetryPolicy

USER_AGENT = "Example Corp BatchTests/1.0"


def png_bytes(width: int = 400, height: int = 320, *, seed: int = 1, noisy: bool = False) -> bytes:
    """A real PNG: flat colour (tiny) or noise (about ``width * height * 3`` bytes, incompressible)."""
    if noisy:
        rng = random.Random(seed)
        im = PILImage.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    else:
        im = PILImage.new("RGB", (width, height), (seed * 37 % 256, 90, 160))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


GOOD_PNG = png_bytes()
#: Longest side 200 px: Jumio requires more than 300, so preflight refuses it.
TOO_SMALL_PNG = png_bytes(200, 150)


def make_request(ref: str, data: bytes = GOOD_PNG, **fields: Any) -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference=ref,
        frontside_image=Image.from_bytes(data),
        country="USA",
        id_type="PASSPORT",
        **fields,
    )


def refs(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:04d}" for i in range(count)]


def counting_requests(prefix: str, count: int, pulled: list[int]) -> Iterator[NetverifyRequest]:
    """A lazy generator that records how many items were taken from it."""
    for i in range(count):
        pulled[0] += 1
        yield make_request(f"{prefix}-{i:06d}")


def client_for(
    emu: Any, *, client_class: Callable[..., NetverifyClient] = NetverifyClient, **options: Any
) -> Any:
    settings: dict[str, Any] = {
        "api_token": emu.api_token,
        "api_secret": emu.api_secret,
        "user_agent": USER_AGENT,
        "base_url": emu.base_url,
        "rate_limit": None,
        "retry": RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_max=0.05),
    }
    settings.update(options)
    return client_class(**settings)


def scans_per_reference(emu: Any) -> dict[str, int]:
    return {ref: len(scans) for ref, scans in emu.stats.scans_by_merchant_reference.items()}
