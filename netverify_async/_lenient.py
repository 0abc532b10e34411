"""Jumio's answers (retrieval API, callbacks) read tolerantly, with the cattrs converter for them.

Jumio's documents disagree with themselves and with real traffic, so an answer is read as far as it can be:

* ``N/A`` and empty mean absent (except for an enum that documents ``N/A`` as one of its values);
* a value outside an enum's documented set, in any letter case, is kept as the raw string (fields are typed
  ``SomeEnum | str``); ``Literal`` members of the type are documented values the enum lacks;
* timestamps with 0 to 9 fraction digits and an optional zone become aware UTC datetimes, dates
  :class:`datetime.date`, ``TRUE``/``true``/``"true"``/JSON true a bool;
* a nested object may come as JSON text (form fields) or decoded; an object or an array of objects is always a
  tuple; a part typed without ``| str`` that is not an object moves to ``extra``;
* unknown keys go to ``extra``; a second spelling of a field already read goes there too.

Whatever was kept as sent is noted in the model's ``problems`` (wire path, rule, message; never the value).
The hook for a field is chosen once per field type (:func:`_hook_for`); a model names its fields' wire keys in
their metadata (:func:`netverify_async._convert.wire`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from collections.abc import Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args, get_origin

import attrs

from ._convert import (
    EMPTY,
    current_reading,
    is_enum,
    is_union,
    json_type,
    new_reading,
    note,
    parse_date,
    parse_timestamp_lenient,
    wire_fields,
)
from ._errors import ResponseError, ValidationIssue

if TYPE_CHECKING:
    import enum

    import cattrs

__all__ = ["is_absent", "read", "text_or_texts"]

_T = TypeVar("_T")

#: Values that mean "no value": Jumio sends ``N/A`` for fields it could not or would not fill.
_ABSENT_TEXT = frozenset({"", "N/A"})


def is_absent(value: object) -> bool:
    """None, an empty or blank string, or ``N/A``."""
    return value is None or (isinstance(value, str) and value.strip() in _ABSENT_TEXT)


#: Sentinel for "this JSON text does not decode".
_MALFORMED: Any = object()


class _MoveToExtra(Exception):
    """A part that must be a JSON object was something else: keep it in ``extra`` under its wire name."""


def _dump(value: Any) -> str:
    """A JSON text for a value that had to be kept as sent (never raises)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _text(value: Any, _type: Any = None) -> str | None:
    """Plain text; ``N/A`` and empty mean absent. JSON numbers and booleans become their JSON spelling."""
    if is_absent(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    note("wrong_type", f"expected text, got a JSON {json_type(value)}; kept as JSON text")
    return _dump(value)


def _enum(enum_type: type[enum.Enum], also: frozenset[str], value: Any, _type: Any) -> Any:
    """A documented value becomes the enum member (whatever its case); another value is kept as sent (and
    noted, unless it is one of ``also``: values the guide lists for this field but the shared enum lacks).
    ``N/A`` means absent unless the enum documents it as a value."""
    if value is None:
        return None
    text = value if isinstance(value, str) else _text(value)
    if text is None:
        return None
    key = text.strip()
    if not key or (key == "N/A" and key not in enum_type._value2member_map_):
        return None
    if key in also:
        return key
    for candidate in (key, key.upper()):
        try:
            return enum_type(candidate)
        except ValueError:
            continue
    note("unknown_value", f"not a documented {enum_type.__name__} value; kept as sent")
    return text


def _timestamp(value: Any, _type: Any) -> _dt.datetime | str | None:
    text = _text(value)
    if text is None:
        return None
    parsed = parse_timestamp_lenient(text)
    if parsed is None:
        note("bad_timestamp", "is not a YYYY-MM-DDThh:mm:ss[.SSS]Z timestamp; kept as sent")
        return text
    return parsed


def _date(value: Any, _type: Any) -> _dt.date | str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return parse_date(text.strip())
    except ValueError:
        note("bad_date", "is not a YYYY-MM-DD date; kept as sent")
        return text


def _bool(value: Any, _type: Any) -> bool | str | None:
    """``TRUE``/``true``/``"true"``/JSON true (and the FALSE forms); anything else is kept as sent."""
    if isinstance(value, bool):
        return value
    text = _text(value)
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    note("unknown_value", "is neither true nor false; kept as sent")
    return text


def _decoded(value: Any) -> tuple[Any, str | None]:
    """For a value that may be JSON text (form fields) or already decoded JSON (API answers).

    Returns ``(decoded, raw_text)``; ``decoded`` is :data:`_MALFORMED` (and noted) when the text is not JSON.
    """
    if not isinstance(value, str):
        return value, None
    if is_absent(value):
        return None, None
    try:
        return json.loads(value), value
    except (ValueError, RecursionError):
        note("malformed_json", "is not valid JSON; kept as the raw string")
        return _MALFORMED, value


def _object(parse: Callable[[Mapping[str, Any]], Any], value: Any, _type: Any) -> Any:
    """A JSON object (or JSON text of one) read by ``parse``; an empty object means absent."""
    decoded, raw = _decoded(value)
    if decoded is _MALFORMED:
        return raw
    if decoded is None or is_absent(decoded):
        return None
    if isinstance(decoded, Mapping):
        return parse(decoded) if decoded else None
    note("wrong_type", f"expected a JSON object, got a JSON {json_type(decoded)}; kept as sent")
    return raw if raw is not None else _dump(decoded)


def _each(items: Iterable[Any], read_one: Callable[[Any], Any]) -> list[Any]:
    """``read_one`` applied to each item of a JSON array, with the item's index in the path of its problems."""
    reading = current_reading()
    saved, out = reading.path, []
    try:
        for index, item in enumerate(items):
            reading.path = f"{saved}[{index}]"
            out.append(read_one(item))
    finally:
        reading.path = saved
    return out


def _objects(conv: cattrs.Converter, item_type: type, value: Any, _type: Any) -> Any:
    """One JSON object or an array of them (or JSON text of either): always a tuple."""
    decoded, raw = _decoded(value)
    if decoded is _MALFORMED:
        return raw
    if decoded is None:
        return None
    if isinstance(decoded, Mapping):
        return (conv.structure(decoded, item_type),) if decoded else ()
    if isinstance(decoded, (list, tuple)):

        def one(item: Any) -> Any:
            if isinstance(item, Mapping):
                return conv.structure(item, item_type)
            note("wrong_type", f"expected a JSON object, got a JSON {json_type(item)}")
            return None

        return tuple(item for item in _each(decoded, one) if item is not None)
    note("wrong_type", f"expected a JSON object or array, got a JSON {json_type(decoded)}")
    return raw if raw is not None else _dump(decoded)


def _texts(value: Any, _type: Any) -> tuple[str, ...] | str | None:
    """A JSON array of strings (or JSON text of one); a JSON string is a one-item tuple."""
    decoded, raw = _decoded(value)
    if decoded is _MALFORMED:
        return raw
    if decoded is None:
        return None
    if isinstance(decoded, str):
        return (decoded,)
    if isinstance(decoded, (list, tuple)):
        return tuple(item for item in _each(decoded, _text) if item is not None)
    note("wrong_type", f"expected a JSON array of strings, got a JSON {json_type(decoded)}")
    return raw if raw is not None else _dump(decoded)


def text_or_texts(value: Any, _type: Any) -> tuple[str, ...] | str | None:
    """Like a list of strings, but a plain (non-JSON) text is one item: the retrieval API sends a single
    face-search finding as a bare string."""
    if isinstance(value, str) and not value.lstrip().startswith("["):
        return None if is_absent(value) else (value,)
    return _texts(value, _type)


def _part(conv: cattrs.Converter, part_type: type, value: Any, _type: Any) -> Any:
    """A part typed without ``| str``: a JSON object, or moved to ``extra``."""
    if isinstance(value, Mapping):
        return conv.structure(value, part_type)
    if value is None:
        return None
    raise _MoveToExtra


def _hook_for(conv: cattrs.Converter, t: Any) -> Callable[[Any, Any], Any]:
    """The hook for one field type of an answer, chosen by what the type allows besides ``str | None``."""
    args = get_args(t) if is_union(t) else (t,)
    literals = frozenset(v for a in args if get_origin(a) is Literal for v in get_args(a))
    core = [a for a in args if a not in (str, type(None)) and get_origin(a) is not Literal]
    if not core:
        return _text
    (kind,) = core
    if is_enum(kind):
        return functools.partial(_enum, kind, literals)
    if kind is _dt.datetime:
        return _timestamp
    if kind is _dt.date:
        return _date
    if kind is bool:
        return _bool
    if attrs.has(kind):
        if str not in args:
            return functools.partial(_part, conv, kind)
        return functools.partial(_object, lambda obj: conv.structure(obj, kind))
    item = get_args(kind)[0] if get_origin(kind) is tuple else None
    if item is str:
        return _texts
    if item is not None and attrs.has(item):
        return functools.partial(_objects, conv, item)
    if get_origin(kind) is Mapping:
        return functools.partial(_object, lambda obj: MappingProxyType(dict(obj)))
    raise TypeError(f"no tolerant reading for {t!r}")


def _read_fields(
    conv: cattrs.Converter, cls: type, obj: Mapping[Any, Any], skip: Collection[str] = ()
) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """The attributes read from the known keys of ``obj`` (absent ones left out), and the other keys."""
    table = _read_table(cls)
    reading = current_reading()
    kwargs: dict[str, Any] = {}
    seen: set[str] = set()
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if isinstance(key, str) else str(key)
        if name in skip:
            continue
        field = table.get(name)
        if field is None:
            extra[name] = value
            continue
        saved = reading.enter(name)
        try:
            if field.name in seen:  # another spelling of a field already read
                note("duplicate_field", "another spelling of this field was already read; ignored")
                extra[name] = value
                continue
            seen.add(field.name)
            hook = field.metadata.get("structure")
            converted = hook(value, field.type) if hook else conv.structure(value, cast(Any, field.type))
        except _MoveToExtra:
            note("wrong_type", f"expected a JSON object, got a JSON {json_type(value)}; moved to extra")
            extra[name] = value
            continue
        finally:
            reading.path = saved
        if converted is not None:
            kwargs[field.name] = converted
    return kwargs, MappingProxyType(extra) if extra else EMPTY


@functools.cache
def _read_table(cls: type) -> dict[str, attrs.Attribute[Any]]:
    """Wire name (and other spellings) -> field."""
    return {
        name: field
        for field in wire_fields(cls)
        for name in (field.metadata["wire"], *field.metadata.get("also", ()))
    }


def _lenient_class(conv: cattrs.Converter, cls: type) -> Callable[[Any, Any], Any]:
    def hook(obj: Mapping[Any, Any], _type: Any) -> Any:
        kwargs, extra = _read_fields(conv, cls, obj)
        return cls(**kwargs, extra=extra)

    return hook


@functools.lru_cache(maxsize=1)
def _answer_converter() -> cattrs.Converter:
    import cattrs

    conv = cattrs.Converter()
    conv.register_structure_hook(str, _text)
    conv.register_structure_hook_factory(lambda t: not attrs.has(t), functools.partial(_hook_for, conv))
    conv.register_structure_hook_factory(attrs.has, functools.partial(_lenient_class, conv))
    return conv


def read(
    obj: Mapping[Any, Any],
    cls: type[_T],
    *,
    skip: Collection[str] = (),
    problems: Iterable[ValidationIssue] = (),
    **given: Any,
) -> _T:
    """``cls`` read tolerantly from a JSON object or a form: the ``given`` attributes as they are, the others
    from the keys of ``obj`` (those in ``skip`` left out), unknown keys in ``extra``; ``problems`` (when
    ``cls`` has the field) lists the ``problems`` passed in, then what could not be read as documented."""
    with new_reading(problems) as reading:
        kwargs, extra = _read_fields(_answer_converter(), cls, obj, skip)
    if "problems" in attrs.fields_dict(cast(Any, cls)):
        kwargs["problems"] = tuple(reading.problems)
    built: _T = cast(Any, cls)(**given, **kwargs, extra=extra)
    return built


def load_json_object(body: Mapping[str, Any] | bytes | bytearray | str, operation: str) -> Mapping[str, Any]:
    """An API answer as a JSON object (decoded here when given as bytes or text), or :class:`ResponseError`."""
    decoded: Any = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            raise ResponseError(f"{operation}: the answer is not JSON", operation=operation) from None
    if not isinstance(decoded, Mapping):
        raise ResponseError(
            f"{operation}: the answer must be a JSON object, got a JSON {json_type(decoded)}",
            operation=operation,
        )
    return decoded
