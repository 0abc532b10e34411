"""Real image files for the preflight tests, generated with Pillow (plus a few headers written by hand).

Everything is made in memory and is small unless a test needs a size limit; images that must be large in
pixels use cheap modes (1-bit, greyscale, flat colour) so that they compress to a few hundred bytes.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

from PIL import Image as PILImage

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode(im: PILImage.Image, fmt: str, **options: Any) -> bytes:
    """``im`` saved as ``fmt`` (Pillow format name) with save options."""
    buffer = io.BytesIO()
    im.save(buffer, fmt, **options)
    return buffer.getvalue()


def picture(width: int, height: int, mode: str = "RGB") -> PILImage.Image:
    """A smooth gradient picture (cheap to make and to compress) in ``mode``."""
    gradient = PILImage.linear_gradient("L").resize((width, height))
    if mode == "L":
        return gradient
    rgb = PILImage.merge("RGB", (gradient, gradient.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT), gradient))
    return rgb if mode == "RGB" else rgb.convert(mode)


def noise(width: int, height: int, seed: int = 7) -> PILImage.Image:
    """An RGB picture of noise: it compresses badly, like a real photo's fine detail."""
    import random

    rng = random.Random(seed)
    return PILImage.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))


def jpeg(width: int = 1200, height: int = 800, **options: Any) -> bytes:
    return encode(picture(width, height), "JPEG", **options)


def png(width: int = 1200, height: int = 800, mode: str = "RGB", **options: Any) -> bytes:
    return encode(picture(width, height, mode), "PNG", **options)


def flat_png(width: int, height: int, mode: str = "1") -> bytes:
    """A single-colour PNG: tiny on disk whatever its dimensions."""
    return encode(PILImage.new(mode, (width, height), 1 if mode == "1" else 255), "PNG")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk with a correct CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_insert_chunk(data: bytes, chunk: bytes, *, before: bytes = b"IEND") -> bytes:
    """``data`` with ``chunk`` inserted just before the first chunk of type ``before``."""
    at = data.index(before) - 4
    return data[:at] + chunk + data[at:]


def pad_png_to(data: bytes, total: int) -> bytes:
    """A still valid PNG of exactly ``total`` bytes: a private ancillary chunk is inserted before IEND."""
    payload = total - len(data) - 12
    assert payload >= 0
    return png_insert_chunk(data, png_chunk(b"prVt", b"\0" * payload))


def pad_jpeg_to(data: bytes, total: int) -> bytes:
    """A still valid JPEG of exactly ``total`` bytes: comment (COM) segments are inserted after SOI."""
    remaining = total - len(data)
    assert remaining == 0 or remaining >= 4
    segments = []
    while remaining > 0:
        if remaining <= 4 + 65533:
            size = remaining - 4
        elif remaining < 2 * 4 + 65533:  # leave room for one more (empty) segment
            size = remaining - 8
        else:
            size = 65533
        segments.append(b"\xff\xfe" + struct.pack(">H", size + 2) + b"\0" * size)
        remaining -= size + 4
    return data[:2] + b"".join(segments) + data[2:]


def jpeg_with_app1(data: bytes, payload: bytes) -> bytes:
    """``data`` with an APP1 segment holding ``payload`` inserted after SOI."""
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def exif_block(*, orientation: int | None = None, gps: bool = False) -> bytes:
    """EXIF bytes (with the ``Exif\\0\\0`` prefix) holding an orientation and/or a GPS position."""
    exif = PILImage.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if gps:
        position = exif.get_ifd(0x8825)
        position[1] = "N"
        position[2] = (52.0, 31.0, 12.0)
        position[3] = "E"
        position[4] = (13.0, 24.0, 36.0)
    exif[0x010F] = "ExampleCam"  # Make: keeps IFD0 non-empty
    return exif.tobytes()


def broken_exif_block() -> bytes:
    """EXIF whose first IFD lies far outside the data (a common corruption)."""
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0x7FFF_FF00) + b"\x00" * 16


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR (correct CRC) claims ``width`` x ``height`` RGB pixels, followed by a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def bomb_jpeg(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is rewritten to claim ``width`` x ``height``."""
    data = bytearray(jpeg(64, 64))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bomb_bmp(width: int, height: int) -> bytes:
    """A BMP header claiming ``width`` x ``height`` 24-bit pixels, with almost no pixel data."""
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    body = b"\0" * 64
    header = b"BM" + struct.pack("<IHHI", 14 + len(dib) + len(body), 0, 0, 14 + len(dib))
    return header + dib + body


def apng(width: int = 1200, height: int = 800, frames: int = 3) -> bytes:
    images = [PILImage.new("RGB", (width, height), (40 * i, 80, 120)) for i in range(frames)]
    return encode(images[0], "PNG", save_all=True, append_images=images[1:])


def open_image(data: bytes) -> PILImage.Image:
    """Open and fully decode ``data`` (raises if it is not a valid image)."""
    im = PILImage.open(io.BytesIO(data))
    im.load()
    return im
