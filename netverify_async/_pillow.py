"""Pillow as both the image analysis and the fixer use it, on untrusted bytes.

The plugins that may open a file (and pillow-heif's opener when installed), which Pillow formats the API
accepts, the mode families, how a Pillow failure is described without quoting the image, and how the decoder
is fed. Pillow is imported only inside the functions, on first use; its global settings (``MAX_IMAGE_PIXELS``,
``LOAD_TRUNCATED_IMAGES``, the decoder block size) are never changed.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from ._models import MimeType

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "ACCEPTED_FORMATS",
    "ALPHA_MODES",
    "GRAY_MODES",
    "describe_failure",
    "hand_whole_file_to_decoder",
    "open_formats",
]

#: Formats Pillow may try when opening untrusted bytes. Plugins that shell out (EPS) or are rarely exercised
#: are left out on purpose. HEIF is present only when pillow-heif is installed.
_OPEN_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "AVIF", "HEIF")
#: The Pillow formats the API accepts, and the mime type each is declared as.
ACCEPTED_FORMATS = {"JPEG": MimeType.JPEG, "PNG": MimeType.PNG}
ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_pil_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def open_formats() -> tuple[str, ...]:
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


def describe_failure(exc: BaseException) -> str:
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


def hand_whole_file_to_decoder(im: PILImage.Image, size: int) -> None:
    """Let Pillow pass the whole file to the decoder in one call instead of 64 KiB pieces.

    The decoder runs without the GIL, but picks it up again between pieces; with many pieces, threads decoding
    side by side spend their time queueing for the GIL. One piece keeps them parallel. (Per image; Pillow's
    global default is left alone.)
    """
    im.decodermaxblock = max(size, 65536)  # type: ignore[attr-defined]
