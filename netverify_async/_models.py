"""Value objects for the performNetverify request and its response.

All models are frozen, slotted attrs classes. Python-side names are snake_case; each field's wire name
(camelCase, exactly as the API spells it) and whether it is personal data are in its metadata, which
:mod:`netverify_async._convert` reads in both directions. A :class:`NetverifyRequest` validates itself on
construction and raises :class:`~netverify_async.RequestValidationError` listing every broken rule.

``repr()`` never shows image bytes or personal data (names, numbers, dates of birth, IP addresses).

The enums live in :mod:`._enums` and the request's parts (images, consent) in :mod:`._parts`; they are
re-exported here, the one module the rest of the library imports models from.
"""

from __future__ import annotations

import datetime as _dt
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from . import _convert
from ._constants import MAX_SCAN_REFERENCE_LENGTH, SCAN_REFERENCE_PATTERN
from ._convert import hide_personal, resolve_field_types, wire
from ._enums import CallbackGranularity as CallbackGranularity
from ._enums import ConsentObtained as ConsentObtained
from ._enums import EnabledField as EnabledField
from ._enums import IdType as IdType
from ._enums import ImageRole as ImageRole
from ._enums import MimeType as MimeType
from ._errors import NetverifyWarning, RequestValidationError, ResponseError, ValidationIssue
from ._parts import Consent as Consent
from ._parts import Image as Image
from ._parts import UserConsent as UserConsent
from ._parts import UserLocation as UserLocation
from ._parts import member_or_value
from ._parts import sniff_mime_type as sniff_mime_type
from ._validation import (
    deferred_validation,
    normalize_callback_url,
    request_issues,
    request_warnings,
    validate_request,
)

__all__ = [
    "CallbackGranularity",
    "Consent",
    "ConsentObtained",
    "EnabledField",
    "IdType",
    "Image",
    "ImageRole",
    "MimeType",
    "NetverifyRequest",
    "ScanReceipt",
    "UserConsent",
    "UserLocation",
]


# Named converters (one per field type) so that type checkers see the accepted argument types.


def _to_id_type(value: IdType | str) -> IdType:
    return member_or_value(IdType, value)  # type: ignore[no-any-return]


def _to_granularity(value: CallbackGranularity | str | None) -> CallbackGranularity | None:
    return member_or_value(CallbackGranularity, value)  # type: ignore[no-any-return]


def _to_enabled_fields(value: Iterable[EnabledField | str] | None) -> tuple[EnabledField, ...] | None:
    """Any iterable of fields (not a bare string) becomes a tuple; other values are kept for validation."""
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]
    return tuple(member_or_value(EnabledField, v) for v in value)


def _to_callback_url(value: str | None) -> str | None:
    """Store a callback URL with an internationalised host name converted to IDNA punycode."""
    return normalize_callback_url(value)  # type: ignore[no-any-return]


def _covered(path: str, broken: set[str]) -> bool:
    """True when a structural issue already explains a semantic one at ``path``."""
    return any(path == b or path.startswith(b + ".") for b in broken)


@attrs.frozen(field_transformer=hide_personal)
class NetverifyRequest:
    """The body of one performNetverify call. Validated on construction (every rule at once).

    Required: ``merchant_id_scan_reference``, ``frontside_image``, ``country``, ``id_type``. String enum
    values (``"PASSPORT"``, ``"idFaceMatch"``, ...) are accepted and converted. A ``callback_url`` with an
    internationalised host name is stored with the host converted to IDNA punycode.
    """

    merchant_id_scan_reference: str = attrs.field(metadata=wire("merchantIdScanReference"))
    frontside_image: Image = attrs.field(metadata=wire(ImageRole.FRONT.wire_key))
    country: str = attrs.field(metadata=wire("country"))
    id_type: IdType = attrs.field(converter=_to_id_type, metadata=wire("idType"))
    face_image: Image | None = attrs.field(default=None, metadata=wire(ImageRole.FACE.wire_key))
    backside_image: Image | None = attrs.field(default=None, metadata=wire(ImageRole.BACK.wire_key))
    enabled_fields: tuple[EnabledField, ...] | None = attrs.field(
        default=None, converter=_to_enabled_fields, metadata=wire("enabledFields", separator=",")
    )
    merchant_reporting_criteria: str | None = attrs.field(
        default=None, metadata=wire("merchantReportingCriteria")
    )
    customer_id: str | None = attrs.field(default=None, metadata=wire("customerId"))
    callback_url: str | None = attrs.field(
        default=None, converter=_to_callback_url, metadata=wire("callbackUrl")
    )
    first_name: str | None = attrs.field(default=None, metadata=wire("firstName", personal=True))
    last_name: str | None = attrs.field(default=None, metadata=wire("lastName", personal=True))
    us_state: str | None = attrs.field(default=None, metadata=wire("usState", personal=True))
    expiry: _dt.date | None = attrs.field(default=None, metadata=wire("expiry", personal=True))
    number: str | None = attrs.field(default=None, metadata=wire("number", personal=True))
    dob: _dt.date | None = attrs.field(default=None, metadata=wire("dob", personal=True))
    callback_granularity: CallbackGranularity | None = attrs.field(
        default=None, converter=_to_granularity, metadata=wire("callbackGranularity")
    )
    personal_number: str | None = attrs.field(default=None, metadata=wire("personalNumber", personal=True))
    user_consent: UserConsent | None = attrs.field(default=None, metadata=wire("userConsent"))

    def __attrs_post_init__(self) -> None:
        validate_request(self)

    @property
    def images(self) -> dict[str, Image]:
        """The images present, keyed by their role, front first. The keys are :class:`ImageRole` members, which
        are also the plain strings ``"front"``, ``"back"`` and ``"face"`` (equal, same hash)."""
        found = ((role, getattr(self, role.attribute)) for role in ImageRole)
        return {role: img for role, img in found if img is not None}

    def replace_images(self, **by_role: Image) -> NetverifyRequest:
        """A copy with some images replaced (keys ``front``, ``back``, ``face``), e.g. after normalisation."""
        changes: dict[str, Any] = {}
        for role, img in by_role.items():
            try:
                changes[ImageRole(role).attribute] = img
            except ValueError:
                raise TypeError(
                    f"replace_images() got an unexpected keyword argument {role!r} "
                    f"(roles: {', '.join(ImageRole)})"
                ) from None
        return attrs.evolve(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body as a dict: camelCase keys, absent values omitted, images as base64 strings."""
        return _convert.request_to_wire(self)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> NetverifyRequest:
        """Build and validate a request from the JSON body a caller would POST (images as base64 strings).

        Every structural problem (an unknown key: the API answers 403 to unexpected parameters; a wrong JSON
        type; base64 that is not strict; a malformed or impossible date or timestamp; a mime type key without
        its image) is reported with every semantic rule the fields that did parse break. JSON ``null`` is an
        absent key; an absent ``...MimeType`` gives ``Image.mime_type = None``, so ``from_wire(r.to_wire())``
        equals ``r``. Raises only :class:`~netverify_async.RequestValidationError`, for any JSON-like input.
        """
        if not isinstance(body, Mapping):
            raise RequestValidationError([ValidationIssue("body", "type", "must be a JSON object")])
        with deferred_validation():
            req, issues, broken = _convert.structure_request(body, cls)
        issues += [i for i in request_issues(req) if not _covered(i.path, broken)]
        if issues:
            raise RequestValidationError(issues)
        for message in request_warnings(req):
            warnings.warn(message, NetverifyWarning, stacklevel=2)
        return req


@attrs.frozen
class ScanReceipt:
    """The answer to a successful performNetverify: Jumio's scan reference and the server's timestamp."""

    scan_reference: str = attrs.field(metadata=wire("jumioIdScanReference"))
    timestamp: _dt.datetime = attrs.field(metadata=wire("timestamp"))

    def to_wire(self) -> dict[str, Any]:
        """The response body as the API sends it."""
        return _convert.unstructure(self)

    @classmethod
    def from_wire(cls, body: Any) -> ScanReceipt:
        """Parse the response body. Unknown keys are ignored, since the API may add fields.

        Raises :class:`~netverify_async.ResponseError` when the body is not an object with a non-empty string
        ``jumioIdScanReference`` usable in a retrieval URL and a ``timestamp`` in the documented format
        (0 to 3 millisecond digits).
        """
        if not isinstance(body, Mapping):
            raise ResponseError(
                "performNetverify answered with a body that is not a JSON object",
                operation="performNetverify",
            )
        problems: list[str] = []
        reference = body.get("jumioIdScanReference")
        if not isinstance(reference, str) or not reference.strip():
            problems.append("jumioIdScanReference is missing or not a non-empty string")
        elif SCAN_REFERENCE_PATTERN.fullmatch(reference) is None:
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
                timestamp = _convert.parse_timestamp(raw_timestamp)
            except ValueError as exc:
                problems.append(str(exc))
        if problems or timestamp is None or not isinstance(reference, str):
            raise ResponseError(
                "performNetverify answered with an unusable receipt: " + "; ".join(problems),
                operation="performNetverify",
            )
        return cls(scan_reference=reference, timestamp=timestamp)


resolve_field_types(NetverifyRequest, ScanReceipt)
