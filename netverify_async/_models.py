"""Value objects for the performNetverify request and its response.

All models are frozen, slotted attrs classes. Python-side names are snake_case; each field's wire name
(camelCase, exactly as the API spells it) is in its ``wire`` metadata, used by :mod:`netverify_async._wire`.
A :class:`NetverifyRequest` validates itself on construction and raises
:class:`~netverify_async.RequestValidationError` listing every broken rule.

``repr()`` never shows image bytes or personal data (names, numbers, dates of birth, IP addresses).
"""

from __future__ import annotations

import datetime as _dt
import enum
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, cast

import attrs

__all__ = [
    "CallbackGranularity",
    "Consent",
    "ConsentObtained",
    "EnabledField",
    "IdType",
    "Image",
    "MimeType",
    "NetverifyRequest",
    "ScanReceipt",
    "UserConsent",
    "UserLocation",
]

REDACTED = "<redacted>"


class IdType(str, enum.Enum):
    """The document type (``idType``)."""

    PASSPORT = "PASSPORT"
    DRIVING_LICENSE = "DRIVING_LICENSE"
    ID_CARD = "ID_CARD"
    VISA = "VISA"


class EnabledField(str, enum.Enum):
    """A field Jumio should extract (one item of ``enabledFields``)."""

    ID_NUMBER = "idNumber"
    ID_FIRST_NAME = "idFirstName"
    ID_LAST_NAME = "idLastName"
    ID_DOB = "idDob"
    ID_EXPIRY = "idExpiry"
    ID_US_STATE = "idUsState"
    ID_PERSONAL_NUMBER = "idPersonalNumber"
    ID_FACE_MATCH = "idFaceMatch"
    ID_ADDRESS = "idAddress"


class CallbackGranularity(str, enum.Enum):
    """When Jumio sends callbacks (``callbackGranularity``)."""

    ON_FINISH = "onFinish"
    ON_ALL_STEPS = "onAllSteps"


class ConsentObtained(str, enum.Enum):
    """Whether the end user gave consent to biometric processing (``consent.obtained``)."""

    YES = "yes"
    NO = "no"
    NA = "na"


class MimeType(str, enum.Enum):
    """The image formats the API accepts."""

    JPEG = "image/jpeg"
    PNG = "image/png"


_E = TypeVar("_E", bound=enum.Enum)


def _lenient_enum(enum_type: type[_E], value: object) -> Any:
    """``value`` as a member of ``enum_type`` when it is one's value; otherwise ``value`` unchanged.

    Nothing is raised here, so that validation can report every problem at once.
    """
    if value is None or isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)
    except (ValueError, TypeError):
        return value


# Named converters (one per field type) so that type checkers see the accepted argument types.


def _to_mime_type(value: MimeType | str | None) -> MimeType | None:
    return _lenient_enum(MimeType, value)  # type: ignore[no-any-return]


def _to_id_type(value: IdType | str) -> IdType:
    return _lenient_enum(IdType, value)  # type: ignore[no-any-return]


def _to_granularity(value: CallbackGranularity | str | None) -> CallbackGranularity | None:
    return _lenient_enum(CallbackGranularity, value)  # type: ignore[no-any-return]


def _to_consent_obtained(value: ConsentObtained | str) -> ConsentObtained:
    return _lenient_enum(ConsentObtained, value)  # type: ignore[no-any-return]


def _to_enabled_fields(value: Iterable[EnabledField | str] | None) -> tuple[EnabledField, ...] | None:
    """Any iterable of fields (not a bare string) becomes a tuple; other values are kept for validation."""
    if value is None or isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        return value  # type: ignore[return-value]
    return tuple(_lenient_enum(EnabledField, v) for v in value)


def _to_callback_url(value: str | None) -> str | None:
    """Store a callback URL with an internationalised host name converted to IDNA punycode."""
    from ._validation import normalize_callback_url

    return normalize_callback_url(value)  # type: ignore[no-any-return]


def _to_bytes(value: bytes | bytearray | memoryview) -> bytes:
    """bytearray / memoryview become bytes; anything else is kept for validation to report."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _wire(name: str) -> dict[str, str]:
    """attrs field metadata carrying the field's wire (JSON) name."""
    return {"wire": name}


def _redact(value: object) -> str:
    return "None" if value is None else REDACTED


_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sniff_mime_type(data: bytes) -> MimeType | None:
    """The accepted format the bytes really are (JPEG or PNG, by their magic numbers), or None."""
    if data.startswith(_JPEG_MAGIC):
        return MimeType.JPEG
    if data.startswith(_PNG_MAGIC):
        return MimeType.PNG
    return None


@attrs.frozen(repr=False)
class Image:
    """An image to upload: its raw bytes and the mime type to declare.

    Build it with :meth:`from_path` or :meth:`from_bytes`; when no mime type is given it is detected from the
    bytes (JPEG or PNG). ``mime_type`` is None when the bytes are neither; preflight then reports
    ``unsupported_format`` (or converts the image with ``fix=True``).
    """

    data: bytes = attrs.field(converter=_to_bytes)
    mime_type: MimeType | None = attrs.field(default=None, converter=_to_mime_type)

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: MimeType | str | None = None) -> Image:
        """Wrap raw image bytes, detecting the mime type from them unless one is given."""
        if not isinstance(cast(object, data), (bytes, bytearray, memoryview)):
            from ._errors import RequestValidationError, ValidationIssue

            raise RequestValidationError(
                [ValidationIssue("image", "type", f"image data must be bytes, not {type(data).__name__}")]
            )
        raw = bytes(data)
        declared = mime_type if mime_type is not None else sniff_mime_type(raw)
        return cls(raw, declared)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], mime_type: MimeType | str | None = None) -> Image:
        """Read an image file (blocking; use :meth:`from_path_async` inside a running event loop)."""
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read(), mime_type)

    @classmethod
    async def from_path_async(
        cls, path: str | os.PathLike[str], mime_type: MimeType | str | None = None
    ) -> Image:
        """Read an image file in a worker thread so the event loop stays free."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(cls.from_path, path, mime_type)

    @property
    def detected_mime_type(self) -> MimeType | None:
        """The accepted format the bytes really are, by their magic numbers, or None."""
        return sniff_mime_type(self.data)

    @property
    def size(self) -> int:
        """Size of the raw (decoded) image in bytes."""
        return len(self.data)

    def __repr__(self) -> str:
        mime = self.mime_type.value if isinstance(self.mime_type, MimeType) else self.mime_type
        return f"Image(mime_type={mime!r}, size={len(self.data)})"


@attrs.frozen
class UserLocation:
    """Where the end user is during the verification (``userConsent.userLocation``).

    ``country`` is an ISO 3166-1 alpha-3 code; ``state`` is, for USA / CAN / AUS, the subdivision code without
    the country prefix (``IL``, ``ON``, ``NSW``).
    """

    country: str = attrs.field(metadata=_wire("country"))
    state: str | None = attrs.field(default=None, metadata=_wire("state"))


@attrs.frozen
class Consent:
    """The end user's consent to biometric processing (``userConsent.consent``).

    ``obtained_at`` must be timezone-aware; it is sent in UTC with millisecond precision.
    """

    obtained: ConsentObtained = attrs.field(converter=_to_consent_obtained, metadata=_wire("obtained"))
    obtained_at: _dt.datetime | None = attrs.field(default=None, metadata=_wire("obtainedAt"))


@attrs.frozen
class UserConsent:
    """Consent data required where biometrics are processed (``userConsent``).

    Validated when it is part of a :class:`NetverifyRequest`.
    """

    user_ip: str = attrs.field(repr=_redact, metadata=_wire("userIp"))
    user_location: UserLocation = attrs.field(metadata=_wire("userLocation"))
    consent: Consent | None = attrs.field(default=None, metadata=_wire("consent"))


@attrs.frozen
class NetverifyRequest:
    """The body of one performNetverify call. Validated on construction (every rule at once).

    Required: ``merchant_id_scan_reference``, ``frontside_image``, ``country``, ``id_type``. String enum
    values (``"PASSPORT"``, ``"idFaceMatch"``, ...) are accepted and converted. A ``callback_url`` with an
    internationalised host name is stored with the host converted to IDNA punycode.
    """

    merchant_id_scan_reference: str = attrs.field(metadata=_wire("merchantIdScanReference"))
    frontside_image: Image = attrs.field(metadata=_wire("frontsideImage"))
    country: str = attrs.field(metadata=_wire("country"))
    id_type: IdType = attrs.field(converter=_to_id_type, metadata=_wire("idType"))
    face_image: Image | None = attrs.field(default=None, metadata=_wire("faceImage"))
    backside_image: Image | None = attrs.field(default=None, metadata=_wire("backsideImage"))
    enabled_fields: tuple[EnabledField, ...] | None = attrs.field(
        default=None, converter=_to_enabled_fields, metadata=_wire("enabledFields")
    )
    merchant_reporting_criteria: str | None = attrs.field(
        default=None, metadata=_wire("merchantReportingCriteria")
    )
    customer_id: str | None = attrs.field(default=None, metadata=_wire("customerId"))
    callback_url: str | None = attrs.field(
        default=None, converter=_to_callback_url, metadata=_wire("callbackUrl")
    )
    first_name: str | None = attrs.field(default=None, repr=_redact, metadata=_wire("firstName"))
    last_name: str | None = attrs.field(default=None, repr=_redact, metadata=_wire("lastName"))
    us_state: str | None = attrs.field(default=None, repr=_redact, metadata=_wire("usState"))
    expiry: _dt.date | None = attrs.field(default=None, repr=_redact, metadata=_wire("expiry"))
    number: str | None = attrs.field(default=None, repr=_redact, metadata=_wire("number"))
    dob: _dt.date | None = attrs.field(default=None, repr=_redact, metadata=_wire("dob"))
    callback_granularity: CallbackGranularity | None = attrs.field(
        default=None, converter=_to_granularity, metadata=_wire("callbackGranularity")
    )
    personal_number: str | None = attrs.field(default=None, repr=_redact, metadata=_wire("personalNumber"))
    user_consent: UserConsent | None = attrs.field(default=None, metadata=_wire("userConsent"))

    def __attrs_post_init__(self) -> None:
        from ._validation import validate_request

        validate_request(self)

    @property
    def images(self) -> dict[str, Image]:
        """The images present, keyed by their role (``front``, ``back``, ``face``)."""
        found = {"front": self.frontside_image, "back": self.backside_image, "face": self.face_image}
        return {role: img for role, img in found.items() if img is not None}

    def replace_images(self, **by_role: Image) -> NetverifyRequest:
        """A copy with some images replaced (keys ``front``, ``back``, ``face``), e.g. after normalisation."""
        names = {"front": "frontside_image", "back": "backside_image", "face": "face_image"}
        changes: dict[str, Any] = {names[role]: img for role, img in by_role.items()}
        return attrs.evolve(self, **changes)

    def to_wire(self) -> dict[str, Any]:
        """The JSON body as a dict: camelCase keys, absent values omitted, images as base64 strings."""
        from ._wire import request_to_wire

        return request_to_wire(self)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> NetverifyRequest:
        """Build and validate a request from the JSON body a caller would POST (images as base64 strings).

        Raises only :class:`~netverify_async.RequestValidationError`.
        """
        from ._wire import request_from_wire

        return request_from_wire(body)


@attrs.frozen
class ScanReceipt:
    """The answer to a successful performNetverify: Jumio's scan reference and the server's timestamp."""

    scan_reference: str = attrs.field(metadata=_wire("jumioIdScanReference"))
    timestamp: _dt.datetime = attrs.field(metadata=_wire("timestamp"))

    def to_wire(self) -> dict[str, Any]:
        """The response body as the API sends it."""
        from ._wire import receipt_to_wire

        return receipt_to_wire(self)

    @classmethod
    def from_wire(cls, body: Mapping[str, Any]) -> ScanReceipt:
        """Parse the response body (``timestamp``, ``jumioIdScanReference``)."""
        from ._wire import receipt_from_wire

        return receipt_from_wire(body)
