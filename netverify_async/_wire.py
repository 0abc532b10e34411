"""The wire format of performNetverify: request and receipt <-> JSON.

Outbound, a cattrs converter unstructures the attrs models: camelCase keys exactly as the API spells them
(taken from each field's ``wire`` metadata in :mod:`netverify_async._models`), ``None`` values left out, enums
as their values, dates as ``YYYY-MM-DD``, timestamps as ``YYYY-MM-DDThh:mm:ss.SSSZ`` (UTC, milliseconds),
``enabledFields`` as one comma-separated string, images as base64 strings with their mime type in the sibling
``...MimeType`` key (sent whenever it is known).

Inbound, :func:`request_from_wire` parses exactly the JSON body a caller would POST. It is written by hand
rather than with cattrs' structuring so that it can collect every problem, name each by its wire path, and
never raise anything but :class:`~netverify_async.RequestValidationError`:

* structural problems first — unknown keys (``unknown_field``: the API answers 403 to suspicious parameters,
  so a misspelt key is an error, not something silently dropped), wrong JSON types (``type``), base64 that
  is not strictly valid (``invalid_base64``), malformed or impossible dates (``invalid_date``) and timestamps
  (``invalid_timestamp``), a mime type key without its image (``mime_type_without_image``);
* then every semantic rule of :mod:`netverify_async._validation` on the fields that parsed.

JSON ``null`` is read as an absent key. An absent ``...MimeType`` key gives ``Image.mime_type = None`` ("not
declared"; the API then assumes image/jpeg), so a request survives ``from_wire(to_wire(r))`` unchanged.

A receipt body that cannot be used raises :class:`~netverify_async.ResponseError` (the server answered, but
not with something usable); unknown keys in a receipt are ignored, since the API may add fields.
"""

from __future__ import annotations

import binascii
import datetime as _dt
import enum
import functools
import json
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ._constants import MAX_SCAN_REFERENCE_LENGTH, SCAN_REFERENCE_PATTERN
from ._errors import NetverifyWarning, RequestValidationError, ResponseError, ValidationIssue
from ._models import (
    CallbackGranularity,
    Consent,
    ConsentObtained,
    EnabledField,
    IdType,
    Image,
    MimeType,
    NetverifyRequest,
    ScanReceipt,
    UserConsent,
    UserLocation,
)

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "converter",
    "encode_request_body",
    "format_date",
    "format_timestamp",
    "parse_date",
    "parse_timestamp",
    "receipt_from_wire",
    "receipt_to_wire",
    "request_from_wire",
    "request_to_wire",
]

#: Image attributes of NetverifyRequest and their wire keys; the mime type goes in ``<key>MimeType``.
_IMAGE_FIELDS = (
    ("frontside_image", "frontsideImage"),
    ("backside_image", "backsideImage"),
    ("face_image", "faceImage"),
)
_DATE_FIELDS = frozenset({"dob", "expiry"})

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,3}))?(?:Z|\+00:00)"
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


# ----------------------------------------------------------------------------------------------------
# Scalars


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
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            millis * 1000,
            tzinfo=_dt.timezone.utc,
        )
    except ValueError:
        raise ValueError("timestamp is not a real date and time") from None


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


def _decode_base64(text: str) -> bytes:
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


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def _join_enabled_fields(fields: tuple[EnabledField, ...]) -> str:
    return ",".join(field.value for field in fields)


# ----------------------------------------------------------------------------------------------------
# Outbound: cattrs


def _renames(cls: type) -> dict[str, Any]:
    from cattrs.gen import override

    return {f.name: override(rename=f.metadata["wire"]) for f in attrs.fields(cls) if "wire" in f.metadata}


@functools.lru_cache(maxsize=1)
def converter() -> cattrs.Converter:
    """The cattrs converter for the wire format (built on first use; images are added by the callers)."""
    import cattrs
    from cattrs.gen import make_dict_unstructure_fn, override

    conv = cattrs.Converter()
    # str-mixin enums would otherwise pass through as enum members (cattrs treats them as str).
    for enum_type in (IdType, EnabledField, CallbackGranularity, ConsentObtained, MimeType):
        conv.register_unstructure_hook(enum_type, _enum_value)
    conv.register_unstructure_hook(_dt.datetime, format_timestamp)
    conv.register_unstructure_hook(_dt.date, format_date)
    for cls in (UserLocation, Consent, UserConsent, ScanReceipt):
        hook = make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **_renames(cls))
        conv.register_unstructure_hook(cls, hook)
    overrides = _renames(NetverifyRequest)
    for attr, _key in _IMAGE_FIELDS:
        overrides[attr] = override(omit=True)
    overrides["enabled_fields"] = override(rename="enabledFields", unstruct_hook=_join_enabled_fields)
    request_hook = make_dict_unstructure_fn(NetverifyRequest, conv, _cattrs_omit_if_default=True, **overrides)
    conv.register_unstructure_hook(NetverifyRequest, request_hook)
    return conv


def _request_metadata(req: NetverifyRequest) -> dict[str, Any]:
    """Every wire key except the image data (mime types included)."""
    body: dict[str, Any] = converter().unstructure(req)
    for attr, key in _IMAGE_FIELDS:
        image: Image | None = getattr(req, attr)
        if image is not None and isinstance(image.mime_type, MimeType):
            body[f"{key}MimeType"] = image.mime_type.value
    return body


def request_to_wire(req: NetverifyRequest) -> dict[str, Any]:
    """The JSON body as a dict (images as base64 ``str``); :func:`encode_request_body` is cheaper to send."""
    body = _request_metadata(req)
    for attr, key in _IMAGE_FIELDS:
        image: Image | None = getattr(req, attr)
        if image is not None:
            body[key] = binascii.b2a_base64(image.data, newline=False).decode("ascii")
    return body


_b64encode: Callable[[bytes], bytes]
try:  # SIMD base64 that releases the GIL: ~3 ms for 10 MB, while binascii holds the GIL for ~25 ms
    from pybase64 import b64encode as _b64encode
except ImportError:  # pragma: no cover - pybase64 is a dependency; keep working without it
    _b64encode = functools.partial(binascii.b2a_base64, newline=False)


def encode_request_body(req: NetverifyRequest) -> bytes:
    """The compact JSON body as bytes, ready to POST. CPU-bound: run it in a worker thread.

    Each image is base64-encoded once, straight to bytes, and spliced into the JSON text (base64 needs no JSON
    escaping), so a 15 MB image costs one base64 buffer and one copy into the final body.
    """
    head = json.dumps(_request_metadata(req), separators=(",", ":")).encode("ascii")
    parts: list[bytes] = [head[:-1]]
    need_comma = len(head) > 2
    for attr, key in _IMAGE_FIELDS:
        image: Image | None = getattr(req, attr)
        if image is None:
            continue
        parts.append(b',"' if need_comma else b'"')
        parts.append(key.encode("ascii"))
        parts.append(b'":"')
        parts.append(_b64encode(image.data))
        parts.append(b'"')
        need_comma = True
    parts.append(b"}")
    return b"".join(parts)


def receipt_to_wire(receipt: ScanReceipt) -> dict[str, Any]:
    """The performNetverify response body (``timestamp``, ``jumioIdScanReference``)."""
    body: dict[str, Any] = converter().unstructure(receipt)
    return body


def receipt_from_wire(body: Any) -> ScanReceipt:
    """Parse a performNetverify response body. Unknown keys are ignored.

    Raises :class:`~netverify_async.ResponseError` when the body is not an object with a non-empty string
    ``jumioIdScanReference`` and a ``timestamp`` in the documented format (0 to 3 millisecond digits).
    """
    problems: list[str] = []
    if not isinstance(body, Mapping):
        raise ResponseError(
            "performNetverify answered with a body that is not a JSON object", operation="performNetverify"
        )
    reference = body.get("jumioIdScanReference")
    if not isinstance(reference, str) or not reference.strip():
        problems.append("jumioIdScanReference is missing or not a non-empty string")
    elif SCAN_REFERENCE_PATTERN.fullmatch(reference) is None:
        # documented as at most 36 characters (a UUID); anything else cannot be used with the retrieval API
        problems.append(
            f"jumioIdScanReference is longer than {MAX_SCAN_REFERENCE_LENGTH} characters or has characters "
            "other than ASCII letters, digits, '-' and '_'"
        )
    raw_timestamp = body.get("timestamp")
    timestamp: _dt.datetime | None = None
    if not isinstance(raw_timestamp, str):
        problems.append("timestamp is missing or not a string")
    else:
        try:
            timestamp = parse_timestamp(raw_timestamp)
        except ValueError as exc:
            problems.append(str(exc))
    if problems or timestamp is None or not isinstance(reference, str):
        raise ResponseError(
            "performNetverify answered with an unusable receipt: " + "; ".join(problems),
            operation="performNetverify",
        )
    return ScanReceipt(scan_reference=reference, timestamp=timestamp)


# ----------------------------------------------------------------------------------------------------
# Inbound: the request parser


def _key_label(key: object) -> str:
    if isinstance(key, str) and key and key.isprintable():
        return key if len(key) <= 64 else key[:61] + "..."
    return "<empty, non-string or unprintable key>"


class _Parser:
    """Walks one JSON body, collecting structural issues and the paths they concern."""

    def __init__(self) -> None:
        self.issues: list[ValidationIssue] = []
        self.broken: set[str] = set()

    def fail(self, path: str, code: str, message: str) -> None:
        self.issues.append(ValidationIssue(path, code, message))
        self.broken.add(path)

    def unknown_keys(self, obj: Mapping[Any, Any], known: set[str], prefix: str) -> None:
        for key in obj:
            if key not in known:
                self.fail(
                    prefix + _key_label(key),
                    "unknown_field",
                    "is not a field of the performNetverify body (the API refuses unexpected parameters)",
                )

    def string(self, obj: Mapping[Any, Any], key: str, path: str) -> str | None:
        value = obj.get(key)
        if value is None or isinstance(value, str):
            return value
        self.fail(path, "type", f"must be a JSON string, not {_json_type(value)}")
        return None

    def object(self, obj: Mapping[Any, Any], key: str, path: str) -> Mapping[Any, Any] | None:
        value = obj.get(key)
        if value is None or isinstance(value, Mapping):
            return value
        self.fail(path, "type", f"must be a JSON object, not {_json_type(value)}")
        return None

    def converted(
        self, obj: Mapping[Any, Any], key: str, path: str, parse: Callable[[str], Any], code: str
    ) -> Any:
        text = self.string(obj, key, path)
        if text is None:
            return None
        try:
            return parse(text)
        except ValueError as exc:
            self.fail(path, code, str(exc))
            return None

    def image(self, body: Mapping[Any, Any], key: str) -> Image | None:
        mime_key = f"{key}MimeType"
        mime = self.string(body, mime_key, mime_key)
        text = self.string(body, key, key)
        if text is None:
            if mime is not None:
                self.fail(mime_key, "mime_type_without_image", f"is given but {key} is absent")
            return None
        try:
            data = _decode_base64(text)
        except ValueError:  # binascii.Error is a ValueError
            self.fail(key, "invalid_base64", "must be standard base64 with correct padding and no whitespace")
            return None
        return Image(data, mime)  # an unknown mime string is kept for validation to report


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _parse_enabled_fields(text: str) -> tuple[str, ...]:
    """Comma-separated, tolerant of spaces around items (the guide's own example has one)."""
    if not text.strip():
        return ()
    return tuple(item.strip() for item in text.split(","))


@functools.lru_cache(maxsize=1)
def _request_keys() -> dict[str, str]:
    """Wire key -> attribute name, for NetverifyRequest."""
    return {f.metadata["wire"]: f.name for f in attrs.fields(NetverifyRequest)}


def _parse_user_consent(p: _Parser, obj: Mapping[Any, Any]) -> UserConsent:
    root = "userConsent"
    p.unknown_keys(obj, {"userIp", "userLocation", "consent"}, f"{root}.")
    user_ip = p.string(obj, "userIp", f"{root}.userIp")

    location: UserLocation | None = None
    loc = p.object(obj, "userLocation", f"{root}.userLocation")
    if loc is not None:
        p.unknown_keys(loc, {"country", "state"}, f"{root}.userLocation.")
        location = UserLocation(
            country=p.string(loc, "country", f"{root}.userLocation.country"),  # type: ignore[arg-type]
            state=p.string(loc, "state", f"{root}.userLocation.state"),
        )

    consent: Consent | None = None
    raw_consent = p.object(obj, "consent", f"{root}.consent")
    if raw_consent is not None:
        p.unknown_keys(raw_consent, {"obtained", "obtainedAt"}, f"{root}.consent.")
        consent = Consent(
            obtained=p.string(raw_consent, "obtained", f"{root}.consent.obtained"),  # type: ignore[arg-type]
            obtained_at=p.converted(
                raw_consent, "obtainedAt", f"{root}.consent.obtainedAt", parse_timestamp, "invalid_timestamp"
            ),
        )
    return UserConsent(user_ip=user_ip, user_location=location, consent=consent)  # type: ignore[arg-type]


def _covered(path: str, broken: set[str]) -> bool:
    """True when a structural issue already explains a semantic one at ``path``."""
    return any(path == b or path.startswith(b + ".") for b in broken)


def request_from_wire(body: Any) -> NetverifyRequest:
    """Parse and validate the JSON body a caller would POST (images as base64 strings).

    Raises :class:`~netverify_async.RequestValidationError` listing every structural and semantic problem, and
    nothing else, for any JSON-like input.
    """
    from ._validation import deferred_validation, request_issues, request_warnings

    if not isinstance(body, Mapping):
        raise RequestValidationError([ValidationIssue("body", "type", "must be a JSON object")])
    p = _Parser()
    keys = _request_keys()
    mime_keys = {f"{key}MimeType" for _attr, key in _IMAGE_FIELDS}
    p.unknown_keys(body, set(keys) | mime_keys, "")

    kwargs: dict[str, Any] = {}
    image_attrs = dict(_IMAGE_FIELDS)
    for wire_key, attr in keys.items():
        if attr in image_attrs:
            kwargs[attr] = p.image(body, wire_key)
        elif attr in _DATE_FIELDS:
            kwargs[attr] = p.converted(body, wire_key, wire_key, parse_date, "invalid_date")
        elif attr == "enabled_fields":
            kwargs[attr] = p.converted(body, wire_key, wire_key, _parse_enabled_fields, "invalid_choice")
        elif attr == "user_consent":
            raw = p.object(body, wire_key, wire_key)
            kwargs[attr] = None if raw is None else _parse_user_consent(p, raw)
        else:
            kwargs[attr] = p.string(body, wire_key, wire_key)

    with deferred_validation():
        req = NetverifyRequest(**kwargs)
    issues = p.issues + [i for i in request_issues(req) if not _covered(i.path, p.broken)]
    if issues:
        raise RequestValidationError(issues)
    for message in request_warnings(req):
        warnings.warn(message, NetverifyWarning, stacklevel=2)
    return req
