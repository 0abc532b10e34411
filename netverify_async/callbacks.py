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
IP address and image URLs, and origin errors never include the rejected address.
"""

from __future__ import annotations

import datetime as _dt
import enum
import ipaddress
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from ._constants import (
    CALLBACK_MAX_BODY_BYTES,
    CALLBACK_MAX_FIELDS,
    CALLBACK_SOURCE_HOSTNAMES,
    CALLBACK_SOURCE_IPS,
)
from ._errors import CallbackOriginError, CallbackParseError, ConfigurationError, ValidationIssue
from ._models import IdType as IdType
from ._retrieval import (
    _EMPTY,
    _PERSONAL,
    _attrs_to_dict,
    _bool,
    _compact_repr,
    _Converter,
    _date,
    _enum,
    _enum_member,
    _extra_field,
    _fields,
    _is_absent,
    _normalise_source,
    _object,
    _objects,
    _parse_address,
    _parse_identity,
    _parse_reject_reason,
    _personal,
    _Problems,
    _redact,
    _strings,
    _text,
    _timestamp,
)
from ._retrieval import Address as Address
from ._retrieval import Gender as Gender
from ._retrieval import IdentityVerification as IdentityVerification
from ._retrieval import IdSubtype as IdSubtype
from ._retrieval import RejectReason as RejectReason
from ._retrieval import RejectReasonDescription as RejectReasonDescription
from ._retrieval import RejectReasonDetail as RejectReasonDetail
from ._retrieval import RejectReasonDetailDescription as RejectReasonDetailDescription
from ._retrieval import ScanSource as ScanSource
from ._retrieval import Similarity as Similarity
from ._retrieval import ValidityReason as ValidityReason
from ._retrieval import VerificationStatus as VerificationStatus

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

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Callback-only enums and value objects


class CallbackType(str, enum.Enum):
    """The kind of callback (``callBackType``); ID Verification callbacks say ``NETVERIFYID``."""

    NETVERIFYID = "NETVERIFYID"


class IdScanStatus(str, enum.Enum):
    """``idScanStatus``: SUCCESS when the verification was approved, ERROR otherwise."""

    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


class IdCheckResult(str, enum.Enum):
    """Result of one ``idCheck*`` field: OK when approved, ``N/A`` otherwise.

    For these fields ``N/A`` is a documented value, so it is kept as :attr:`NOT_AVAILABLE` rather than read as
    "absent"; a field Jumio did not send at all (masking) is None.
    """

    OK = "OK"
    NOT_AVAILABLE = "N/A"


class DlCarPermission(str, enum.Enum):
    """Whether the driving licence permits driving a car (``dlCarPermission``)."""

    YES = "YES"
    NO = "NO"
    NOT_READABLE = "NOT_READABLE"


@attrs.frozen(repr=False)
class DlCategory:
    """One driving-licence category (an item of ``dlCategories``); its dates are personal data."""

    __repr__ = _compact_repr

    category: str | None = None
    issue_date: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    expiry_date: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    is_readable: bool | str | None = None
    availability: str | None = None
    extra: Mapping[str, Any] = _extra_field()


_DL_CATEGORY_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "category": ("category", _text),
    "issueDate": ("issue_date", _date),
    "expiryDate": ("expiry_date", _date),
    "isReadable": ("is_readable", _bool),
    "availability": ("availability", _text),
}


def _parse_dl_category(obj: Mapping[str, Any], path: str, problems: _Problems) -> DlCategory:
    kwargs, extra = _fields(_DL_CATEGORY_SPEC, obj, path, problems)
    return DlCategory(**kwargs, extra=extra)


def _id_check(value: Any, path: str, problems: _Problems) -> IdCheckResult | str | None:
    """Like an enum field, except that ``N/A`` is a value here (only an empty value is absent)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = _text(value, path, problems) if not isinstance(value, str) else value
    if text is None:
        return None
    return _enum_member(IdCheckResult, text, path, problems)


# ----------------------------------------------------------------------------------------------------
# The callback


@attrs.frozen(repr=False)
class NetverifyCallback:
    """One ID Verification callback, typed. Every documented field has an attribute (None when absent).

    Enum-typed attributes hold the raw string when Jumio sent an undocumented value; JSON-valued attributes
    (``identity_verification``, ``reject_reason``, ``id_address``, ``dl_categories``, ``liveness_images``)
    hold the raw string when it did not decode. ``extra`` keeps every field the guide does not document, as
    sent. ``problems`` lists what could not be read as documented (field path, rule code, message; never the
    value).

    ``repr()`` shows ``<redacted>`` for personal data; :meth:`to_dict` with ``redact=True`` does the same.
    """

    __repr__ = _compact_repr

    jumio_id_scan_reference: str
    verification_status: VerificationStatus | str | None = None
    id_scan_status: IdScanStatus | str | None = None
    callback_type: CallbackType | str | None = None
    id_scan_source: ScanSource | str | None = None
    id_check_data_positions: IdCheckResult | str | None = None
    id_check_document_validation: IdCheckResult | str | None = None
    id_check_hologram: IdCheckResult | str | None = None
    id_check_mrz_code: IdCheckResult | str | None = None
    id_check_microprint: IdCheckResult | str | None = None
    id_check_security_features: IdCheckResult | str | None = None
    id_check_signature: IdCheckResult | str | None = None
    transaction_date: _dt.datetime | str | None = None
    callback_date: _dt.datetime | str | None = None
    first_attempt_date: _dt.datetime | str | None = None
    identity_verification: IdentityVerification | str | None = None
    id_type: IdType | str | None = None
    id_subtype: IdSubtype | str | None = None
    id_country: str | None = None
    reject_reason: RejectReason | str | None = None
    merchant_id_scan_reference: str | None = None
    merchant_reporting_criteria: str | None = None
    preset_country: str | None = None
    preset_id_type: IdType | str | None = None
    dl_car_permission: DlCarPermission | str | None = None
    customer_id: str | None = _personal()
    client_ip: str | None = _personal()
    id_scan_image: str | None = _personal()
    id_scan_image_face: str | None = _personal()
    id_scan_image_backside: str | None = _personal()
    liveness_images: tuple[str, ...] | str | None = _personal()
    facemap: str | None = _personal()
    id_number: str | None = _personal()
    id_first_name: str | None = _personal()
    id_last_name: str | None = _personal()
    id_dob: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    origin_dob: str | None = _personal()
    id_expiry: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    id_us_state: str | None = _personal()
    personal_number: str | None = _personal()
    id_address: Address | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    optional_data1: str | None = _personal()
    optional_data2: str | None = _personal()
    dni: str | None = _personal()
    curp: str | None = _personal()
    gender: Gender | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    nationality: str | None = _personal()
    place_of_birth: str | None = _personal()
    issuing_authority: str | None = _personal()
    issuing_date: _dt.date | str | None = attrs.field(default=None, repr=_redact, metadata=_PERSONAL)
    issuing_place: str | None = _personal()
    dl_categories: tuple[DlCategory, ...] | str | None = _personal()
    passport_number: str | None = _personal()
    duration_of_stay: str | None = _personal()
    number_of_entries: str | None = _personal()
    visa_category: str | None = _personal()
    tax_number: str | None = _personal()
    cpf: str | None = _personal()
    registration_number: str | None = _personal()
    mothers_name: str | None = _personal()
    fathers_name: str | None = _personal()
    personal_identification_number: str | None = _personal()
    rg_number: str | None = _personal()
    voter_id_number: str | None = _personal()
    issuing_number: str | None = _personal()
    #: Legacy fields, removed from the guide in 2018 but still parsed if an old account sends them.
    id_face_match: str | None = None
    id_face_liveness: bool | str | None = None
    #: Fields the guide does not document, as sent (``repr`` shows only their names).
    extra: Mapping[str, str] = _extra_field()
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

    def to_dict(self, *, redact: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict with the attribute names as keys.

        Enums become their wire values, datetimes ISO 8601 with ``Z``, dates ``YYYY-MM-DD``, tuples lists and
        nested objects dicts. With ``redact=True`` every present personal value becomes ``"<redacted>"`` and
        the values of ``extra`` (unknown, so possibly personal) are redacted too.
        """
        return _attrs_to_dict(self, redact=redact)


#: Wire name -> (attribute, converter), line by line from the callback guide's parameter table.
_CALLBACK_SPEC: Mapping[str, tuple[str, _Converter]] = {
    "callBackType": ("callback_type", _enum(CallbackType)),
    "callbackType": ("callback_type", _enum(CallbackType)),
    "verificationStatus": ("verification_status", _enum(VerificationStatus)),
    "idScanStatus": ("id_scan_status", _enum(IdScanStatus)),
    "idScanSource": ("id_scan_source", _enum(ScanSource, _normalise_source)),
    "idCheckDataPositions": ("id_check_data_positions", _id_check),
    "idCheckDocumentValidation": ("id_check_document_validation", _id_check),
    "idCheckHologram": ("id_check_hologram", _id_check),
    "idCheckMRZcode": ("id_check_mrz_code", _id_check),
    "idCheckMicroprint": ("id_check_microprint", _id_check),
    "idCheckSecurityFeatures": ("id_check_security_features", _id_check),
    "idCheckSignature": ("id_check_signature", _id_check),
    "transactionDate": ("transaction_date", _timestamp),
    "callbackDate": ("callback_date", _timestamp),
    "identityVerification": ("identity_verification", _object(_parse_identity)),
    "idType": ("id_type", _enum(IdType)),
    "idSubtype": ("id_subtype", _enum(IdSubtype)),
    "idCountry": ("id_country", _text),
    "rejectReason": ("reject_reason", _object(_parse_reject_reason)),
    "idScanImage": ("id_scan_image", _text),
    "idScanImageFace": ("id_scan_image_face", _text),
    "idScanImageBackside": ("id_scan_image_backside", _text),
    "idNumber": ("id_number", _text),
    "idFirstName": ("id_first_name", _text),
    "idLastName": ("id_last_name", _text),
    "idDob": ("id_dob", _date),
    "idExpiry": ("id_expiry", _date),
    "idUsState": ("id_us_state", _text),
    "personalNumber": ("personal_number", _text),
    "idAddress": ("id_address", _object(_parse_address)),
    "merchantIdScanReference": ("merchant_id_scan_reference", _text),
    "merchantReportingCriteria": ("merchant_reporting_criteria", _text),
    "customerId": ("customer_id", _text),
    "clientIp": ("client_ip", _text),
    "firstAttemptDate": ("first_attempt_date", _timestamp),
    "optionalData1": ("optional_data1", _text),
    "optionalData2": ("optional_data2", _text),
    "dni": ("dni", _text),
    "curp": ("curp", _text),
    "gender": ("gender", _enum(Gender)),
    "presetCountry": ("preset_country", _text),
    "presetIdType": ("preset_id_type", _enum(IdType)),
    "dlCarPermission": ("dl_car_permission", _enum(DlCarPermission)),
    "dlCategories": ("dl_categories", _objects(_parse_dl_category)),
    "nationality": ("nationality", _text),
    "passportNumber": ("passport_number", _text),
    "durationOfStay": ("duration_of_stay", _text),
    "numberOfEntries": ("number_of_entries", _text),
    "visaCategory": ("visa_category", _text),
    "originDob": ("origin_dob", _text),
    "issuingAuthority": ("issuing_authority", _text),
    "issuingDate": ("issuing_date", _date),
    "issuingPlace": ("issuing_place", _text),
    "livenessImages": ("liveness_images", _strings(single_text_is_item=False)),
    "placeOfBirth": ("place_of_birth", _text),
    "facemap": ("facemap", _text),
    "taxNumber": ("tax_number", _text),
    "cpf": ("cpf", _text),
    "registrationNumber": ("registration_number", _text),
    "mothersName": ("mothers_name", _text),
    "fathersName": ("fathers_name", _text),
    "personalIdentificationNumber": ("personal_identification_number", _text),
    "rgNumber": ("rg_number", _text),
    "voterIdNumber": ("voter_id_number", _text),
    "issuingNumber": ("issuing_number", _text),
    "idFaceMatch": ("id_face_match", _text),
    "idFaceLiveness": ("id_face_liveness", _bool),
}

_REFERENCE_FIELD = "jumioIdScanReference"
#: The documented shape of a scan reference: up to 36 characters, in practice a UUID.
_REFERENCE_RE = re.compile(r"[A-Za-z0-9-]{1,36}", re.ASCII)
#: C0/C1 control characters: a form body is text; these only appear in binary data.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
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
    pairs = _form_pairs(body)
    problems = _Problems()
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key not in fields:
            fields[key] = value
        elif fields[key] != value:
            problems.add(
                key, "duplicate_field", "sent more than once with different values; the first is used"
            )

    reference = fields.get(_REFERENCE_FIELD)
    if reference is None or _is_absent(reference):
        raise CallbackParseError(
            f"not an ID Verification callback: '{_REFERENCE_FIELD}' is missing or empty"
            + _not_a_callback_hint(fields)
        )
    if not reference.isprintable() or any(ch.isspace() for ch in reference):
        raise CallbackParseError(f"'{_REFERENCE_FIELD}' contains whitespace or control characters")
    if _REFERENCE_RE.fullmatch(reference) is None:
        problems.add(
            _REFERENCE_FIELD, "unexpected_format", "is not up to 36 letters, digits and hyphens as documented"
        )

    kwargs: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for key, value in fields.items():
        if key == _REFERENCE_FIELD:
            continue
        entry = _CALLBACK_SPEC.get(key)
        if entry is None:
            extra[key] = value
            continue
        attribute, convert = entry
        if attribute in kwargs:  # callBackType and callbackType both present
            problems.add(key, "duplicate_field", "another spelling of this field was already read; ignored")
            extra[key] = value
            continue
        kwargs[attribute] = convert(value, key, problems)
    return NetverifyCallback(
        jumio_id_scan_reference=reference,
        **kwargs,
        extra=MappingProxyType(extra) if extra else _EMPTY,
        problems=problems.as_tuple(),
    )


# ----------------------------------------------------------------------------------------------------
# Origin verification

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: An async function from a host name to the addresses it resolves to (as text).
Resolver = Callable[[str], Awaitable[Iterable[str]]]

_REGION_ALIASES = {"US": "US", "AMER": "US", "EU": "EU", "EMEA": "EU", "SGP": "SGP", "APAC": "SGP"}
#: After a failed lookup, try again this soon (seconds) rather than after the full TTL.
_DNS_RETRY_AFTER_FAILURE_S = 30.0


def _unmap(address: _IPAddress) -> _IPAddress:
    """``::ffff:1.2.3.4`` is the IPv4 address 1.2.3.4 seen through an IPv6 socket."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_ip(text: str) -> _IPAddress | None:
    """An address from a socket peer or a forwarded-for hop (``[v6]:port``, ``v4:port`` allowed), or None."""
    candidate = text.strip()
    if candidate.startswith("["):
        end = candidate.find("]")
        if end == -1:
            return None
        port = candidate[end + 1 :]
        if port and not (port.startswith(":") and port[1:].isascii() and port[1:].isdigit()):
            return None
        candidate = candidate[1:end]
    elif candidate.count(":") == 1:
        host, _, port = candidate.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
        candidate = host
    try:
        return _unmap(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _as_network(entry: str | _IPAddress | _IPNetwork, what: str) -> _IPNetwork:
    try:
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            network: _IPNetwork = entry
        elif isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            network = ipaddress.ip_network(_unmap(entry))
        else:
            network = ipaddress.ip_network(entry.strip(), strict=False)
    except (ValueError, TypeError, AttributeError):
        raise ConfigurationError(f"{what}: {entry!r} is not an IP address or network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class _AddressSet:
    """Exact addresses in a set (the common case) plus any wider networks."""

    __slots__ = ("addresses", "networks")

    def __init__(self, networks: Iterable[_IPNetwork]) -> None:
        singles: set[_IPAddress] = set()
        wider: list[_IPNetwork] = []
        for network in networks:
            if network.num_addresses == 1:
                singles.add(network.network_address)
            else:
                wider.append(network)
        self.addresses = frozenset(singles)
        self.networks = tuple(wider)

    def __contains__(self, address: _IPAddress) -> bool:
        if address in self.addresses:
            return True
        return any(address.version == net.version and address in net for net in self.networks)

    def __len__(self) -> int:
        return len(self.addresses) + len(self.networks)


async def resolve_with_anyio(hostname: str) -> list[str]:
    """The default resolver: the addresses of ``hostname`` via :func:`anyio.getaddrinfo`."""
    import socket

    import anyio

    infos = await anyio.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class CallbackOriginVerifier:
    """Accept callbacks only from Jumio's callback addresses.

    By default the allowlist is the documented address list of the chosen ``regions`` (``"US"``, ``"EU"``,
    ``"SGP"``; ``"AMER"``, ``"EMEA"`` and ``"APAC"`` are accepted as aliases), including the addresses Jumio
    added later. Pass ``allowed`` (addresses or networks) to replace it.

    Behind a reverse proxy, list the proxy's addresses or networks in ``trusted_proxies`` (e.g.
    ``"10.0.0.0/8"``). ``X-Forwarded-For`` is then read **only** when the direct peer is one of them, and the
    origin is the right-most address in it that is not itself a trusted proxy. Without trusted proxies the
    header is ignored, so a client cannot claim to be Jumio by sending it.

    With ``resolve_hostnames=True`` the callback host names of the regions (``callback.amer-1.jumio.ai`` ...)
    are also resolved, asynchronously, in :meth:`refresh` / :meth:`verify_async`, and cached for ``dns_ttl``
    seconds. A failed lookup keeps the earlier answer and is retried after 30 seconds. ``resolver`` replaces
    the DNS lookup (an async function from host name to addresses), which is how tests run without a network.

    Nothing about a refused address is logged or put in the error message: it may be an end user's.
    """

    def __init__(
        self,
        allowed: Iterable[str | _IPAddress | _IPNetwork] | None = None,
        *,
        regions: Iterable[str] = ("US", "EU", "SGP"),
        trusted_proxies: Iterable[str | _IPAddress | _IPNetwork] = (),
        resolve_hostnames: bool = False,
        hostnames: Iterable[str] | None = None,
        resolver: Resolver | None = None,
        dns_ttl: float = 300.0,
        dns_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(regions, str):
            regions = (regions,)
        chosen: list[str] = []
        for region in regions:
            canonical = _REGION_ALIASES.get(str(region).strip().upper())
            if canonical is None:
                raise ConfigurationError(
                    f"regions: {region!r} is not a Jumio data center (use {', '.join(_REGION_ALIASES)})"
                )
            if canonical not in chosen:
                chosen.append(canonical)
        self.regions: tuple[str, ...] = tuple(chosen)
        if isinstance(allowed, str):
            allowed = (allowed,)
        if allowed is None:
            entries: list[str | _IPAddress | _IPNetwork] = [
                ip for r in self.regions for ip in CALLBACK_SOURCE_IPS[r]
            ]
        else:
            entries = list(allowed)
        self._static = _AddressSet(_as_network(entry, "allowed") for entry in entries)
        if isinstance(trusted_proxies, str):
            trusted_proxies = (trusted_proxies,)
        self._proxies = _AddressSet(_as_network(entry, "trusted_proxies") for entry in trusted_proxies)

        self.resolve_hostnames = bool(resolve_hostnames)
        if not self.resolve_hostnames:
            self._hostnames: tuple[str, ...] = ()
        elif hostnames is not None:
            self._hostnames = (hostnames,) if isinstance(hostnames, str) else tuple(hostnames)
        else:
            self._hostnames = tuple(h for r in self.regions for h in CALLBACK_SOURCE_HOSTNAMES[r])
        if not len(self._static) and not self._hostnames:
            raise ConfigurationError(
                "allowed: the allowlist is empty and no host names are resolved, so no "
                "callback would ever be accepted"
            )
        if not dns_ttl > 0:
            raise ConfigurationError("dns_ttl: must be a positive number of seconds")
        if not dns_timeout > 0:
            raise ConfigurationError("dns_timeout: must be a positive number of seconds")
        self._resolver: Resolver = resolver if resolver is not None else resolve_with_anyio
        self._dns_ttl = float(dns_ttl)
        self._dns_timeout = float(dns_timeout)
        self._clock = clock
        self._resolved: dict[str, frozenset[_IPAddress]] = {}
        self._expires: dict[str, float] = {}
        self._dynamic: frozenset[_IPAddress] = frozenset()
        self._lock: Any = None

    def __repr__(self) -> str:
        return (
            f"CallbackOriginVerifier(regions={self.regions!r}, allowed={len(self._static)} entries, "
            f"trusted_proxies={len(self._proxies)} entries, resolve_hostnames={self.resolve_hostnames}, "
            f"resolved={len(self._dynamic)} addresses)"
        )

    @property
    def hostnames(self) -> tuple[str, ...]:
        """The host names resolved when ``resolve_hostnames`` is on (empty otherwise)."""
        return self._hostnames

    @property
    def resolved_addresses(self) -> frozenset[_IPAddress]:
        """The addresses found by the most recent successful lookups (empty until :meth:`refresh` ran)."""
        return self._dynamic

    def _origin(self, peer_ip: str | None, forwarded_for: str | None) -> tuple[_IPAddress | None, str]:
        """The address the request came from, and a reason code when it cannot be told."""
        if not peer_ip:
            return None, "no_peer"
        peer = _parse_ip(peer_ip)
        if peer is None:
            return None, "bad_peer"
        if not len(self._proxies) or peer not in self._proxies or not forwarded_for:
            return peer, ""
        hops = [hop for hop in (part.strip() for part in forwarded_for.split(",")) if hop]
        if not hops:
            return peer, ""
        parsed: list[_IPAddress] = []
        for hop in reversed(hops):
            address = _parse_ip(hop)
            if address is None:
                return None, "malformed_forwarded_for"
            if address not in self._proxies:
                return address, ""
            parsed.append(address)
        # Every hop is one of our proxies: the request started inside our own network.
        return parsed[-1], ""

    def _allowed(self, address: _IPAddress) -> bool:
        return address in self._static or address in self._dynamic

    def is_allowed(self, peer_ip: str | None, forwarded_for: str | None = None) -> bool:
        """Whether a request from ``peer_ip`` (the ASGI ``client`` host) may be a Jumio callback.

        ``forwarded_for`` is the ``X-Forwarded-For`` header (join repeated headers with ``", "`` in order); it
        is used only when ``peer_ip`` is a trusted proxy. Uses the addresses resolved so far; call
        :meth:`is_allowed_async` to refresh host names first.
        """
        origin, _ = self._origin(peer_ip, forwarded_for)
        return origin is not None and self._allowed(origin)

    def verify(self, peer_ip: str | None, forwarded_for: str | None = None) -> None:
        """Like :meth:`is_allowed`, but raise :class:`~netverify_async.CallbackOriginError` when not allowed.

        The message says why (no peer address, malformed X-Forwarded-For, not on the allowlist) but never
        includes the address.
        """
        origin, reason = self._origin(peer_ip, forwarded_for)
        if origin is not None and self._allowed(origin):
            return
        logger.debug("callback origin refused (%s)", reason or "not_allowed")
        if reason in ("no_peer", "bad_peer"):
            raise CallbackOriginError("callback refused: the peer address is missing or not an IP address")
        if reason == "malformed_forwarded_for":
            raise CallbackOriginError("callback refused: X-Forwarded-For from a trusted proxy is malformed")
        raise CallbackOriginError(
            "callback refused: the sender is not on the allowlist of Jumio callback addresses"
        )

    async def is_allowed_async(self, peer_ip: str | None, forwarded_for: str | None = None) -> bool:
        """:meth:`is_allowed` after refreshing the resolved host names when their TTL has run out."""
        await self.refresh()
        return self.is_allowed(peer_ip, forwarded_for)

    async def verify_async(self, peer_ip: str | None, forwarded_for: str | None = None) -> None:
        """:meth:`verify` after refreshing the resolved host names when their TTL has run out."""
        await self.refresh()
        self.verify(peer_ip, forwarded_for)

    def _due(self) -> list[str]:
        now = self._clock()
        return [name for name in self._hostnames if self._expires.get(name, float("-inf")) <= now]

    async def refresh(self, *, force: bool = False) -> None:
        """Resolve the callback host names whose cached answer is older than ``dns_ttl`` (all with ``force``).

        Does nothing when ``resolve_hostnames`` is off. Never raises for a failed lookup: the earlier
        addresses stay in use and a warning (naming only the host) is logged.
        """
        if not self._hostnames or (not force and not self._due()):
            return
        import anyio

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            due = list(self._hostnames) if force else self._due()
            for hostname in due:
                await self._resolve(hostname)
            self._dynamic = frozenset().union(*self._resolved.values())

    async def _resolve(self, hostname: str) -> None:
        import anyio

        now = self._clock()
        try:
            with anyio.fail_after(self._dns_timeout):
                answers = await self._resolver(hostname)
            found = frozenset(a for a in (_parse_ip(str(answer)) for answer in answers) if a is not None)
        except Exception:  # a DNS failure must not take the callback endpoint down
            logger.warning(
                "could not resolve callback host %s; keeping the earlier addresses", hostname, exc_info=True
            )
            self._expires[hostname] = now + min(self._dns_ttl, _DNS_RETRY_AFTER_FAILURE_S)
            return
        if not found:
            logger.warning("callback host %s resolved to no address; keeping the earlier addresses", hostname)
            self._expires[hostname] = now + min(self._dns_ttl, _DNS_RETRY_AFTER_FAILURE_S)
            return
        self._resolved[hostname] = found
        self._expires[hostname] = now + self._dns_ttl
