"""The parts a performNetverify request is built from: its images and the end user's consent.

They sit below :mod:`._validation` (which checks that a request holds them) and :mod:`._models` (whose
:class:`~netverify_async.NetverifyRequest` is made of them); import them from the package.
"""

from __future__ import annotations

import datetime as _dt
import os
from typing import Any, TypeVar, cast

import attrs

from ._convert import hide_personal, resolve_field_types, wire
from ._enums import ConsentObtained, MimeType
from ._errors import RequestValidationError, ValidationIssue

__all__ = ["Consent", "Image", "UserConsent", "UserLocation", "member_or_value", "sniff_mime_type"]

_E = TypeVar("_E")


def member_or_value(enum_type: type[_E], value: object) -> Any:
    """``value`` as a member of ``enum_type`` when it is one's value; otherwise ``value`` unchanged.

    Nothing is raised here, so that validation can report every problem at once.
    """
    if value is None or isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)  # type: ignore[call-arg]
    except (ValueError, TypeError):
        return value


def _to_mime_type(value: MimeType | str | None) -> MimeType | None:
    return member_or_value(MimeType, value)  # type: ignore[no-any-return]


def _to_consent_obtained(value: ConsentObtained | str) -> ConsentObtained:
    return member_or_value(ConsentObtained, value)  # type: ignore[no-any-return]


def _to_bytes(value: bytes | bytearray | memoryview) -> bytes:
    """bytearray / memoryview become bytes; anything else is kept for validation to report."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


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
    #: When not given, detected from the bytes (JPEG or PNG); None when they are neither.
    mime_type: MimeType | None = attrs.field(
        default=attrs.Factory(lambda self: sniff_mime_type(self.data), takes_self=True), converter=_to_mime_type
    )

    @classmethod
    def from_bytes(cls, data: bytes, mime_type: MimeType | str | None = None) -> Image:
        """Wrap raw image bytes, detecting the mime type from them unless one is given."""
        if not isinstance(cast(object, data), (bytes, bytearray, memoryview)):
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

    country: str = attrs.field(metadata=wire("country"))
    state: str | None = attrs.field(default=None, metadata=wire("state"))


@attrs.frozen
class Consent:
    """The end user's consent to biometric processing (``userConsent.consent``).

    ``obtained_at`` must be timezone-aware; it is sent in UTC with millisecond precision.
    """

    obtained: ConsentObtained = attrs.field(converter=_to_consent_obtained, metadata=wire("obtained"))
    obtained_at: _dt.datetime | None = attrs.field(default=None, metadata=wire("obtainedAt"))


@attrs.frozen(field_transformer=hide_personal)
class UserConsent:
    """Consent data required where biometrics are processed (``userConsent``).

    Validated when it is part of a :class:`NetverifyRequest`.
    """

    user_ip: str = attrs.field(metadata=wire("userIp", personal=True))
    user_location: UserLocation = attrs.field(metadata=wire("userLocation"))
    consent: Consent | None = attrs.field(default=None, metadata=wire("consent"))


resolve_field_types(Image, UserLocation, Consent, UserConsent)
