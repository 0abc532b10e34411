"""The closed vocabularies of a performNetverify request, and the roles of its images.

They sit below every module that needs them (:mod:`._models`, :mod:`._validation`, :mod:`._wire`), so that none
of those has to import another just to learn a value.
"""

from __future__ import annotations

import enum

__all__ = [
    "CallbackGranularity",
    "ConsentObtained",
    "EnabledField",
    "IdType",
    "ImageRole",
    "MimeType",
]



class TextEnum(str, enum.Enum):
    """A string enum that prints as its value (``str()``, f-strings, ``%s``), as ``enum.StrEnum`` does from
    Python 3.11 on: a status reads ``APPROVED_VERIFIED``, as Jumio sends it, not ``VerificationStatus.APPROVED_...``.
    """

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)

class IdType(TextEnum):
    """The document type (``idType``)."""

    PASSPORT = "PASSPORT"
    DRIVING_LICENSE = "DRIVING_LICENSE"
    ID_CARD = "ID_CARD"
    VISA = "VISA"


class EnabledField(TextEnum):
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


class CallbackGranularity(TextEnum):
    """When Jumio sends callbacks (``callbackGranularity``)."""

    ON_FINISH = "onFinish"
    ON_ALL_STEPS = "onAllSteps"


class ConsentObtained(TextEnum):
    """Whether the end user gave consent to biometric processing (``consent.obtained``)."""

    YES = "yes"
    NO = "no"
    NA = "na"


class MimeType(TextEnum):
    """The image formats the API accepts."""

    JPEG = "image/jpeg"
    PNG = "image/png"


class ImageRole(TextEnum):
    """What an image of a request shows: the front or back of the document, or the end user's face.

    A member is also its plain string (``ImageRole.FRONT == "front"``, same hash, ``str()`` and ``format()``
    give ``"front"``), so mappings keyed by roles answer to either spelling. It knows the request attribute
    (:attr:`attribute`) and the wire key (:attr:`wire_key`, plus :attr:`mime_type_key`) of its image.
    """

    FRONT = "front"
    BACK = "back"
    FACE = "face"

    @property
    def attribute(self) -> str:
        """The attribute of :class:`~netverify_async.NetverifyRequest` that holds this image."""
        return _ATTRIBUTES[self]

    @property
    def wire_key(self) -> str:
        """The key of the base64 image in the JSON body (``frontsideImage``...)."""
        return _WIRE_KEYS[self]

    @property
    def mime_type_key(self) -> str:
        """The key that declares the image's mime type (``frontsideImageMimeType``...)."""
        return _WIRE_KEYS[self] + "MimeType"


_ATTRIBUTES = {
    ImageRole.FRONT: "frontside_image",
    ImageRole.BACK: "backside_image",
    ImageRole.FACE: "face_image",
}
_WIRE_KEYS = {ImageRole.FRONT: "frontsideImage", ImageRole.BACK: "backsideImage", ImageRole.FACE: "faceImage"}
