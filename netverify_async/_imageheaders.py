"""Hand-written, sans-I/O readers of the few header bytes preflight needs before Pillow sees a file.

Reading the JPEG frame header or the PNG IHDR ourselves gives the dimensions before Pillow allocates anything
(so that a decompression bomb is refused unopened), and finding the EOI marker or the IEND chunk shows a
truncated upload without decoding a pixel. The EXIF reader walks only IFD0 and the GPS IFD, with bounds
checks, for the orientation and whether a position is present. Every function takes bytes, returns a value
or None for "not the structure it must be", and never raises on malformed input.
"""

from __future__ import annotations

import struct

import attrs

__all__ = [
    "GPS_IFD_TAG",
    "ORIENTATION_NAMES",
    "ORIENTATION_TAG",
    "ImageHeader",
    "parse_exif",
    "read_jpeg_header",
    "read_png_header",
]

EXIF_PREFIX = b"Exif\x00\x00"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND"
_JPEG_EOI = b"\xff\xd9"
# SOF markers carry the frame size; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frames.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_MAX_IFD_ENTRIES = 1000
#: EXIF tags: the orientation, and the pointer to the GPS IFD.
ORIENTATION_TAG = 0x0112
GPS_IFD_TAG = 0x8825
#: The EXIF orientations other than 1 (as stored), in words.
ORIENTATION_NAMES = {
    2: "mirrored horizontally",
    3: "rotated 180°",
    4: "mirrored vertically",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}


@attrs.frozen
class ImageHeader:
    """What the header says: Pillow's format name, the dimensions, and whether the end marker is missing."""

    format: str
    width: int
    height: int
    truncated: bool


def read_png_header(data: bytes) -> ImageHeader | None:
    """Width and height from IHDR and whether IEND is there; None when IHDR is not where it must be."""
    if len(data) < 33 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    if int.from_bytes(data[8:12], "big") != 13:
        return None
    width, height = struct.unpack(">II", data[16:24])
    return ImageHeader("PNG", width, height, truncated=data.rfind(_PNG_IEND, 33) < 0)


def read_jpeg_header(data: bytes) -> ImageHeader | None:
    """Walk the JPEG marker segments up to the first scan; None when the structure is not followed."""
    size, pos = len(data), 2
    frame: tuple[int, int] | None = None
    while pos + 4 <= size:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            pos += 2
            continue
        if marker in (0xD8, 0xD9):  # a second SOI or an EOI before any scan
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF_MARKERS and frame is None:
            if pos + 9 > size:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            frame = (width, height)
        if marker == 0xDA:  # start of scan: the header is over
            if frame is None:
                return None
            # In scan data 0xFF is always followed by 0x00 or a restart marker, so FFD9 can only be the EOI.
            truncated = data.rfind(_JPEG_EOI, pos + 2 + length) < 0
            return ImageHeader("JPEG", frame[0], frame[1], truncated)
        pos += 2 + length
    return None


def _read_ifd(tiff: bytes, offset: int, endian: str) -> dict[int, tuple[int, int, bytes]] | None:
    """The entries of one IFD (tag -> type, count, 4-byte value), or None when it points outside the data."""
    if offset < 8 or offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack(endian + "H", tiff[offset : offset + 2])
    end = offset + 2 + 12 * count
    if count > _MAX_IFD_ENTRIES or end > len(tiff):
        return None
    entries: dict[int, tuple[int, int, bytes]] = {}
    for start in range(offset + 2, end, 12):
        tag, typ, n = struct.unpack(endian + "HHI", tiff[start : start + 8])
        value = tiff[start + 8 : start + 12]
        width = _TIFF_TYPE_SIZES.get(typ, 0) * n
        if width > 4:
            (pointer,) = struct.unpack(endian + "I", value)
            if pointer + width > len(tiff):
                return None
        entries[tag] = (typ, n, value)
    return entries


def parse_exif(raw: bytes) -> tuple[int, bool] | None:
    """(orientation, has a GPS position) from EXIF bytes, or None when the structure is broken."""
    tiff = raw[len(EXIF_PREFIX) :] if raw.startswith(EXIF_PREFIX) else raw
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    endian = "<" if tiff[:2] == b"II" else ">"
    magic, ifd0_offset = struct.unpack(endian + "HI", tiff[2:8])
    if magic != 42:
        return None
    ifd0 = _read_ifd(tiff, ifd0_offset, endian)
    if ifd0 is None:
        return None
    orientation = 1
    if ORIENTATION_TAG in ifd0:
        typ, _, value = ifd0[ORIENTATION_TAG]
        if typ == 3:
            orientation = struct.unpack(endian + "H", value[:2])[0]
    has_gps = False
    if GPS_IFD_TAG in ifd0:
        (gps_offset,) = struct.unpack(endian + "I", ifd0[GPS_IFD_TAG][2])
        gps = _read_ifd(tiff, gps_offset, endian)
        if gps is None:
            return None
        has_gps = bool(gps)
    return orientation, has_gps
