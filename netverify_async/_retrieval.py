"""Typed models of Jumio's answers: the retrieval API responses, and the pieces they share with callbacks.

The retrieval API (``GET /api/netverify/v2/scans/{ref}``, ``.../data``, ``.../images``) and the callback
describe the same verification result. The value objects that both carry (:class:`Address`,
:class:`RejectReason`, :class:`IdentityVerification`) and the enums of their documented values live here;
:mod:`netverify_async.callbacks` builds on them.

Parsing is tolerant, because Jumio's documents disagree with themselves and with real traffic:

* a value outside the documented set is kept as the raw string (fields are typed ``SomeEnum | str``);
* an unknown key is kept in ``extra``, never dropped;
* ``"N/A"`` and empty strings mean "absent" (``None``);
* timestamps with 0 to 3 millisecond digits, with or without ``Z``, become aware UTC datetimes, and dates
  become :class:`datetime.date`; a value that does not parse is kept as the raw string;
* ``rejectReasonDetails`` (an object for one item, an array for several) is always a tuple;
  ``identityVerification.validity`` accepts ``TRUE``, ``true``, ``"true"`` and JSON ``true``;
  ``source`` accepts ``WEB_CAM`` as well as ``WEB-CAM``.

Whatever was kept as sent is reported in the model's ``problems`` tuple
(:class:`~netverify_async.ValidationIssue` items naming the field and the rule, never the value). Only an
answer that cannot be used at all (not a JSON object, or without ``scanReference``) raises
:class:`~netverify_async.ResponseError`.

``repr()`` never shows personal data: names, dates of birth and expiry, document numbers, addresses, IP
addresses, customer ids and image URLs print as ``<redacted>``.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

import attrs

from ._errors import ResponseError, ValidationIssue
from ._models import REDACTED, IdType

__all__ = [
    "AdditionalChecks",
    "Address",
    "CheckResult",
    "DeleteResult",
    "FaceSearchFindings",
    "FaceSearchStatus",
    "FacemapLink",
    "Gender",
    "IdSubtype",
    "IdentityVerification",
    "MrzCheck",
    "RejectReason",
    "RejectReasonDescription",
    "RejectReasonDetail",
    "RejectReasonDetailDescription",
    "ScanDetails",
    "ScanDocument",
    "ScanImage",
    "ScanImages",
    "ScanSource",
    "ScanState",
    "ScanStatus",
    "ScanTransaction",
    "ScanVerification",
    "SearchResult",
    "Similarity",
    "SimilarityDecision",
    "ValidityReason",
    "VerificationStatus",
    "parse_delete_result",
    "parse_scan_details",
    "parse_scan_images",
    "parse_scan_status",
]


# ----------------------------------------------------------------------------------------------------
# Enums of documented values


class VerificationStatus(str, enum.Enum):
    """The outcome of an ID verification (callback ``verificationStatus``, retrieval ``document.status``)."""

    APPROVED_VERIFIED = "APPROVED_VERIFIED"
    DENIED_FRAUD = "DENIED_FRAUD"
    DENIED_UNSUPPORTED_ID_TYPE = "DENIED_UNSUPPORTED_ID_TYPE"
    DENIED_UNSUPPORTED_ID_COUNTRY = "DENIED_UNSUPPORTED_ID_COUNTRY"
    ERROR_NOT_READABLE_ID = "ERROR_NOT_READABLE_ID"
    NO_ID_UPLOADED = "NO_ID_UPLOADED"


class ScanState(str, enum.Enum):
    """Where a scan is in its life (retrieval ``status``)."""

    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class ScanSource(str, enum.Enum):
    """How the images were captured (callback ``idScanSource``, retrieval ``transaction.source``).

    The guides write both ``WEB_CAM`` and ``WEB-CAM``; both parse to :attr:`WEB_CAM` (likewise for the other
    hyphenated values).
    """

    WEB = "WEB"
    WEB_CAM = "WEB_CAM"
    WEB_UPLOAD = "WEB_UPLOAD"
    REDIRECT = "REDIRECT"
    REDIRECT_CAM = "REDIRECT_CAM"
    REDIRECT_UPLOAD = "REDIRECT_UPLOAD"
    API = "API"
    SDK = "SDK"


class IdSubtype(str, enum.Enum):
    """The document subtype (``idSubtype``)."""

    NATIONAL_ID = "NATIONAL_ID"
    CONSULAR_ID = "CONSULAR_ID"
    ELECTORAL_ID = "ELECTORAL_ID"
    RESIDENT_PERMIT_ID = "RESIDENT_PERMIT_ID"
    TAX_ID = "TAX_ID"
    STUDENT_ID = "STUDENT_ID"
    PASSPORT_CARD_ID = "PASSPORT_CARD_ID"
    MILITARY_ID = "MILITARY_ID"
    PUBLIC_SAFETY_ID = "PUBLIC_SAFETY_ID"
    HEALTH_ID = "HEALTH_ID"
    OTHER_ID = "OTHER_ID"
    VISA = "VISA"
    UNKNOWN = "UNKNOWN"
    REGULAR_DRIVING_LICENSE = "REGULAR_DRIVING_LICENSE"
    LEARNING_DRIVING_LICENSE = "LEARNING_DRIVING_LICENSE"
    E_PASSPORT = "E_PASSPORT"


class Gender(str, enum.Enum):
    """The holder's gender as printed on the document (``X`` is not in the guide but occurs in real data)."""

    M = "M"
    F = "F"
    X = "X"


class Similarity(str, enum.Enum):
    """Whether the selfie shows the person on the document (``identityVerification.similarity``)."""

    MATCH = "MATCH"
    NO_MATCH = "NO_MATCH"
    NOT_POSSIBLE = "NOT_POSSIBLE"


class SimilarityDecision(str, enum.Enum):
    """How the similarity was decided (``identityVerification.similarityDecision``; some accounts)."""

    MANUAL = "MANUAL"
    AUTOMATED = "AUTOMATED"


class ValidityReason(str, enum.Enum):
    """Why the selfie was not accepted as a live person (``identityVerification.reason``)."""

    SELFIE_CROPPED_FROM_ID = "SELFIE_CROPPED_FROM_ID"
    ENTIRE_ID_USED_AS_SELFIE = "ENTIRE_ID_USED_AS_SELFIE"
    MULTIPLE_PEOPLE = "MULTIPLE_PEOPLE"
    SELFIE_IS_SCREEN_PAPER_VIDEO = "SELFIE_IS_SCREEN_PAPER_VIDEO"
    SELFIE_MANIPULATED = "SELFIE_MANIPULATED"
    AGE_DIFFERENCE_TOO_BIG = "AGE_DIFFERENCE_TOO_BIG"
    NO_FACE_PRESENT = "NO_FACE_PRESENT"
    FACE_NOT_FULLY_VISIBLE = "FACE_NOT_FULLY_VISIBLE"
    BAD_QUALITY = "BAD_QUALITY"
    BLACK_AND_WHITE = "BLACK_AND_WHITE"
    LIVENESS_FAILED = "LIVENESS_FAILED"


class RejectReasonDescription(str, enum.Enum):
    """Why a scan was denied or not readable (``rejectReasonDescription``); :attr:`code` is its number."""

    MANIPULATED_DOCUMENT = "MANIPULATED_DOCUMENT"
    PHOTOCOPY_BLACK_WHITE = "PHOTOCOPY_BLACK_WHITE"
    PHOTOCOPY_COLOR = "PHOTOCOPY_COLOR"
    DIGITAL_COPY = "DIGITAL_COPY"
    FRAUDSTER = "FRAUDSTER"
    FAKE = "FAKE"
    PHOTO_MISMATCH = "PHOTO_MISMATCH"
    MRZ_CHECK_FAILED = "MRZ_CHECK_FAILED"
    PUNCHED_DOCUMENT = "PUNCHED_DOCUMENT"
    CHIP_DATA_MANIPULATED = "CHIP_DATA_MANIPULATED"
    MISMATCH_PRINTED_BARCODE_DATA = "MISMATCH_PRINTED_BARCODE_DATA"
    MISMATCHING_DATA_REPEATED_FACE = "MISMATCHING_DATA_REPEATED_FACE"
    NOT_READABLE_DOCUMENT = "NOT_READABLE_DOCUMENT"
    NO_DOCUMENT = "NO_DOCUMENT"
    SAMPLE_DOCUMENT = "SAMPLE_DOCUMENT"
    MISSING_BACK = "MISSING_BACK"
    WRONG_DOCUMENT_PAGE = "WRONG_DOCUMENT_PAGE"
    MISSING_SIGNATURE = "MISSING_SIGNATURE"
    CAMERA_BLACK_WHITE = "CAMERA_BLACK_WHITE"
    DIFFERENT_PERSONS_SHOWN = "DIFFERENT_PERSONS_SHOWN"
    INVALID_WATERMARK = "INVALID_WATERMARK"
    MANUAL_REJECTION = "MANUAL_REJECTION"

    @property
    def code(self) -> str:
        """The documented ``rejectReasonCode`` of this description (``"100"`` for MANIPULATED_DOCUMENT...)."""
        return _REJECT_REASON_CODES[self]


_REJECT_REASON_CODES = {
    RejectReasonDescription.MANIPULATED_DOCUMENT: "100",
    RejectReasonDescription.PHOTOCOPY_BLACK_WHITE: "102",
    RejectReasonDescription.PHOTOCOPY_COLOR: "103",
    RejectReasonDescription.DIGITAL_COPY: "104",
    RejectReasonDescription.FRAUDSTER: "105",
    RejectReasonDescription.FAKE: "106",
    RejectReasonDescription.PHOTO_MISMATCH: "107",
    RejectReasonDescription.MRZ_CHECK_FAILED: "108",
    RejectReasonDescription.PUNCHED_DOCUMENT: "109",
    RejectReasonDescription.CHIP_DATA_MANIPULATED: "110",
    RejectReasonDescription.MISMATCH_PRINTED_BARCODE_DATA: "111",
    RejectReasonDescription.MISMATCHING_DATA_REPEATED_FACE: "113",
    RejectReasonDescription.NOT_READABLE_DOCUMENT: "200",
    RejectReasonDescription.NO_DOCUMENT: "201",
    RejectReasonDescription.SAMPLE_DOCUMENT: "202",
    RejectReasonDescription.MISSING_BACK: "206",
    RejectReasonDescription.WRONG_DOCUMENT_PAGE: "207",
    RejectReasonDescription.MISSING_SIGNATURE: "209",
    RejectReasonDescription.CAMERA_BLACK_WHITE: "210",
    RejectReasonDescription.DIFFERENT_PERSONS_SHOWN: "211",
    RejectReasonDescription.INVALID_WATERMARK: "213",
    RejectReasonDescription.MANUAL_REJECTION: "300",
}


class RejectReasonDetailDescription(str, enum.Enum):
    """What exactly was wrong (``detailsDescription``, for reject codes 100 and 200); :attr:`code` is its
    number.
    """

    PHOTO = "PHOTO"
    DOCUMENT_NUMBER = "DOCUMENT_NUMBER"
    EXPIRY = "EXPIRY"
    DOB = "DOB"
    NAME = "NAME"
    ADDRESS = "ADDRESS"
    SECURITY_CHECKS = "SECURITY_CHECKS"
    SIGNATURE = "SIGNATURE"
    PERSONAL_NUMBER = "PERSONAL_NUMBER"
    PLACE_OF_BIRTH = "PLACE_OF_BIRTH"
    BLURRED = "BLURRED"
    BAD_QUALITY = "BAD_QUALITY"
    MISSING_PART_DOCUMENT = "MISSING_PART_DOCUMENT"
    HIDDEN_PART_DOCUMENT = "HIDDEN_PART_DOCUMENT"
    DAMAGED_DOCUMENT = "DAMAGED_DOCUMENT"
    GLARE = "GLARE"

    @property
    def code(self) -> str:
        """The documented ``detailsCode`` of this description (``"1001"`` for PHOTO...)."""
        return _REJECT_DETAIL_CODES[self]


_REJECT_DETAIL_CODES = {
    RejectReasonDetailDescription.PHOTO: "1001",
    RejectReasonDetailDescription.DOCUMENT_NUMBER: "1002",
    RejectReasonDetailDescription.EXPIRY: "1003",
    RejectReasonDetailDescription.DOB: "1004",
    RejectReasonDetailDescription.NAME: "1005",
    RejectReasonDetailDescription.ADDRESS: "1006",
    RejectReasonDetailDescription.SECURITY_CHECKS: "1007",
    RejectReasonDetailDescription.SIGNATURE: "1008",
    RejectReasonDetailDescription.PERSONAL_NUMBER: "1009",
    RejectReasonDetailDescription.PLACE_OF_BIRTH: "10011",
    RejectReasonDetailDescription.BLURRED: "2001",
    RejectReasonDetailDescription.BAD_QUALITY: "2002",
    RejectReasonDetailDescription.MISSING_PART_DOCUMENT: "2003",
    RejectReasonDetailDescription.HIDDEN_PART_DOCUMENT: "2004",
    RejectReasonDetailDescription.DAMAGED_DOCUMENT: "2005",
    RejectReasonDetailDescription.GLARE: "2006",
}


class MrzCheck(str, enum.Enum):
    """Result of the machine-readable-zone check (retrieval ``verification.mrzCheck``)."""

    OK = "OK"
    NOT_AVAILABLE = "NOT_AVAILABLE"


class SearchResult(str, enum.Enum):
    """Result of an additional check (``addressValidation``, ``proofOfResidency``,
    ``personalNumberValidation``).
    """

    POSITIVE_RESULT = "POSITIVE_RESULT"
    PARTIAL_RESULT = "PARTIAL_RESULT"
    NEGATIVE_RESULT = "NEGATIVE_RESULT"
    CHECK_NOT_DONE = "CHECK_NOT_DONE"


class FaceSearchStatus(str, enum.Enum):
    """State of the 1:n face search (``faceSearchFindings.status``)."""

    DONE = "DONE"
    PENDING = "PENDING"
    ERROR = "ERROR"


# ----------------------------------------------------------------------------------------------------
# Tolerant value conversion (shared with netverify_async.callbacks)

_E = TypeVar("_E", bound=enum.Enum)
_T = TypeVar("_T")

#: Values that mean "no value": Jumio sends ``N/A`` for fields it could not or would not fill.
_ABSENT_TEXT = frozenset({"", "N/A"})
_PERSONAL = MappingProxyType({"personal": True})
_EMPTY: Mapping[str, Any] = MappingProxyType({})


class _Problems:
    """Collects what could not be read as documented while a whole answer is parsed."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[ValidationIssue] = []

    def add(self, path: str, code: str, message: str) -> None:
        self.items.append(ValidationIssue(path, code, message))

    def as_tuple(self) -> tuple[ValidationIssue, ...]:
        return tuple(self.items)


#: A converter turns one raw value (form text or decoded JSON) into its typed form, noting what it kept raw.
_Converter = Callable[[Any, str, _Problems], Any]
#: Sentinel for "this JSON text does not decode".
_MALFORMED: Any = object()


def _redact(value: object) -> str:
    return "None" if value is None else REDACTED


def _keys_only(value: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{key!r}: ..." for key in sorted(value)) + "}"


def _compact_repr(self: Any) -> str:
    """``Class(name=value, ...)`` for the fields that are set; personal values print as ``<redacted>``."""
    parts = []
    for field in attrs.fields(type(self)):
        value = getattr(self, field.name)
        if value is None or field.repr is False or (isinstance(value, (tuple, Mapping)) and not value):
            continue
        shown = field.repr(value) if callable(field.repr) else repr(value)
        parts.append(f"{field.name}={shown}")
    return f"{type(self).__name__}({', '.join(parts)})"


def _personal() -> Any:
    """An optional attribute holding personal data: hidden in ``repr`` and in ``to_dict(redact=True)``."""
    return attrs.field(default=None, repr=_redact, metadata=_PERSONAL)


def _extra_field() -> Any:
    return attrs.field(default=_EMPTY, repr=_keys_only, hash=False)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() in _ABSENT_TEXT)


def _json_kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def _dump(value: Any) -> str:
    """A JSON text for a value that had to be kept as sent (never raises)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _loads(text: str, path: str, problems: _Problems) -> Any:
    """Decode a JSON text embedded in a field; :data:`_MALFORMED` (and a problem) when it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        problems.add(path, "malformed_json", "is not valid JSON; kept as the raw string")
        return _MALFORMED


def _text(value: Any, path: str, problems: _Problems) -> str | None:
    """Plain text; ``N/A`` and empty mean absent. JSON numbers and booleans become their JSON spelling."""
    if _is_absent(value):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    problems.add(path, "wrong_type", f"expected text, got a JSON {_json_kind(value)}; kept as JSON text")
    return _dump(value)


def _enum(
    enum_type: type[_E],
    normalise: Callable[[str], str] | None = None,
    *,
    also_documented: frozenset[str] = frozenset(),
) -> _Converter:
    """A documented value becomes the enum member; any other value is kept as sent (and noted, unless it is one
    of ``also_documented``: values the guide lists but the shared enum does not have)."""

    def convert(value: Any, path: str, problems: _Problems) -> _E | str | None:
        text = _text(value, path, problems)
        if text is None:
            return None
        if text.strip() in also_documented:
            return text.strip()
        return _enum_member(enum_type, text, path, problems, normalise)

    return convert


def _enum_member(
    enum_type: type[_E],
    text: str,
    path: str,
    problems: _Problems,
    normalise: Callable[[str], str] | None = None,
) -> _E | str:
    key = text.strip()
    if normalise is not None:
        key = normalise(key)
    for candidate in (key, key.upper()):
        try:
            return enum_type(candidate)
        except ValueError:
            continue
    problems.add(path, "unknown_value", f"not a documented {enum_type.__name__} value; kept as sent")
    return text


def _normalise_source(text: str) -> str:
    return text.upper().replace("-", "_")


#: ``YYYY-MM-DDThh:mm:ss``, an optional fraction, an optional ``Z`` or numeric offset (ASCII digits only).
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:[.,]([0-9]{1,9}))?\s*(Z|z|UTC|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})", re.ASCII)


def parse_timestamp_lenient(text: str) -> _dt.datetime | None:
    """An aware UTC datetime from Jumio's ``YYYY-MM-DDThh:mm:ss[.S{1,3}]Z`` (and near variants), else None.

    Accepts 0 to 9 fraction digits (beyond microseconds they are cut), ``Z``, a numeric offset, or no zone at
    all (the guides say every timestamp is UTC).
    """
    match = _TIMESTAMP_RE.fullmatch(text.strip())
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


def _timestamp(value: Any, path: str, problems: _Problems) -> _dt.datetime | str | None:
    text = _text(value, path, problems)
    if text is None:
        return None
    parsed = parse_timestamp_lenient(text)
    if parsed is None:
        problems.add(path, "bad_timestamp", "is not a YYYY-MM-DDThh:mm:ss[.SSS]Z timestamp; kept as sent")
        return text
    return parsed


def _date(value: Any, path: str, problems: _Problems) -> _dt.date | str | None:
    text = _text(value, path, problems)
    if text is None:
        return None
    match = _DATE_RE.fullmatch(text.strip())
    if match is not None:
        try:
            return _dt.date(*(int(g) for g in match.groups()))
        except ValueError:
            pass
    problems.add(path, "bad_date", "is not a YYYY-MM-DD date; kept as sent")
    return text


def _bool(value: Any, path: str, problems: _Problems) -> bool | str | None:
    """``TRUE``/``true``/``"true"``/JSON true (and the FALSE forms); anything else is kept as sent."""
    if isinstance(value, bool):
        return value
    text = _text(value, path, problems)
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    problems.add(path, "unknown_value", "is neither true nor false; kept as sent")
    return text


def _decode_json_text(value: Any, path: str, problems: _Problems) -> tuple[Any, str | None]:
    """For a value that may be JSON text (form fields) or already decoded JSON (API answers).

    Returns ``(decoded, raw_text)``; ``decoded`` is :data:`_MALFORMED` when the text is not JSON.
    """
    if isinstance(value, str):
        if _is_absent(value):
            return None, None
        return _loads(value, path, problems), value
    return value, None


def _object(parser: Callable[[Mapping[str, Any], str, _Problems], _T]) -> _Converter:
    """A JSON object (or JSON text of one) parsed by ``parser``; an empty object means absent."""

    def convert(value: Any, path: str, problems: _Problems) -> _T | str | None:
        decoded, raw = _decode_json_text(value, path, problems)
        if decoded is _MALFORMED:
            return raw
        if decoded is None or (isinstance(decoded, str) and _is_absent(decoded)):
            return None
        if isinstance(decoded, Mapping):
            return parser(decoded, path, problems) if decoded else None
        problems.add(
            path, "wrong_type", f"expected a JSON object, got a JSON {_json_kind(decoded)}; kept as sent"
        )
        return raw if raw is not None else _dump(decoded)

    return convert


def _objects(parser: Callable[[Mapping[str, Any], str, _Problems], _T]) -> _Converter:
    """One JSON object or an array of them (or JSON text of either): always a tuple."""

    def convert(value: Any, path: str, problems: _Problems) -> tuple[_T, ...] | str | None:
        decoded, raw = _decode_json_text(value, path, problems)
        if decoded is _MALFORMED:
            return raw
        if decoded is None:
            return None
        if isinstance(decoded, Mapping):
            return (parser(decoded, path, problems),) if decoded else ()
        if isinstance(decoded, (list, tuple)):
            items: list[_T] = []
            for index, item in enumerate(decoded):
                item_path = f"{path}[{index}]"
                if isinstance(item, Mapping):
                    items.append(parser(item, item_path, problems))
                else:
                    problems.add(
                        item_path, "wrong_type", f"expected a JSON object, got a JSON {_json_kind(item)}"
                    )
            return tuple(items)
        problems.add(path, "wrong_type", f"expected a JSON object or array, got a JSON {_json_kind(decoded)}")
        return raw if raw is not None else _dump(decoded)

    return convert


def _strings(*, single_text_is_item: bool) -> _Converter:
    """A JSON array of strings (or JSON text of one); a JSON string is a one-item tuple.

    With ``single_text_is_item``, a plain (non-JSON) value is also taken as one item: the retrieval API sends
    a single face-search finding as a bare string.
    """

    def convert(value: Any, path: str, problems: _Problems) -> tuple[str, ...] | str | None:
        if single_text_is_item and isinstance(value, str) and not value.lstrip().startswith("["):
            return None if _is_absent(value) else (value,)
        decoded, raw = _decode_json_text(value, path, problems)
        if decoded is _MALFORMED:
            return raw
        if decoded is None:
            return None
        if isinstance(decoded, str):
            return (decoded,)
        if isinstance(decoded, (list, tuple)):
            items = (_text(item, f"{path}[{index}]", problems) for index, item in enumerate(decoded))
            return tuple(item for item in items if item is not None)
        problems.add(
            path, "wrong_type", f"expected a JSON array of strings, got a JSON {_json_kind(decoded)}"
        )
        return raw if raw is not None else _dump(decoded)

    return convert


def _fields(
    spec: Mapping[str, tuple[str, _Converter]], obj: Mapping[str, Any], path: str, problems: _Problems
) -> tuple[dict[str, Any], Mapping[str, Any]]:
    """Convert the known keys of ``obj`` by ``spec`` (wire name -> attribute, converter); the rest: extra."""
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if isinstance(key, str) else str(key)
        entry = spec.get(name)
        if entry is None:
            extra[name] = value
            continue
        attribute, convert = entry
        kwargs[attribute] = convert(value, _join(path, name), problems)
    return kwargs, MappingProxyType(extra) if extra else _EMPTY


def _jsonable(value: Any, *, redact: bool) -> Any:
    """A JSON-serialisable copy: enums as their values, dates in ISO 8601, value objects as dicts."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, _dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, ValidationIssue):
        return {"path": value.path, "code": value.code, "message": value.message}
    if attrs.has(type(value)):
        return _attrs_to_dict(value, redact=redact)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, redact=redact) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, redact=redact) for v in value]
    return value


def _attrs_to_dict(instance: Any, *, redact: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in attrs.fields(type(instance)):
        value = getattr(instance, field.name)
        if redact and value is not None and field.metadata.get("personal"):
            out[field.name] = REDACTED
        elif redact and field.name == "extra":  # undocumented, so possibly personal
            out[field.name] = dict.fromkeys(value, REDACTED)
        else:
            out[field.name] = _jsonable(value, redact=redact)
    return out


# ----------------------------------------------------------------------------------------------------
# Value objects shared by callbacks and the retrieval API


@attrs.frozen(repr=False)
class Address:
    """An address read from the document, in Jumio's RAW format (every part optional, all personal)."""

    __repr__ = _compact_repr

    line1: str | None = _personal()
    line2: str | None = _personal()
    line3: str | None = _personal()
    line4: str | None = _personal()
    line5: str | None = _personal()
    country: str | None = _personal()
    postal_code: str | None = _personal()
    city: str | None = _personal()
    subdivision: str | None = _personal()
    state_code: str | None = _personal()
    formatted_address: str | None = _personal()
    #: Keys the guide does not document, as sent (values are personal too, so ``repr`` shows only the keys).
    extra: Mapping[str, Any] = _extra_field()

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict; ``redact=True`` replaces every present value by ``"<redacted>"``."""
        return _attrs_to_dict(self, redact=redact)


_ADDRESS_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "line1": ("line1", _text),
    "line2": ("line2", _text),
    "line3": ("line3", _text),
    "line4": ("line4", _text),
    "line5": ("line5", _text),
    "country": ("country", _text),
    "postalCode": ("postal_code", _text),
    "city": ("city", _text),
    "subdivision": ("subdivision", _text),
    "stateCode": ("state_code", _text),
    "formattedAddress": ("formatted_address", _text),
}


def _parse_address(obj: Mapping[str, Any], path: str, problems: _Problems) -> Address:
    kwargs, extra = _fields(_ADDRESS_SPEC, obj, path, problems)
    return Address(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class RejectReasonDetail:
    """One detail of a reject reason (``rejectReasonDetails`` item), e.g. ``1001`` / ``PHOTO``."""

    __repr__ = _compact_repr

    code: str | None = None
    description: RejectReasonDetailDescription | str | None = None
    extra: Mapping[str, Any] = _extra_field()


_REJECT_DETAIL_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "detailsCode": ("code", _text),
    "detailsDescription": ("description", _enum(RejectReasonDetailDescription)),
}


def _parse_reject_detail(obj: Mapping[str, Any], path: str, problems: _Problems) -> RejectReasonDetail:
    kwargs, extra = _fields(_REJECT_DETAIL_SPEC, obj, path, problems)
    return RejectReasonDetail(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class RejectReason:
    """Why a scan was denied or not readable (``rejectReason``).

    ``details`` is always a tuple, whether Jumio sent one object, an array, or nothing (then it is empty).
    When the details were not JSON at all, they are kept as the raw string instead.
    """

    __repr__ = _compact_repr

    code: str | None = None
    description: RejectReasonDescription | str | None = None
    details: tuple[RejectReasonDetail, ...] | str = ()
    extra: Mapping[str, Any] = _extra_field()

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code carried: ``code`` first, then each detail's code (``("100", "1001", "1004")``)."""
        found = [self.code] if self.code is not None else []
        if isinstance(self.details, tuple):
            found.extend(detail.code for detail in self.details if detail.code is not None)
        return tuple(found)


_REJECT_REASON_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "rejectReasonCode": ("code", _text),
    "rejectReasonDescription": ("description", _enum(RejectReasonDescription)),
    "rejectReasonDetails": ("details", _objects(_parse_reject_detail)),
}


def _parse_reject_reason(obj: Mapping[str, Any], path: str, problems: _Problems) -> RejectReason:
    kwargs, extra = _fields(_REJECT_REASON_SPEC, obj, path, problems)
    if kwargs.get("details") is None:
        kwargs.pop("details", None)
    return RejectReason(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class IdentityVerification:
    """Result of the selfie check (``identityVerification``).

    ``validity`` is True/False whichever way Jumio spelled it (``TRUE``, ``true``, ``"true"``); an
    unrecognised spelling is kept as the raw string.
    """

    __repr__ = _compact_repr

    similarity: Similarity | str | None = None
    validity: bool | str | None = None
    reason: ValidityReason | str | None = None
    similarity_decision: SimilarityDecision | str | None = None
    similarity_score: str | None = None
    handwritten_note_matches: bool | str | None = None
    extra: Mapping[str, Any] = _extra_field()

    @property
    def is_verified(self) -> bool:
        """True when the selfie matches the document and shows a live person."""
        return self.similarity is Similarity.MATCH and self.validity is True


_IDENTITY_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "similarity": ("similarity", _enum(Similarity)),
    "validity": ("validity", _bool),
    "reason": ("reason", _enum(ValidityReason)),
    "similarityDecision": ("similarity_decision", _enum(SimilarityDecision)),
    "similarityScore": ("similarity_score", _text),
    "handwrittenNoteMatches": ("handwritten_note_matches", _bool),
}


def _parse_identity(obj: Mapping[str, Any], path: str, problems: _Problems) -> IdentityVerification:
    kwargs, extra = _fields(_IDENTITY_SPEC, obj, path, problems)
    return IdentityVerification(**kwargs, extra=extra)


# ----------------------------------------------------------------------------------------------------
# Retrieval API models


def _load_answer(body: Mapping[str, Any] | bytes | bytearray | str, operation: str) -> Mapping[str, Any]:
    """The answer as a JSON object, or :class:`ResponseError`."""
    decoded: Any = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            raise ResponseError(f"{operation}: the answer is not JSON", operation=operation) from None
    if not isinstance(decoded, Mapping):
        raise ResponseError(
            f"{operation}: the answer must be a JSON object, got a JSON {_json_kind(decoded)}",
            operation=operation,
        )
    return decoded


def _required_reference(obj: Mapping[str, Any], key: str, operation: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or _is_absent(value):
        raise ResponseError(f"{operation}: '{key}' is missing or not a non-empty string", operation=operation)
    return value


@attrs.frozen(repr=False)
class ScanStatus:
    """``GET /scans/{ref}``: whether the scan is still PENDING, or DONE / FAILED."""

    __repr__ = _compact_repr

    scan_reference: str
    status: ScanState | str
    timestamp: _dt.datetime | str | None = None
    extra: Mapping[str, Any] = _extra_field()
    problems: tuple[ValidationIssue, ...] = ()

    @property
    def is_final(self) -> bool:
        """True once the scan is DONE or FAILED (details can be fetched, polling can stop)."""
        return self.status in (ScanState.DONE, ScanState.FAILED)


_STATUS_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "timestamp": ("timestamp", _timestamp),
    "status": ("status", _enum(ScanState)),
}


def parse_scan_status(body: Mapping[str, Any] | bytes | str) -> ScanStatus:
    """Parse the answer of ``GET /scans/{ref}`` (a decoded JSON object, or its raw JSON bytes/text).

    Raises :class:`~netverify_async.ResponseError` when it is not a JSON object or lacks ``scanReference`` or
    ``status``. An undocumented status is kept as the raw string (and is not final).
    """
    operation = "scanStatus"
    obj = _load_answer(body, operation)
    reference = _required_reference(obj, "scanReference", operation)
    problems = _Problems()
    kwargs, extra = _fields(
        _STATUS_SPEC, {k: v for k, v in obj.items() if k != "scanReference"}, "", problems
    )
    if kwargs.get("status") is None:
        raise ResponseError(f"{operation}: 'status' is missing or empty", operation=operation)
    return ScanStatus(scan_reference=reference, **kwargs, extra=extra, problems=problems.as_tuple())


@attrs.frozen(repr=False)
class ScanDocument:
    """``document`` of the scan details: what was read from the ID (almost all of it personal data).

    ``type`` is an :class:`~netverify_async.IdType`, or the string ``"UNSUPPORTED"``, which the retrieval guide
    documents for this field only (it is not a type one can submit).
    """

    __repr__ = _compact_repr

    status: VerificationStatus | str | None = None
    type: IdType | str | None = None
    id_subtype: IdSubtype | str | None = None
    issuing_country: str | None = None
    first_name: str | None = _personal()
    last_name: str | None = _personal()
    dob: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    expiry: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    issuing_date: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    number: str | None = _personal()
    us_state: str | None = _personal()
    personal_number: str | None = _personal()
    optional_data1: str | None = _personal()
    optional_data2: str | None = _personal()
    address: Address | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    issuing_authority: str | None = _personal()
    issuing_place: str | None = _personal()
    curp: str | None = _personal()
    gender: Gender | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    nationality: str | None = _personal()
    place_of_birth: str | None = _personal()
    tax_number: str | None = _personal()
    cpf: str | None = _personal()
    registration_number: str | None = _personal()
    mothers_name: str | None = _personal()
    fathers_name: str | None = _personal()
    personal_identification_number: str | None = _personal()
    rg_number: str | None = _personal()
    voter_id_number: str | None = _personal()
    issuing_number: str | None = _personal()
    extra: Mapping[str, Any] = _extra_field()


_DOCUMENT_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "status": ("status", _enum(VerificationStatus)),
    "type": ("type", _enum(IdType, also_documented=frozenset({"UNSUPPORTED"}))),
    "idSubtype": ("id_subtype", _enum(IdSubtype)),
    "issuingCountry": ("issuing_country", _text),
    "firstName": ("first_name", _text),
    "lastName": ("last_name", _text),
    "dob": ("dob", _date),
    "expiry": ("expiry", _date),
    "issuingDate": ("issuing_date", _date),
    "number": ("number", _text),
    "usState": ("us_state", _text),
    "personalNumber": ("personal_number", _text),
    "optionalData1": ("optional_data1", _text),
    "optionalData2": ("optional_data2", _text),
    "address": ("address", _object(_parse_address)),
    "issuingAuthority": ("issuing_authority", _text),
    "issuingPlace": ("issuing_place", _text),
    "curp": ("curp", _text),
    "gender": ("gender", _enum(Gender)),
    "nationality": ("nationality", _text),
    "placeOfBirth": ("place_of_birth", _text),
    "taxNumber": ("tax_number", _text),
    "cpf": ("cpf", _text),
    "registrationNumber": ("registration_number", _text),
    "mothersName": ("mothers_name", _text),
    "fathersName": ("fathers_name", _text),
    "personalIdentificationNumber": ("personal_identification_number", _text),
    "rgNumber": ("rg_number", _text),
    "voterIdNumber": ("voter_id_number", _text),
    "issuingNumber": ("issuing_number", _text),
}


def _parse_document(obj: Mapping[str, Any], path: str, problems: _Problems) -> ScanDocument:
    kwargs, extra = _fields(_DOCUMENT_SPEC, obj, path, problems)
    return ScanDocument(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class ScanTransaction:
    """``transaction`` of the scan details: when, how and for whom the scan was made."""

    __repr__ = _compact_repr

    status: ScanState | str | None = None
    date: _dt.datetime | str | None = None
    source: ScanSource | str | None = None
    merchant_scan_reference: str | None = None
    merchant_reporting_criteria: str | None = None
    customer_id: str | None = _personal()
    client_ip: str | None = _personal()
    extra: Mapping[str, Any] = _extra_field()


_TRANSACTION_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "status": ("status", _enum(ScanState)),
    "date": ("date", _timestamp),
    "source": ("source", _enum(ScanSource, _normalise_source)),
    "merchantScanReference": ("merchant_scan_reference", _text),
    "merchantReportingCriteria": ("merchant_reporting_criteria", _text),
    "customerId": ("customer_id", _text),
    "clientIp": ("client_ip", _text),
}


def _parse_transaction(obj: Mapping[str, Any], path: str, problems: _Problems) -> ScanTransaction:
    kwargs, extra = _fields(_TRANSACTION_SPEC, obj, path, problems)
    return ScanTransaction(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class CheckResult:
    """Result of one additional check (address validation, proof of residency, personal number validation).

    ``search_response`` carries ``searchResponse`` or ``searchReason`` (the guide uses both names), e.g.
    ``NOT_ENOUGH_DATA`` when the check was not done.
    """

    __repr__ = _compact_repr

    search_results: SearchResult | str | None = None
    search_response: str | None = None
    extra: Mapping[str, Any] = _extra_field()


_CHECK_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "searchResults": ("search_results", _enum(SearchResult)),
    "searchResponse": ("search_response", _text),
    "searchReason": ("search_response", _text),
}


def _parse_check(obj: Mapping[str, Any], path: str, problems: _Problems) -> CheckResult:
    kwargs, extra = _fields(_CHECK_SPEC, obj, path, problems)
    return CheckResult(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class FaceSearchFindings:
    """Result of the 1:n face search: earlier scans whose faces match this one (a string or an array on the
    wire; always a tuple here)."""

    __repr__ = _compact_repr

    status: FaceSearchStatus | str | None = None
    findings: tuple[str, ...] | str = ()
    extra: Mapping[str, Any] = _extra_field()


_FACE_SEARCH_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "status": ("status", _enum(FaceSearchStatus)),
    "findings": ("findings", _strings(single_text_is_item=True)),
}


def _parse_face_search(obj: Mapping[str, Any], path: str, problems: _Problems) -> FaceSearchFindings:
    kwargs, extra = _fields(_FACE_SEARCH_SPEC, obj, path, problems)
    if kwargs.get("findings") is None:
        kwargs.pop("findings", None)
    return FaceSearchFindings(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class AdditionalChecks:
    """``verification.additionalChecks``; ``watchlist_screening`` is kept as the JSON object Jumio sent."""

    __repr__ = _compact_repr

    address_validation: CheckResult | str | None = None
    proof_of_residency: CheckResult | str | None = None
    personal_number_validation: CheckResult | str | None = None
    face_search_findings: FaceSearchFindings | str | None = None
    watchlist_screening: Mapping[str, Any] | str | None = attrs.field(default=None, hash=False)
    extra: Mapping[str, Any] = _extra_field()


def _raw_object(obj: Mapping[str, Any], path: str, problems: _Problems) -> Mapping[str, Any]:
    return MappingProxyType(dict(obj))


_ADDITIONAL_CHECKS_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "addressValidation": ("address_validation", _object(_parse_check)),
    "proofOfResidency": ("proof_of_residency", _object(_parse_check)),
    "personalNumberValidation": ("personal_number_validation", _object(_parse_check)),
    "faceSearchFindings": ("face_search_findings", _object(_parse_face_search)),
    "watchlistScreening": ("watchlist_screening", _object(_raw_object)),
}


def _parse_additional_checks(obj: Mapping[str, Any], path: str, problems: _Problems) -> AdditionalChecks:
    kwargs, extra = _fields(_ADDITIONAL_CHECKS_SPEC, obj, path, problems)
    return AdditionalChecks(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class ScanVerification:
    """``verification`` of the scan details: MRZ check, reject reason, selfie check, additional checks."""

    __repr__ = _compact_repr

    mrz_check: MrzCheck | str | None = None
    reject_reason: RejectReason | str | None = None
    identity_verification: IdentityVerification | str | None = None
    additional_checks: AdditionalChecks | str | None = None
    extra: Mapping[str, Any] = _extra_field()


_VERIFICATION_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "mrzCheck": ("mrz_check", _enum(MrzCheck)),
    "rejectReason": ("reject_reason", _object(_parse_reject_reason)),
    "identityVerification": ("identity_verification", _object(_parse_identity)),
    "additionalChecks": ("additional_checks", _object(_parse_additional_checks)),
}


def _parse_verification(obj: Mapping[str, Any], path: str, problems: _Problems) -> ScanVerification:
    kwargs, extra = _fields(_VERIFICATION_SPEC, obj, path, problems)
    return ScanVerification(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class FacemapLink:
    """Where to download the facemap (``facemap``: classifier and URL)."""

    __repr__ = _compact_repr

    classifier: str | None = None
    href: str | None = _personal()
    extra: Mapping[str, Any] = _extra_field()


_LINK_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "classifier": ("classifier", _text),
    "href": ("href", _text),
}


def _parse_facemap(obj: Mapping[str, Any], path: str, problems: _Problems) -> FacemapLink:
    kwargs, extra = _fields(_LINK_SPEC, obj, path, problems)
    return FacemapLink(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class ScanDetails:
    """``GET /scans/{ref}/data``: document, transaction and verification data of one scan.

    A part that is missing is None. A part that is not a JSON object is moved to ``extra`` under its wire name
    (and noted in ``problems``).
    """

    __repr__ = _compact_repr

    scan_reference: str
    timestamp: _dt.datetime | str | None = None
    document: ScanDocument | None = None
    transaction: ScanTransaction | None = None
    verification: ScanVerification | None = None
    facemap: FacemapLink | None = None
    extra: Mapping[str, Any] = _extra_field()
    problems: tuple[ValidationIssue, ...] = ()

    @property
    def verification_status(self) -> VerificationStatus | str | None:
        """The outcome of the verification (``document.status``), or None when there is no document part."""
        return self.document.status if self.document is not None else None

    @property
    def is_approved(self) -> bool:
        """True when the document was APPROVED_VERIFIED."""
        return self.verification_status is VerificationStatus.APPROVED_VERIFIED

    @property
    def reject_reason_codes(self) -> tuple[str, ...]:
        """Every reject code: the main code, then the detail codes; empty when there is no reject reason."""
        reason = self.verification.reject_reason if self.verification is not None else None
        return reason.codes if isinstance(reason, RejectReason) else ()

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (snake_case keys).

        ``redact=True`` replaces personal values, and the values of undocumented keys, by ``"<redacted>"``.
        """
        return _attrs_to_dict(self, redact=redact)


_DETAILS_PARTS: Mapping[str, tuple[str, Callable[[Mapping[str, Any], str, _Problems], Any]]] = {
    "document": ("document", _parse_document),
    "transaction": ("transaction", _parse_transaction),
    "verification": ("verification", _parse_verification),
    "facemap": ("facemap", _parse_facemap),
}


def parse_scan_details(body: Mapping[str, Any] | bytes | str) -> ScanDetails:
    """Parse the answer of ``GET /scans/{ref}/data`` (a decoded JSON object, or its raw JSON bytes/text).

    Raises :class:`~netverify_async.ResponseError` only when it is not a JSON object or has no
    ``scanReference``; everything else is read tolerantly (see the module documentation).
    """
    operation = "scanDetails"
    obj = _load_answer(body, operation)
    reference = _required_reference(obj, "scanReference", operation)
    problems = _Problems()
    kwargs: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "scanReference":
            continue
        if key == "timestamp":
            kwargs["timestamp"] = _timestamp(value, key, problems)
        elif key in _DETAILS_PARTS:
            attribute, parser = _DETAILS_PARTS[key]
            if isinstance(value, Mapping):
                kwargs[attribute] = parser(value, key, problems)
            elif value is not None:
                problems.add(
                    key,
                    "wrong_type",
                    f"expected a JSON object, got a JSON {_json_kind(value)}; moved to extra",
                )
                extra[key] = value
        else:
            extra[str(key)] = value
    return ScanDetails(
        scan_reference=reference,
        **kwargs,
        extra=MappingProxyType(extra) if extra else _EMPTY,
        problems=problems.as_tuple(),
    )


@attrs.frozen(repr=False)
class ScanImage:
    """One image of a scan: its classifier (``front``, ``back``, ``face``) and the URL to download it from."""

    __repr__ = _compact_repr

    classifier: str | None = None
    href: str | None = _personal()
    extra: Mapping[str, Any] = _extra_field()


def _parse_image(obj: Mapping[str, Any], path: str, problems: _Problems) -> ScanImage:
    kwargs, extra = _fields(_LINK_SPEC, obj, path, problems)
    return ScanImage(**kwargs, extra=extra)


@attrs.frozen(repr=False)
class ScanImages:
    """``GET /scans/{ref}/images``: the images and liveness images available for download."""

    __repr__ = _compact_repr

    scan_reference: str
    timestamp: _dt.datetime | str | None = None
    images: tuple[ScanImage, ...] | str = ()
    liveness_images: tuple[str, ...] | str = attrs.field(default=(), repr=_redact, metadata=_PERSONAL)
    extra: Mapping[str, Any] = _extra_field()
    problems: tuple[ValidationIssue, ...] = ()


_IMAGES_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "timestamp": ("timestamp", _timestamp),
    "images": ("images", _objects(_parse_image)),
    "livenessImages": ("liveness_images", _strings(single_text_is_item=False)),
}


def parse_scan_images(body: Mapping[str, Any] | bytes | str) -> ScanImages:
    """Parse the answer of ``GET /scans/{ref}/images``; ``images`` may be one object or an array."""
    operation = "scanImages"
    obj = _load_answer(body, operation)
    reference = _required_reference(obj, "scanReference", operation)
    problems = _Problems()
    kwargs, extra = _fields(
        _IMAGES_SPEC, {k: v for k, v in obj.items() if k != "scanReference"}, "", problems
    )
    for key in ("images", "liveness_images"):
        if kwargs.get(key) is None:
            kwargs.pop(key, None)
    return ScanImages(scan_reference=reference, **kwargs, extra=extra, problems=problems.as_tuple())


@attrs.frozen(repr=False)
class DeleteResult:
    """The outcome of ``DELETE /scans/{ref}``: the guide documents only ``200 OK`` and no body.

    When the server does send a JSON object, its ``timestamp`` is read and other keys are kept in ``extra``.
    """

    __repr__ = _compact_repr

    scan_reference: str
    timestamp: _dt.datetime | str | None = None
    extra: Mapping[str, Any] = _extra_field()


def parse_delete_result(
    scan_reference: str, body: Mapping[str, Any] | bytes | str | None = None
) -> DeleteResult:
    """Describe a successful delete. Never raises: an empty or non-JSON body is normal for this call."""
    obj: Any = body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            obj = json.loads(body) if body.strip() else None
        except (ValueError, RecursionError):
            obj = None
    if not isinstance(obj, Mapping):
        return DeleteResult(scan_reference=scan_reference)
    problems = _Problems()
    kwargs, extra = _fields({"timestamp": ("timestamp", _timestamp)}, obj, "", problems)
    return DeleteResult(scan_reference=scan_reference, **kwargs, extra=extra)
