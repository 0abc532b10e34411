"""Small valid inputs for exercising the emulator with a plain HTTP client (tests, demos, benchmarks)."""

from __future__ import annotations

import base64
import functools
import io
from typing import Any

__all__ = ["API_HEADERS", "sample_image", "submission_body"]

#: Headers a compliant client sends (Basic auth comes on top: ``auth=emu.auth`` with httpx).
API_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "Example Corp EmulatorTests/1.0",
}


@functools.lru_cache(maxsize=32)
def sample_image(width: int = 400, height: int = 300, fmt: str = "JPEG") -> bytes:
    """A real image file of the given size and Pillow format (JPEG, PNG, GIF...), made with Pillow."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 110, 170)).save(buffer, fmt)
    return buffer.getvalue()


def submission_body(merchant_reference: str = "emulator-test", **fields: Any) -> dict[str, Any]:
    """A valid performNetverify body (a 400x300 JPEG passport front, country AUT) with ``fields`` merged in.

    Image fields given as bytes are base64-encoded; a field set to None is removed.
    """
    body: dict[str, Any] = {
        "merchantIdScanReference": merchant_reference,
        "frontsideImage": sample_image(),
        "frontsideImageMimeType": "image/jpeg",
        "country": "AUT",
        "idType": "PASSPORT",
    }
    body.update(fields)
    for key, value in list(body.items()):
        if value is None:
            del body[key]
        elif isinstance(value, bytes):
            body[key] = base64.b64encode(value).decode("ascii")
    return body
