"""Receive Jumio's ID Verification callbacks: parse the form body and check where it came from.

Jumio POSTs the result of every verification to your callback URL as an ``application/x-www-form-urlencoded``
form. The callback carries no signature; Jumio's advice is to accept it only from their published addresses.
So a receiver does three things, in this order:

1. check the sender with :class:`CallbackOriginVerifier` (the ASGI client address plus ``X-Forwarded-For``),
2. store the raw body and answer ``200 OK`` at once (Jumio asks for a quick answer and validation afterwards),
3. turn the body into a :class:`NetverifyCallback` with :func:`parse_callback`.

Parsing is tolerant, because the guide and real traffic disagree: undocumented values are kept as raw strings,
undocumented fields are kept in ``extra``, ``N/A`` and empty values mean "absent", JSON that does not decode
is kept as the raw string, and each such case is listed in ``problems``. The only failure is
:class:`~netverify_async.CallbackParseError`, for a body that is not an ID Verification callback at all.

The minimal required set is one field: ``jumioIdScanReference``. Without it a callback cannot be matched to
any scan, so nothing useful can be done with it. ``verificationStatus`` is not required: a callback without it
(for example the additional "images received" callback of ``callbackGranularity=onAllSteps``, whose content
the guide does not describe) parses with ``verification_status=None`` and ``is_final`` False.

Nothing here logs or shows personal data: ``repr()`` hides names, dates, numbers, the address, the end user's
IP address and image URLs, and origin errors never include the rejected address. The sender check lives in
:mod:`netverify_async._origin`; the enums and value objects shared with the retrieval API in
:mod:`netverify_async._results`.
"""

from __future__ import annotations

import datetime as _dt
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._constants import (
    CALLBACK_MAX_BODY_BYTES,
    CALLBACK_MAX_FIELDS,
    DOCUMENTED_SCAN_REFERENCE_LENGTH,
    SCAN_REFERENCE_PATTERN,
)
from ._convert import Answer, extra_field, resolve_field_types, wire
from ._enums import IdType as IdType
from ._enums import TextEnum
from ._errors import CallbackParseError, ValidationIssue
from ._lenient import is_absent, read
from ._origin import CallbackOriginVerifier as CallbackOriginVerifier
from ._results import Address as Address
from ._results import Gender as Gender
from ._results import IdentityVerification as IdentityVerification
from ._results import IdSubtype as IdSubtype
from ._results import RejectReason as RejectReason
from ._results import RejectReasonDescription as RejectReasonDescription
from ._results import RejectReasonDetail as RejectReasonDetail
from ._results import RejectReasonDetailDescription as RejectReasonDetailDescription
from ._results import ScanSource as ScanSource
from ._results import Similarity as Similarity
from ._results import ValidityReason as ValidityReason
from ._results import VerificationStatus as VerificationStatus

__all__ = [
    "Address",
    "CallbackOriginVerifier",
    "CallbackType",
    "DlCarPermission",
    "DlCategory",
    "Gender",
    "IdCheckResult",
    "IdScanStatus",
    "IdSubtype",
    "IdType",
    "IdentityVerification",
    "NetverifyCallback",
    "RejectReason",
    "RejectReasonDescription",
    "RejectReasonDetail",
    "RejectReasonDetailDescription",
    "ScanSource",
    "Similarity",
    "ValidityReason",
    "VerificationStatus",
    "parse_callback",
]

# ----------------------------------------------------------------------------------------------------
# Callback-only enums and value objects


class CallbackType(TextEnum):
    """The kind of callback (``callBackType``); ID Verification callbacks say ``NETVERIFYID``."""

    NETVERIFYID = "NETVERIFYID"


class IdScanStatus(TextEnum):
    """``idScanStatus``: SUCCESS when the verification was approved, ERROR otherwise."""

    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


class IdCheckResult(TextEnum):
    """Result of one ``idCheck*`` field: OK when approved, ``N/A`` otherwise.

    For these fields ``N/A`` is a documented value, so it is kept as :attr:`NOT_AVAILABLE` rather than read as
    "absent" (an enum that documents ``N/A`` always reads it so); a field Jumio did not send at all (masking)
    is None.
    """

    OK = "OK"
    NOT_AVAILABLE = "N/A"


class DlCarPermission(TextEnum):
    """Whether the driving licence permits driving a car (``dlCarPermission``)."""

    YES = "YES"
    NO = "NO"
    NOT_READABLE = "NOT_READABLE"


@attrs.frozen(repr=False)
class DlCategory(Answer):
    """One driving-licence category (an item of ``dlCategories``); its dates are personal data."""

    category: str | None = attrs.field(default=None, metadata=wire("category"))
    issue_date: _dt.date | str | None = attrs.field(default=None, metadata=wire("issueDate", personal=True))
    expiry_date: _dt.date | str | None = attrs.field(default=None, metadata=wire("expiryDate", personal=True))
    is_readable: bool | str | None = attrs.field(default=None, metadata=wire("isReadable"))
    availability: str | None = attrs.field(default=None, metadata=wire("availability"))
    extra: Mapping[str, Any] = extra_field()


# ----------------------------------------------------------------------------------------------------
# The callback


@attrs.frozen(repr=False)
class NetverifyCallback(Answer):
    """One ID Verification callback, typed. Every documented field has an attribute (None when absent).

    Enum-typed attributes hold the raw string when Jumio sent an undocumented value; JSON-valued attributes
    (``identity_verification``, ``reject_reason``, ``id_address``, ``dl_categories``, ``liveness_images``)
    hold the raw string when it did not decode. ``extra`` keeps every field the guide does not document, as
    sent. ``problems`` lists what could not be read as documented (field path, rule code, message; never the
    value).

    ``repr()`` shows ``<redacted>`` for personal data; :meth:`to_dict` with ``redact=True`` does the same.
    """

    jumio_id_scan_reference: str
    verification_status: VerificationStatus | str | None = attrs.field(
        default=None, metadata=wire("verificationStatus")
    )
    id_scan_status: IdScanStatus | str | None = attrs.field(default=None, metadata=wire("idScanStatus"))
    callback_type: CallbackType | str | None = attrs.field(
        default=None, metadata=wire("callBackType", also=["callbackType"])
    )
    id_scan_source: ScanSource | str | None = attrs.field(default=None, metadata=wire("idScanSource"))
    id_check_data_positions: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckDataPositions")
    )
    id_check_document_validation: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckDocumentValidation")
    )
    id_check_hologram: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckHologram")
    )
    id_check_mrz_code: IdCheckResult | str | None = attrs.field(default=None, metadata=wire("idCheckMRZcode"))
    id_check_microprint: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckMicroprint")
    )
    id_check_security_features: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckSecurityFeatures")
    )
    id_check_signature: IdCheckResult | str | None = attrs.field(
        default=None, metadata=wire("idCheckSignature")
    )
    transaction_date: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("transactionDate"))
    callback_date: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("callbackDate"))
    first_attempt_date: _dt.datetime | str | None = attrs.field(
        default=None, metadata=wire("firstAttemptDate")
    )
    identity_verification: IdentityVerification | str | None = attrs.field(
        default=None, metadata=wire("identityVerification")
    )
    id_type: IdType | str | None = attrs.field(default=None, metadata=wire("idType"))
    id_subtype: IdSubtype | str | None = attrs.field(default=None, metadata=wire("idSubtype"))
    id_country: str | None = attrs.field(default=None, metadata=wire("idCountry"))
    reject_reason: RejectReason | str | None = attrs.field(default=None, metadata=wire("rejectReason"))
    merchant_id_scan_reference: str | None = attrs.field(
        default=None, metadata=wire("merchantIdScanReference")
    )
    merchant_reporting_criteria: str | None = attrs.field(
        default=None, metadata=wire("merchantReportingCriteria")
    )
    preset_country: str | None = attrs.field(default=None, metadata=wire("presetCountry"))
    preset_id_type: IdType | str | None = attrs.field(default=None, metadata=wire("presetIdType"))
    dl_car_permission: DlCarPermission | str | None = attrs.field(
        default=None, metadata=wire("dlCarPermission")
    )
    customer_id: str | None = attrs.field(default=None, metadata=wire("customerId", personal=True))
    client_ip: str | None = attrs.field(default=None, metadata=wire("clientIp", personal=True))
    id_scan_image: str | None = attrs.field(default=None, metadata=wire("idScanImage", personal=True))
    id_scan_image_face: str | None = attrs.field(
        default=None, metadata=wire("idScanImageFace", personal=True)
    )
    id_scan_image_backside: str | None = attrs.field(
        default=None, metadata=wire("idScanImageBackside", personal=True)
    )
    liveness_images: tuple[str, ...] | str | None = attrs.field(
        default=None, metadata=wire("livenessImages", personal=True)
    )
    facemap: str | None = attrs.field(default=None, metadata=wire("facemap", personal=True))
    id_number: str | None = attrs.field(default=None, metadata=wire("idNumber", personal=True))
    id_first_name: str | None = attrs.field(default=None, metadata=wire("idFirstName", personal=True))
    id_last_name: str | None = attrs.field(default=None, metadata=wire("idLastName", personal=True))
    id_dob: _dt.date | str | None = attrs.field(default=None, metadata=wire("idDob", personal=True))
    origin_dob: str | None = attrs.field(default=None, metadata=wire("originDob", personal=True))
    id_expiry: _dt.date | str | None = attrs.field(default=None, metadata=wire("idExpiry", personal=True))
    id_us_state: str | None = attrs.field(default=None, metadata=wire("idUsState", personal=True))
    personal_number: str | None = attrs.field(default=None, metadata=wire("personalNumber", personal=True))
    id_address: Address | str | None = attrs.field(default=None, metadata=wire("idAddress", personal=True))
    optional_data1: str | None = attrs.field(default=None, metadata=wire("optionalData1", personal=True))
    optional_data2: str | None = attrs.field(default=None, metadata=wire("optionalData2", personal=True))
    dni: str | None = attrs.field(default=None, metadata=wire("dni", personal=True))
    curp: str | None = attrs.field(default=None, metadata=wire("curp", personal=True))
    gender: Gender | str | None = attrs.field(default=None, metadata=wire("gender", personal=True))
    nationality: str | None = attrs.field(default=None, metadata=wire("nationality", personal=True))
    place_of_birth: str | None = attrs.field(default=None, metadata=wire("placeOfBirth", personal=True))
    issuing_authority: str | None = attrs.field(
        default=None, metadata=wire("issuingAuthority", personal=True)
    )
    issuing_date: _dt.date | str | None = attrs.field(
        default=None, metadata=wire("issuingDate", personal=True)
    )
    issuing_place: str | None = attrs.field(default=None, metadata=wire("issuingPlace", personal=True))
    dl_categories: tuple[DlCategory, ...] | str | None = attrs.field(
        default=None, metadata=wire("dlCategories", personal=True)
    )
    passport_number: str | None = attrs.field(default=None, metadata=wire("passportNumber", personal=True))
    duration_of_stay: str | None = attrs.field(default=None, metadata=wire("durationOfStay", personal=True))
    number_of_entries: str | None = attrs.field(default=None, metadata=wire("numberOfEntries", personal=True))
    visa_category: str | None = attrs.field(default=None, metadata=wire("visaCategory", personal=True))
    tax_number: str | None = attrs.field(default=None, metadata=wire("taxNumber", personal=True))
    cpf: str | None = attrs.field(default=None, metadata=wire("cpf", personal=True))
    registration_number: str | None = attrs.field(
        default=None, metadata=wire("registrationNumber", personal=True)
    )
    mothers_name: str | None = attrs.field(default=None, metadata=wire("mothersName", personal=True))
    fathers_name: str | None = attrs.field(default=None, metadata=wire("fathersName", personal=True))
    personal_identification_number: str | None = attrs.field(
        default=None, metadata=wire("personalIdentificationNumber", personal=True)
    )
    rg_number: str | None = attrs.field(default=None, metadata=wire("rgNumber", personal=True))
    voter_id_number: str | None = attrs.field(default=None, metadata=wire("voterIdNumber", personal=True))
    issuing_number: str | None = attrs.field(default=None, metadata=wire("issuingNumber", personal=True))
    #: Legacy fields, removed from the guide in 2018 but still parsed if an old account sends them.
    id_face_match: str | None = attrs.field(default=None, metadata=wire("idFaceMatch"))
    id_face_liveness: bool | str | None = attrs.field(default=None, metadata=wire("idFaceLiveness"))
    #: Fields the guide does not document, as sent (``repr`` shows only their names).
    extra: Mapping[str, str] = extra_field()
    problems: tuple[ValidationIssue, ...] = ()

    @property
    def is_approved(self) -> bool:
        """True when the verification status is APPROVED_VERIFIED."""
        return self.verification_status is VerificationStatus.APPROVED_VERIFIED

    @property
    def is_final(self) -> bool:
        """True when the callback carries a verification status (the result of the verification)."""
        return self.verification_status is not None

    @property
    def reject_reason_codes(self) -> tuple[str, ...]:
        """Every reject code: the main code first, then each detail code (``("100", "1001", "1004")``).

        Empty when there is no reject reason, or when it could not be decoded.
        """
        return self.reject_reason.codes if isinstance(self.reject_reason, RejectReason) else ()


resolve_field_types(DlCategory, NetverifyCallback)


# ----------------------------------------------------------------------------------------------------
# The form

_REFERENCE_FIELD = "jumioIdScanReference"
#: C0/C1 control characters: a form body is text; these only appear in binary data.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: A '%' not followed by two hexadecimal digits: malformed percent-encoding (RFC 3986 section 2.1).
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_FormBody = bytes | bytearray | memoryview | str | Mapping[str, str | Sequence[str]]


def _short(name: str) -> str:
    """A field name safe to put in an error message (bounded, printable)."""
    shown = name if len(name) <= 60 else name[:57] + "..."
    return repr(shown)


def _decode_form_text(text: str) -> list[tuple[str, str]]:
    body = text.strip()
    if body.startswith(("{", "[")):
        raise CallbackParseError(
            "the body looks like JSON; a Jumio callback is application/x-www-form-urlencoded"
        )
    if _CONTROL_CHARS.search(body) is not None:
        raise CallbackParseError("the body contains control characters, so it is not a form-encoded callback")
    if _BAD_PERCENT.search(body) is not None:  # urllib would keep it as literal text; the value is not quoted
        raise CallbackParseError(
            "the body has malformed percent-encoding: every '%' must be followed by two hexadecimal digits"
        )
    try:
        return urllib.parse.parse_qsl(
            body,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=CALLBACK_MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise CallbackParseError("the body's percent-encoding does not decode as UTF-8") from None
    except ValueError:
        raise CallbackParseError(f"the body has more than {CALLBACK_MAX_FIELDS} fields") from None


def _mapping_pairs(body: Mapping[Any, Any]) -> list[tuple[str, str]]:
    if len(body) > CALLBACK_MAX_FIELDS:
        raise CallbackParseError(f"the form has more than {CALLBACK_MAX_FIELDS} fields")
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        if not isinstance(key, str):
            raise CallbackParseError(f"form field names must be text, got {type(key).__name__}")
        if isinstance(value, str):
            pairs.append((key, value))
        elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
            for item in value:
                if not isinstance(item, str):
                    raise CallbackParseError(
                        f"field {_short(key)}: form values must be text, got {type(item).__name__}"
                    )
                pairs.append((key, item))
        else:
            raise CallbackParseError(
                f"field {_short(key)}: form values must be text, got {type(value).__name__}"
            )
    return pairs


def _form_pairs(body: _FormBody) -> list[tuple[str, str]]:
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        if len(raw) > CALLBACK_MAX_BODY_BYTES:
            raise CallbackParseError(f"the body is larger than {CALLBACK_MAX_BODY_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CallbackParseError(
                "the body is not UTF-8 text, so it is not a form-encoded callback"
            ) from None
        return _decode_form_text(text)
    if isinstance(body, str):
        if len(body) > CALLBACK_MAX_BODY_BYTES:
            raise CallbackParseError(f"the body is longer than {CALLBACK_MAX_BODY_BYTES} characters")
        return _decode_form_text(body)
    if isinstance(body, Mapping):
        return _mapping_pairs(body)
    raise TypeError(
        f"parse_callback() takes bytes, str or a mapping of form fields, not {type(body).__name__}"
    )


def _not_a_callback_hint(fields: Mapping[str, str]) -> str:
    if "transactionReference" in fields:
        return " (it looks like an Authentication callback, which this parser does not handle)"
    if "scanReference" in fields and "document" in fields:
        return " (it looks like a Document Verification callback, which this parser does not handle)"
    return ""


def parse_callback(body: _FormBody) -> NetverifyCallback:
    """Parse one ID Verification callback.

    ``body`` is the raw ``application/x-www-form-urlencoded`` request body (bytes or str), or a form that is
    already decoded: a mapping of field name to a value or a sequence of values.

    Raises :class:`~netverify_async.CallbackParseError` only when the body is not a callback at all: not
    UTF-8, control characters, JSON instead of a form, bad percent-encoding, too large, or no usable
    ``jumioIdScanReference``. Everything else is read tolerantly (see the module documentation) and never
    fails. A field sent more than once keeps its first value (and is noted in ``problems`` when the values
    differ). Raises ``TypeError`` for an argument of another type.
    """
    problems: list[ValidationIssue] = []
    fields: dict[str, str] = {}
    for key, value in _form_pairs(body):
        if key not in fields:
            fields[key] = value
        elif fields[key] != value:
            problems.append(
                ValidationIssue(
                    key, "duplicate_field", "sent more than once with different values; the first is used"
                )
            )

    reference = fields.get(_REFERENCE_FIELD)
    if reference is None or is_absent(reference):
        raise CallbackParseError(
            f"not an ID Verification callback: '{_REFERENCE_FIELD}' is missing or empty"
            + _not_a_callback_hint(fields)
        )
    if not reference.isprintable() or any(ch.isspace() for ch in reference):
        raise CallbackParseError(f"'{_REFERENCE_FIELD}' contains whitespace or control characters")
    if (
        SCAN_REFERENCE_PATTERN.fullmatch(reference) is None
        or len(reference) > DOCUMENTED_SCAN_REFERENCE_LENGTH
    ):
        problems.append(
            ValidationIssue(
                _REFERENCE_FIELD,
                "unexpected_format",
                f"is longer than the documented {DOCUMENTED_SCAN_REFERENCE_LENGTH} characters or has characters "
                "other than ASCII letters, digits, '-' and '_'",
            )
        )
    return read(
        fields,
        NetverifyCallback,
        skip=[_REFERENCE_FIELD],
        problems=problems,
        jumio_id_scan_reference=reference,
    )
