"""Synthetic identity-document images for demos, tests and benchmarks, drawn with Pillow.

Every document is a made-up specimen: a card or passport-page layout with a coloured background, a face
placeholder, text lines of fake data marked ``SPECIMEN`` and a machine-readable-zone-like block. No real person,
number or document is depicted, and the same ``seed`` always gives the same pictures.

A few documents can be made deliberately defective, so that a demo shows what preflight refuses:

=========================  ======================================================  =======================
defect                     what the front image is                                 preflight error code
=========================  ======================================================  =======================
``too_small``              a real JPEG of 250x180 pixels                           ``too_small``
``png_declared_as_jpeg``   a real PNG whose declared mime type is image/jpeg       ``mime_mismatch``
``not_an_image``           a few lines of text with a ``.jpg`` name                ``unsupported_format``
``truncated``              a JPEG cut off after 60 % of its bytes                  ``corrupt_image``
=========================  ======================================================  =======================

Drawing is CPU-bound: :func:`generate_documents` spreads it over worker threads so the event loop stays free;
:func:`generate_documents_sync` is the plain, blocking version.
"""

from __future__ import annotations

import functools
import io
import math
import random
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import attrs

from .._imagerules import BACK, FACE, FRONT
from .._models import IdType, Image, MimeType
from .._preflight_report import CORRUPT_IMAGE, MIME_MISMATCH, TOO_SMALL, UNSUPPORTED_FORMAT

if TYPE_CHECKING:
    import anyio
    from PIL import Image as PILImage
    from PIL import ImageFont

__all__ = [
    "DEFECTS",
    "Defect",
    "SyntheticDocument",
    "SyntheticImage",
    "generate_documents",
    "generate_documents_sync",
    "pick_defects",
    "render_document",
]

Defect = Literal["too_small", "png_declared_as_jpeg", "not_an_image", "truncated"]

#: Each deliberate defect and the preflight error code it provokes.
DEFECTS: dict[Defect, str] = {
    "too_small": TOO_SMALL,
    "png_declared_as_jpeg": MIME_MISMATCH,
    "not_an_image": UNSUPPORTED_FORMAT,
    "truncated": CORRUPT_IMAGE,
}

#: Width / height of an ID-1 card (credit-card size: driving licences, identity cards).
_CARD_RATIO = 85.6 / 54.0
#: Width / height of a passport data page (ID-3).
_PASSPORT_RATIO = 125.0 / 88.0
#: Range of the widths of good front images, in pixels (all comfortably above the 300 px minimum).
_WIDTHS = (720, 1500)
#: Countries printed nowhere on the images; only sent with the request (all valid ISO 3166-1 alpha-3 codes).
_COUNTRIES = ("AUT", "DEU", "FRA", "NLD", "ESP", "ITA", "BEL", "SWE", "IRL", "PRT")
_PALETTES = (
    ((214, 232, 244), (167, 201, 228)),
    ((232, 244, 214), (194, 222, 160)),
    ((246, 228, 214), (230, 190, 160)),
    ((236, 222, 246), (200, 176, 228)),
    ((244, 240, 208), (222, 210, 150)),
)
_JPEG_QUALITY = 85


@attrs.frozen(repr=False)
class SyntheticImage:
    """One generated image file: a suggested file name, its bytes and the mime type to declare."""

    name: str
    role: str
    data: bytes
    declared_mime: MimeType | None
    width: int | None
    height: int | None

    def to_image(self) -> Image:
        """The :class:`~netverify_async.Image` a request would carry (with the declared mime type)."""
        return Image(self.data, self.declared_mime)

    def __repr__(self) -> str:
        size = f"{self.width}x{self.height}" if self.width is not None else "?"
        return f"SyntheticImage(name={self.name!r}, size={size}, bytes={len(self.data)})"


@attrs.frozen
class SyntheticDocument:
    """A generated document set: a front image, and for cards a back image; sometimes a face image."""

    index: int
    id_type: IdType
    country: str
    front: SyntheticImage
    back: SyntheticImage | None = None
    face: SyntheticImage | None = None
    #: The deliberate defect of the front image, None for a good document.
    defect: Defect | None = None

    @property
    def expected_error(self) -> str | None:
        """The preflight error code the defect provokes (None for a good document)."""
        return None if self.defect is None else DEFECTS[self.defect]

    @property
    def images(self) -> dict[str, SyntheticImage]:
        """The images present, by role (``front``, ``back``, ``face``)."""
        found = {FRONT: self.front, BACK: self.back, FACE: self.face}
        return {role: img for role, img in found.items() if img is not None}


# ----------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------

_fonts = threading.local()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels; cached per thread (FreeType faces are not shared)."""
    cache: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] | None = getattr(_fonts, "cache", None)
    if cache is None:
        cache = _fonts.cache = {}
    font = cache.get(size)
    if font is None:
        from PIL import ImageFont

        font = cache[size] = ImageFont.load_default(size=size)
    return font


def _gradient(
    width: int, height: int, top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> PILImage.Image:
    """A vertical gradient from ``top`` to ``bottom`` (coloured as one column, then stretched: cheap)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    column = PILImage.linear_gradient("L").resize((1, height))
    return ImageOps.colorize(column, top, bottom).resize((width, height), PILImage.Resampling.NEAREST)


def _background(width: int, height: int, rng: random.Random) -> PILImage.Image:
    from PIL import ImageDraw

    top, bottom = _PALETTES[rng.randrange(len(_PALETTES))]
    canvas = _gradient(width, height, top, bottom)
    draw = ImageDraw.Draw(canvas)
    # a guilloche-like pattern of thin wavy lines, as on real security paper

    phase = rng.random() * math.tau
    line_colour = tuple(max(0, c - 28) for c in bottom)
    step = max(6, width // 90)
    for k in range(7):
        amplitude = height * (0.04 + 0.02 * k)
        points = [
            (x, height * 0.55 + amplitude * math.sin(x / width * math.tau * (1.5 + k * 0.35) + phase + k))
            for x in range(0, width + step, step)
        ]
        draw.line(points, fill=line_colour, width=1)
    return canvas


def _face_placeholder(draw: object, box: tuple[int, int, int, int], rng: random.Random) -> None:
    """A neutral silhouette in a frame: clearly a placeholder, never a face."""
    from PIL import ImageDraw

    assert isinstance(draw, ImageDraw.ImageDraw)
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    shade = 200 + rng.randrange(30)
    draw.rectangle(box, fill=(shade, shade, shade + 8), outline=(90, 90, 110), width=max(2, width // 60))
    cx = left + width // 2
    head_w, head_h = int(width * 0.42), int(height * 0.40)
    head_top = top + int(height * 0.14)
    draw.ellipse((cx - head_w // 2, head_top, cx + head_w // 2, head_top + head_h), fill=(140, 140, 155))
    shoulders_top = head_top + int(head_h * 0.95)
    draw.pieslice(
        (left + int(width * 0.1), shoulders_top, right - int(width * 0.1), bottom + int(height * 0.45)),
        180,
        360,
        fill=(120, 120, 138),
    )


def _mrz_lines(id_type: IdType, number: str, rng: random.Random) -> list[str]:
    """Machine-readable-zone-like lines of filler text (the specimen country code UTO, fake values)."""
    if id_type is IdType.PASSPORT:
        first = "P<UTOSPECIMEN<<ALEX<SAMPLE".ljust(44, "<")
        second = f"{number}<0UTO9001017F3112315".ljust(42, "<") + f"{rng.randrange(10)}{rng.randrange(10)}"
        return [first, second]
    code = "I<" if id_type is IdType.ID_CARD else "D<"
    return [
        f"{code}UTO{number}".ljust(30, "<"),
        "9001017F3112315UTO".ljust(29, "<") + str(rng.randrange(10)),
        "SPECIMEN<<ALEX<SAMPLE".ljust(30, "<"),
    ]


def _draw_mrz(draw: object, lines: Sequence[str], box: tuple[int, int, int, int]) -> None:
    """Draw fixed-pitch lines filling ``box`` (one character per cell, like an OCR-B zone)."""
    from PIL import ImageDraw

    assert isinstance(draw, ImageDraw.ImageDraw)
    left, top, right, bottom = box
    draw.rectangle(box, fill=(250, 250, 246))
    columns = max(len(line) for line in lines)
    pitch = (right - left) / (columns + 2)
    row_height = (bottom - top) / len(lines)
    font = _font(max(8, int(min(pitch * 1.35, row_height * 0.7))))
    for row, line in enumerate(lines):
        y = top + row * row_height + row_height * 0.18
        for col, char in enumerate(line):
            draw.text((left + pitch * (col + 1), y), char, fill=(25, 25, 30), font=font)


def _title(id_type: IdType) -> str:
    return {
        IdType.PASSPORT: "PASSPORT",
        IdType.ID_CARD: "IDENTITY CARD",
        IdType.DRIVING_LICENSE: "DRIVING LICENCE",
        IdType.VISA: "VISA",
    }[id_type]


def _watermark(canvas: PILImage.Image) -> PILImage.Image:
    """A large, faint, diagonal ``SPECIMEN`` across the image (drawn on a small layer, then pasted)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    width, height = canvas.size
    font = _font(max(12, width // 7))
    _left, _top, right, bottom = font.getbbox("SPECIMEN")
    layer = PILImage.new("L", (int(right) + 4, int(bottom) + 4), 0)
    ImageDraw.Draw(layer).text((2, 2), "SPECIMEN", fill=70, font=font)
    layer = layer.rotate(18, resample=PILImage.Resampling.BILINEAR, expand=True)
    x = max(0, (width - layer.width) // 2 - width // 10)
    y = max(0, (height - layer.height) // 2 + height // 12)
    canvas.paste((190, 40, 40), (x, y, x + layer.width, y + layer.height), mask=layer)
    return canvas


def _render_front(id_type: IdType, width: int, number: str, rng: random.Random) -> PILImage.Image:
    from PIL import ImageDraw

    ratio = _PASSPORT_RATIO if id_type is IdType.PASSPORT else _CARD_RATIO
    height = round(width / ratio)
    canvas = _background(width, height, rng)
    draw = ImageDraw.Draw(canvas)
    margin = width // 28
    band = height // 7
    draw.rectangle((0, 0, width, band), fill=(40, 62, 110))
    draw.text((margin, band * 0.18), "REPUBLIC OF EXAMPLE", fill=(255, 255, 255), font=_font(band // 3))
    draw.text(
        (margin, band * 0.55), f"{_title(id_type)} - SPECIMEN", fill=(220, 230, 255), font=_font(band // 4)
    )
    mrz_height = height // 5 if id_type is IdType.PASSPORT else 0
    photo_w = width // 4
    photo_box = (margin, band + margin, margin + photo_w, band + margin + round(photo_w * 1.28))
    photo_box = (*photo_box[:3], min(photo_box[3], height - mrz_height - margin))
    _face_placeholder(draw, photo_box, rng)
    x = photo_box[2] + margin
    y = float(band + margin)
    label_font, value_font = _font(max(9, height // 36)), _font(max(12, height // 20))
    fields = (
        ("SURNAME", "SPECIMEN"),
        ("GIVEN NAMES", "ALEX"),
        ("DATE OF BIRTH", "01 01 1990"),
        ("DOCUMENT NO", number),
        ("DATE OF EXPIRY", "31 12 2031"),
    )
    line_gap = (height - mrz_height - band - 2 * margin) / (len(fields) + 0.5)
    for label, value in fields:
        draw.text((x, y), label, fill=(80, 80, 100), font=label_font)
        draw.text((x, y + line_gap * 0.32), value, fill=(15, 15, 25), font=value_font)
        y += line_gap
    if mrz_height:
        _draw_mrz(
            draw, _mrz_lines(id_type, number, rng), (0, height - mrz_height, width, height - margin // 3)
        )
    return _watermark(canvas)


def _render_back(id_type: IdType, width: int, number: str, rng: random.Random) -> PILImage.Image:
    from PIL import ImageDraw

    height = round(width / _CARD_RATIO)
    canvas = _background(width, height, rng)
    draw = ImageDraw.Draw(canvas)
    margin = width // 28
    draw.text(
        (margin, margin),
        "ADDRESS: 1 SPECIMEN STREET, EXAMPLETOWN",
        fill=(20, 20, 30),
        font=_font(height // 18),
    )
    # a barcode-like strip of bars of random widths
    x, bar_top, bar_bottom = margin, height // 4, height // 2
    while x < width - margin:
        bar = rng.randint(2, 7)
        if rng.random() < 0.55:
            draw.rectangle((x, bar_top, x + bar - 1, bar_bottom), fill=(20, 20, 20))
        x += bar
    _draw_mrz(draw, _mrz_lines(id_type, number, rng), (0, height * 3 // 5, width, height - margin // 2))
    return _watermark(canvas)


def _render_face(width: int, rng: random.Random) -> PILImage.Image:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    height = round(width * 4 / 3)
    shade = 225 + rng.randrange(25)
    canvas = PILImage.new("RGB", (width, height), (shade, shade, 240))
    _face_placeholder(ImageDraw.Draw(canvas), (0, 0, width - 1, height - 1), rng)
    return canvas


def _encode(picture: PILImage.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        picture.save(out, "JPEG", quality=_JPEG_QUALITY, optimize=False)
    else:
        picture.save(out, fmt, compress_level=1)
    return out.getvalue()


def _image(name: str, role: str, picture: PILImage.Image, fmt: str = "JPEG") -> SyntheticImage:
    mime = MimeType.JPEG if fmt == "JPEG" else MimeType.PNG
    return SyntheticImage(name, role, _encode(picture, fmt), mime, *picture.size)


def _defective_front(
    defect: Defect, stem: str, id_type: IdType, number: str, rng: random.Random
) -> SyntheticImage:
    if defect == "too_small":
        small = _render_front(id_type, 250, number, rng).resize((250, 180))
        return _image(f"{stem}-front.jpg", FRONT, small)
    if defect == "png_declared_as_jpeg":
        picture = _render_front(id_type, 800, number, rng)
        data = _encode(picture, "PNG")
        return SyntheticImage(f"{stem}-front.jpg", FRONT, data, MimeType.JPEG, *picture.size)
    if defect == "not_an_image":
        text = b"This file is a text note saved with a .jpg name; it holds no picture.\n" * 4
        return SyntheticImage(f"{stem}-front.jpg", FRONT, text, None, None, None)
    picture = _render_front(id_type, 900, number, rng)
    whole = _encode(picture, "JPEG")
    return SyntheticImage(
        f"{stem}-front.jpg", FRONT, whole[: len(whole) * 6 // 10], MimeType.JPEG, *picture.size
    )


def render_document(index: int, *, seed: int = 0, defect: Defect | None = None) -> SyntheticDocument:
    """Draw document number ``index`` of the series ``seed`` (blocking; a few tens of milliseconds).

    The type, country, sizes and colours are drawn from ``(seed, index)``, so a document does not depend on
    which others are generated with it.
    """
    if defect is not None and defect not in DEFECTS:
        raise ValueError(f"defect must be one of {sorted(DEFECTS)}")
    rng = random.Random(f"netverify-synthetic:{seed}:{index}")
    id_type = rng.choice((IdType.PASSPORT, IdType.ID_CARD, IdType.ID_CARD, IdType.DRIVING_LICENSE))
    country = rng.choice(_COUNTRIES)
    number = "X" + "".join(str(rng.randrange(10)) for _ in range(8))
    stem = f"doc-{index:04d}"
    if defect is not None:
        front = _defective_front(defect, stem, id_type, number, rng)
        return SyntheticDocument(index, id_type, country, front, defect=defect)
    width = rng.randrange(*_WIDTHS)
    front = _image(f"{stem}-front.jpg", FRONT, _render_front(id_type, width, number, rng))
    back = None
    if id_type is not IdType.PASSPORT:
        back = _image(f"{stem}-back.jpg", BACK, _render_back(id_type, width, number, rng))
    face = None
    if rng.random() < 0.3:
        face = _image(f"{stem}-face.jpg", FACE, _render_face(rng.randrange(360, 600), rng))
    return SyntheticDocument(index, id_type, country, front, back, face)


def pick_defects(count: int, bad: int, *, seed: int = 0) -> dict[int, Defect]:
    """Which of ``count`` documents get a defect (``bad`` of them, cycling through every defect kind)."""
    if not 0 <= bad <= count:
        raise ValueError("bad must be between 0 and count")
    rng = random.Random(f"netverify-synthetic-defects:{seed}")
    kinds = list(DEFECTS)
    positions = sorted(rng.sample(range(count), bad))
    return {position: kinds[k % len(kinds)] for k, position in enumerate(positions)}


def generate_documents_sync(count: int, *, seed: int = 0, bad: int = 0) -> list[SyntheticDocument]:
    """``count`` documents, ``bad`` of them defective (see :func:`pick_defects`), in the calling thread."""
    defects = pick_defects(count, bad, seed=seed)
    return [render_document(i, seed=seed, defect=defects.get(i)) for i in range(count)]


async def generate_documents(
    count: int,
    *,
    seed: int = 0,
    bad: int = 0,
    limiter: anyio.CapacityLimiter | None = None,
    on_document: Callable[[SyntheticDocument], None] | None = None,
) -> list[SyntheticDocument]:
    """Like :func:`generate_documents_sync`, drawing the documents in worker threads; returned in index order.

    ``limiter`` bounds the threads used (default: the process's CPU count); ``on_document`` is called on the
    event loop with each document as soon as it is drawn (for progress displays).
    """
    import os

    import anyio
    import anyio.to_thread

    defects = pick_defects(count, bad, seed=seed)
    threads = limiter or anyio.CapacityLimiter(max(1, os.cpu_count() or 1))
    results: list[SyntheticDocument | None] = [None] * count

    async def one(index: int) -> None:
        document = await anyio.to_thread.run_sync(
            functools.partial(render_document, index, seed=seed, defect=defects.get(index)), limiter=threads
        )
        results[index] = document
        if on_document is not None:
            on_document(document)

    async with anyio.create_task_group() as tg:
        for index in range(count):
            tg.start_soon(one, index)
    return [doc for doc in results if doc is not None]
