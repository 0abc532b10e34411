"""The wire format, written once with cattrs: field metadata, scalar formats, the request converter, redaction.

A model says everything about a field once, in the field's attrs metadata, built by :func:`wire`:

* ``wire``: the JSON or form key exactly as Jumio spells it; ``also``: other spellings the guides use;
* ``personal``: personal data: ``repr()`` shows ``<redacted>`` (:func:`compact_repr`, :func:`hide_personal`),
  and so does ``to_dict(redact=True)``;
* ``separator``: a list sent as one string (``enabledFields``);
* ``structure``: a reading of this one field that differs from its type's (rare).

Everything else follows from the field's type, through hooks registered once per type on a small family of
cattrs converters, each built on first use (importing the package does not import cattrs):

* **requests**, here (:func:`request_to_wire`, :func:`structure_request`): out, camelCase keys, ``None`` left
  out, enums as values, dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DDThh:mm:ss.SSSZ``; in, strictly: every
  problem is collected as a :class:`~netverify_async.ValidationIssue` named by its wire path (unknown key,
  wrong JSON type, base64, date, timestamp), and a field that does not parse is left ``None``;
* **answers**, in :mod:`netverify_async._lenient`: retrieval answers and callbacks, read tolerantly;
* **plain dicts**, here (:func:`to_dict`): attribute names as keys, JSON types as values, optionally redacted.

Hooks report problems (:func:`note`) to the :class:`Reading` of the structure call in progress, which knows
the wire path.
"""

from __future__ import annotations

import binascii
import contextlib
import contextvars
import datetime as _dt
import enum
import functools
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, Union, cast, get_args, get_origin

import attrs

from ._enums import ImageRole, MimeType
from ._errors import ValidationIssue

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "EMPTY",
    "REDACTED",
    "Answer",
    "Reading",
    "compact_repr",
    "current_reading",
    "decode_base64",
    "extra_field",
    "format_date",
    "format_timestamp",
    "hide_personal",
    "is_enum",
    "is_union",
    "json_type",
    "keys_only",
    "new_reading",
    "note",
    "parse_date",
    "parse_timestamp",
    "parse_timestamp_lenient",
    "redact",
    "request_metadata",
    "request_to_wire",
    "resolve_field_types",
    "structure_request",
    "to_dict",
    "unstructure",
    "wire",
    "wire_fields",
    "without_none",
]

_T = TypeVar("_T")

REDACTED = "<redacted>"


# ----------------------------------------------------------------------------------------------------
# Scalar formats

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,3}))?(?:Z|\+00:00)"
)
#: ``YYYY-MM-DDThh:mm:ss``, an optional fraction, an optional ``Z`` or numeric offset (ASCII digits only).
_LENIENT_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]{1,9}))?\s*(Z|z|UTC|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def format_timestamp(value: _dt.datetime) -> str:
    """``YYYY-MM-DDThh:mm:ss.SSSZ`` in UTC, with exactly three millisecond digits (truncated).

    Raises ValueError for a naive datetime: its instant is unknown.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must be timezone-aware")
    utc = value.astimezone(_dt.timezone.utc)
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond // 1000:03d}Z"
    )


def parse_timestamp(text: str) -> _dt.datetime:
    """Parse ``YYYY-MM-DDThh:mm:ss[.S{1,3}]`` followed by ``Z`` or ``+00:00`` into an aware UTC datetime.

    Raises ValueError (without repeating the input) for anything else, including impossible dates and times.
    """
    match = _TIMESTAMP.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("timestamp must look like YYYY-MM-DDThh:mm:ss.SSSZ")
    year, month, day, hour, minute, second, fraction = match.groups()
    millis = int(fraction.ljust(3, "0")) if fraction else 0
    try:
        return _dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), millis * 1000,
            tzinfo=_dt.timezone.utc,
        )  # fmt: skip
    except ValueError:
        raise ValueError("timestamp is not a real date and time") from None


def parse_timestamp_lenient(text: str) -> _dt.datetime | None:
    """An aware UTC datetime from Jumio's ``YYYY-MM-DDThh:mm:ss[.S{1,3}]Z`` (and near variants), else None.

    Accepts 0 to 9 fraction digits (beyond microseconds they are cut), ``Z``, a numeric offset, or no zone at
    all (the guides say every timestamp is UTC).
    """
    match = _LENIENT_TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zone = match.group(7), match.group(8)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz: _dt.tzinfo = _dt.timezone.utc
    if zone and zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:] or "0")
        if hours > 23 or minutes > 59:
            return None
        offset = _dt.timedelta(hours=hours, minutes=minutes)
        tz = _dt.timezone(-offset if zone[0] == "-" else offset)
    try:
        moment = _dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
        return moment.astimezone(_dt.timezone.utc)
    except (ValueError, OverflowError):
        return None


def format_date(value: _dt.date) -> str:
    """``YYYY-MM-DD``."""
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"


def parse_date(text: str) -> _dt.date:
    """Parse exactly ``YYYY-MM-DD``; ValueError for other forms and impossible dates (2023-02-30)."""
    match = _DATE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError("date must look like YYYY-MM-DD")
    try:
        return _dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ValueError("date is not a real calendar date") from None


def decode_base64(text: str) -> bytes:
    """Strict base64 (standard alphabet, correct padding, nothing after it, no whitespace) or ValueError."""
    if sys.version_info >= (3, 11):
        data = binascii.a2b_base64(text, strict_mode=True)
        # strict mode still accepts surplus "=" after a complete group; the canonical length rules it out.
        if len(text) != (len(data) + 2) // 3 * 4:
            raise ValueError("surplus padding")
        return data
    if not text.isascii() or _BASE64.fullmatch(text) is None:  # pragma: no cover - Python 3.10 only
        raise ValueError("not strict base64")
    return binascii.a2b_base64(text)  # pragma: no cover - Python 3.10 only


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type (``object``, ``array``, ``string``, ...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


# ----------------------------------------------------------------------------------------------------
# Field metadata, repr and redaction

#: The ``extra`` of a model that got no unknown key.
EMPTY: Mapping[str, Any] = MappingProxyType({})


def wire(
    name: str,
    *,
    personal: bool = False,
    also: Iterable[str] = (),
    separator: str | None = None,
    structure: Callable[[Any, Any], Any] | None = None,
) -> dict[str, Any]:
    """The attrs metadata of a field: its wire name and how it is read, written and shown (see the module)."""
    meta: dict[str, Any] = {"wire": name}
    if personal:
        meta["personal"] = True
    if also:
        meta["also"] = tuple(also)
    if separator is not None:
        meta["separator"] = separator
    if structure is not None:
        meta["structure"] = structure
    return meta


def keys_only(value: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{key!r}: ..." for key in sorted(value)) + "}"


def extra_field() -> Any:
    """The ``extra`` field: keys the guide does not document, as sent (``repr`` shows only their names)."""
    return attrs.field(default=EMPTY, repr=keys_only, hash=False, metadata={"extra": True})


def redact(value: object) -> str:
    """What ``repr`` shows for a personal value."""
    return "None" if value is None else REDACTED


def hide_personal(cls: type, fields: list[attrs.Attribute[Any]]) -> list[attrs.Attribute[Any]]:
    """An attrs ``field_transformer``: the generated ``repr`` shows ``<redacted>`` for personal fields."""
    return [f.evolve(repr=redact) if f.metadata.get("personal") else f for f in fields]


def compact_repr(self: Any) -> str:
    """``Class(name=value, ...)`` for the fields that are set; personal values print as ``<redacted>``."""
    parts = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if value is None or field.repr is False or (isinstance(value, (tuple, Mapping)) and not value):
            continue
        if field.metadata.get("personal"):
            shown = REDACTED
        elif callable(field.repr):
            shown = field.repr(value)
        else:
            shown = repr(value)
        parts.append(f"{field.name}={shown}")
    return f"{type(self).__name__}({', '.join(parts)})"


class Answer:
    """Base of the value objects read from Jumio's answers: a compact, redacting ``repr`` and ``to_dict``."""

    __slots__ = ()

    __repr__ = compact_repr

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict with the attribute names as keys.

        Enums become their values, datetimes ISO 8601 with ``Z``, dates ``YYYY-MM-DD``, tuples lists and
        nested objects dicts. With ``redact=True`` every present personal value becomes ``"<redacted>"`` and
        the values of ``extra`` (undocumented, so possibly personal) are redacted too.
        """
        return to_dict(self, redact=redact)


# ----------------------------------------------------------------------------------------------------
# What a structure hook is reading: where it is, and what it found wrong


class Reading:
    """What one structure call in progress found wrong, and the wire path it is at."""

    __slots__ = ("broken", "path", "problems")

    def __init__(self, problems: Iterable[ValidationIssue] = ()) -> None:
        self.problems: list[ValidationIssue] = list(problems)
        self.broken: set[str] = set()
        self.path = ""

    def note(self, code: str, message: str, *, path: str | None = None) -> None:
        where = self.path if path is None else path
        self.problems.append(ValidationIssue(where, code, message))
        self.broken.add(where)

    def enter(self, key: str) -> str:
        saved = self.path
        self.path = f"{saved}.{key}" if saved else key
        return saved


_READING: contextvars.ContextVar[Reading] = contextvars.ContextVar("netverify_async_reading")


@contextlib.contextmanager
def new_reading(problems: Iterable[ValidationIssue] = ()) -> Iterator[Reading]:
    """The :class:`Reading` the hooks report to while the ``with`` block structures one body."""
    reading = Reading(problems)
    token = _READING.set(reading)
    try:
        yield reading
    finally:
        _READING.reset(token)


def current_reading() -> Reading:
    return _READING.get()


def note(code: str, message: str) -> None:
    """Record a problem at the current wire path."""
    _READING.get().note(code, message)


def is_union(t: Any) -> bool:
    return get_origin(t) in (Union, types.UnionType)


def without_none(t: Any) -> Any:
    """``X`` for ``X | None``; ``t`` itself otherwise."""
    if is_union(t):
        rest = [a for a in get_args(t) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return t


def resolve_field_types(*classes: type) -> None:
    """Resolve the string annotations of attrs classes now, in their defining module: the converters read
    field types, and a class shown as ``netverify_async.X`` could not find its module's names later."""
    for cls in classes:
        attrs.resolve_types(cls)


def wire_fields(cls: type) -> list[attrs.Attribute[Any]]:
    return [f for f in attrs.fields(cls) if "wire" in f.metadata]


def is_enum(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, enum.Enum)


def _plain(value: Any) -> Any:
    # str-mixin enums are str to cattrs' dispatch; the wire wants their value
    return value.value if isinstance(value, enum.Enum) else value


# ----------------------------------------------------------------------------------------------------
# Requests: out to the wire, and strictly back in

_IMAGE_ROLES = {role.wire_key: role for role in ImageRole}


def _key_label(key: object) -> str:
    if isinstance(key, str) and key and key.isprintable():
        return key if len(key) <= 64 else key[:61] + "..."
    return "<empty, non-string or unprintable key>"


def _strict_text(value: Any, _type: Any = None) -> str | None:
    """A JSON string (enum fields too: the model converts, validation judges the value)."""
    if value is None or isinstance(value, str):
        return value
    note("type", f"must be a JSON string, not {json_type(value)}")
    return None


def _strict_parsed(parse: Callable[[str], Any], code: str) -> Callable[[Any, Any], Any]:
    def hook(value: Any, _type: Any) -> Any:
        text = _strict_text(value)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            note(code, str(exc))
            return None

    return hook


def _strict_scalar(conv: cattrs.Converter, t: Any) -> Callable[[Any, Any], Any]:
    core = without_none(t)
    if core is _dt.datetime:
        return _strict_parsed(parse_timestamp, "invalid_timestamp")
    if core is _dt.date:
        return _strict_parsed(parse_date, "invalid_date")
    if attrs.has(core):
        return lambda value, _type: conv.structure(value, core)
    return _strict_text


def _strict_image(obj: Mapping[Any, Any], role: ImageRole, image_type: Any, prefix: str) -> Any:
    reading = current_reading()
    key, mime_key = prefix + role.wire_key, prefix + role.mime_type_key
    reading.path = mime_key
    mime = _strict_text(obj.get(role.mime_type_key))
    reading.path = key
    text = _strict_text(obj.get(role.wire_key))
    if text is None:
        if mime is not None:
            reading.note("mime_type_without_image", f"is given but {role.wire_key} is absent", path=mime_key)
        return None
    try:
        data = decode_base64(text)
    except ValueError:  # binascii.Error is a ValueError
        note("invalid_base64", "must be standard base64 with correct padding and no whitespace")
        return None
    return image_type(data, mime)  # an unknown mime string is kept for validation to report


def _strict_class(conv: cattrs.Converter, cls: type) -> Callable[[Any, Any], Any]:
    """Structure one JSON object strictly: unknown keys and wrong types noted, broken fields left None."""
    fields = wire_fields(cls)
    known = {f.metadata["wire"] for f in fields}
    known |= {_IMAGE_ROLES[key].mime_type_key for key in known if key in _IMAGE_ROLES}

    def hook(obj: Any, _type: Any) -> Any:
        reading = current_reading()
        if not isinstance(obj, Mapping):
            note("type", f"must be a JSON object, not {json_type(obj)}")
            return None
        prefix = reading.path + "." if reading.path else ""
        for key in obj:
            if key not in known:
                reading.note(
                    "unknown_field",
                    "is not a field of the performNetverify body (the API refuses unexpected parameters)",
                    path=prefix + _key_label(key),
                )
        kwargs: dict[str, Any] = {}
        for field in fields:
            key = field.metadata["wire"]
            saved = reading.enter(key)
            try:
                if key in _IMAGE_ROLES:
                    kwargs[field.name] = _strict_image(
                        obj, _IMAGE_ROLES[key], without_none(field.type), prefix
                    )
                elif obj.get(key) is None:  # JSON null is an absent key
                    kwargs[field.name] = None
                elif "separator" in field.metadata:
                    text = _strict_text(obj[key])
                    kwargs[field.name] = None if text is None else _split(text, field.metadata["separator"])
                else:
                    kwargs[field.name] = conv.structure(obj[key], cast(Any, field.type))
            finally:
                reading.path = saved
        return cls(**kwargs)

    return hook


def _split(text: str, separator: str) -> tuple[str, ...]:
    """Items of a joined list, tolerant of spaces around them (the guide's own example has one)."""
    if not text.strip():
        return ()
    return tuple(item.strip() for item in text.split(separator))


def _join(separator: str, conv: cattrs.Converter) -> Callable[[Any], str]:
    return lambda items: separator.join(conv.unstructure(item) for item in items)


def _wire_dict_hook(conv: cattrs.Converter, cls: type) -> Callable[[Any], dict[str, Any]]:
    """Unstructure to wire keys, leaving out ``None`` and the images (they are added by the callers)."""
    from cattrs.gen import make_dict_unstructure_fn, override

    overrides: dict[str, Any] = {}
    for field in attrs.fields(cls):
        key = field.metadata.get("wire")
        if key is None or key in _IMAGE_ROLES:
            overrides[field.name] = override(omit=True)
        elif "separator" in field.metadata:
            overrides[field.name] = override(
                rename=key, unstruct_hook=_join(field.metadata["separator"], conv)
            )
        else:
            overrides[field.name] = override(rename=key)
    return make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **overrides)


@functools.lru_cache(maxsize=1)
def _request_converter() -> cattrs.Converter:
    import cattrs

    conv = cattrs.Converter()
    conv.register_unstructure_hook(str, _plain)
    conv.register_unstructure_hook(enum.Enum, _plain)
    conv.register_unstructure_hook(_dt.datetime, format_timestamp)
    conv.register_unstructure_hook(_dt.date, format_date)
    conv.register_unstructure_hook_factory(attrs.has, functools.partial(_wire_dict_hook, conv))
    conv.register_structure_hook(str, _strict_text)  # also str-mixin enums
    conv.register_structure_hook_factory(lambda t: not attrs.has(t), functools.partial(_strict_scalar, conv))
    conv.register_structure_hook_factory(attrs.has, functools.partial(_strict_class, conv))
    return conv


def unstructure(obj: Any) -> dict[str, Any]:
    """A request-side model (request parts, receipt) as its wire dict, without images."""
    body: dict[str, Any] = _request_converter().unstructure(obj)
    return body


def request_metadata(req: Any) -> dict[str, Any]:
    """Every wire key of a request except the image data (the declared mime types are included)."""
    body = unstructure(req)
    for role in ImageRole:
        image = getattr(req, role.attribute)
        if image is not None and isinstance(image.mime_type, MimeType):
            body[role.mime_type_key] = image.mime_type.value
    return body


def request_to_wire(req: Any) -> dict[str, Any]:
    """The JSON body of a request as a dict, images as base64 ``str``."""
    body = request_metadata(req)
    for role in ImageRole:
        image = getattr(req, role.attribute)
        if image is not None:
            body[role.wire_key] = binascii.b2a_base64(image.data, newline=False).decode("ascii")
    return body


def structure_request(body: Mapping[Any, Any], cls: type[_T]) -> tuple[_T, list[ValidationIssue], set[str]]:
    """``cls`` built from a JSON body (its own validation is the caller's to defer), every structural issue,
    and the wire paths they concern."""
    with new_reading() as reading:
        built: _T = _request_converter().structure(body, cls)
    return built, reading.problems, reading.broken


# ----------------------------------------------------------------------------------------------------
# Plain dicts, optionally redacted


def _iso_datetime(value: _dt.datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _dict_hook(conv: cattrs.Converter, redacted: bool, cls: type) -> Callable[[Any], dict[str, Any]]:
    fields = attrs.fields(cls)

    def hook(obj: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in fields:
            value = getattr(obj, field.name)
            if redacted and value is not None and field.metadata.get("personal"):
                out[field.name] = REDACTED
            elif redacted and field.metadata.get("extra"):  # undocumented, so possibly personal
                out[field.name] = dict.fromkeys(value, REDACTED)
            else:
                out[field.name] = conv.unstructure(value)
        return out

    return hook


@functools.lru_cache(maxsize=2)
def _dict_converter(redacted: bool) -> cattrs.Converter:
    import cattrs

    conv = cattrs.Converter()
    conv.register_unstructure_hook(str, _plain)
    conv.register_unstructure_hook(enum.Enum, _plain)
    conv.register_unstructure_hook(_dt.datetime, _iso_datetime)
    conv.register_unstructure_hook(_dt.date, _dt.date.isoformat)
    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Mapping),
        lambda value: {str(k): conv.unstructure(v) for k, v in value.items()},
    )
    conv.register_unstructure_hook_factory(attrs.has, functools.partial(_dict_hook, conv, redacted))
    return conv


def to_dict(obj: Any, *, redact: bool = False) -> dict[str, Any]:
    """An attrs model as a JSON-serialisable dict (see :meth:`Answer.to_dict`)."""
    out: dict[str, Any] = _dict_converter(redact).unstructure(obj)
    return out
