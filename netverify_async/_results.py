"""What Jumio found, as both the callback and the retrieval API report it: the enums of documented values and
the value objects the two share (:class:`Address`, :class:`RejectReason`, :class:`IdentityVerification`).

:mod:`netverify_async.callbacks` and :mod:`netverify_async._retrieval` build on these and re-export them.
Fields are read tolerantly (see :mod:`netverify_async._lenient`): a value outside the documented set is kept
as the raw string, so enum-typed fields are typed ``SomeEnum | str``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._convert import Answer, extra_field, resolve_field_types, wire
from ._enums import TextEnum

__all__ = [
    "Address",
    "Gender",
    "IdSubtype",
    "IdentityVerification",
    "RejectReason",
    "RejectReasonDescription",
    "RejectReasonDetail",
    "RejectReasonDetailDescription",
    "ScanSource",
    "Similarity",
    "SimilarityDecision",
    "ValidityReason",
    "VerificationStatus",
]


# ----------------------------------------------------------------------------------------------------
# Enums of documented values


class VerificationStatus(TextEnum):
    """The outcome of an ID verification (callback ``verificationStatus``, retrieval ``document.status``)."""

    APPROVED_VERIFIED = "APPROVED_VERIFIED"
    DENIED_FRAUD = "DENIED_FRAUD"
    DENIED_UNSUPPORTED_ID_TYPE = "DENIED_UNSUPPORTED_ID_TYPE"
    DENIED_UNSUPPORTED_ID_COUNTRY = "DENIED_UNSUPPORTED_ID_COUNTRY"
    ERROR_NOT_READABLE_ID = "ERROR_NOT_READABLE_ID"
    NO_ID_UPLOADED = "NO_ID_UPLOADED"


class ScanSource(TextEnum):
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

    @classmethod
    def _missing_(cls, value: object) -> ScanSource | None:
        if isinstance(value, str):
            return cls._value2member_map_.get(value.strip().upper().replace("-", "_"))  # type: ignore[return-value]
        return None


class IdSubtype(TextEnum):
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


class Gender(TextEnum):
    """The holder's gender as printed on the document (``X`` is not in the guide but occurs in real data)."""

    M = "M"
    F = "F"
    X = "X"


class Similarity(TextEnum):
    """Whether the selfie shows the person on the document (``identityVerification.similarity``)."""

    MATCH = "MATCH"
    NO_MATCH = "NO_MATCH"
    NOT_POSSIBLE = "NOT_POSSIBLE"


class SimilarityDecision(TextEnum):
    """How the similarity was decided (``identityVerification.similarityDecision``; some accounts)."""

    MANUAL = "MANUAL"
    AUTOMATED = "AUTOMATED"


class ValidityReason(TextEnum):
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


class RejectReasonDescription(TextEnum):
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


class RejectReasonDetailDescription(TextEnum):
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


# ----------------------------------------------------------------------------------------------------
# Value objects shared by callbacks and the retrieval API


@attrs.frozen(repr=False)
class Address(Answer):
    """An address read from the document, in Jumio's RAW format (every part optional, all personal)."""

    line1: str | None = attrs.field(default=None, metadata=wire("line1", personal=True))
    line2: str | None = attrs.field(default=None, metadata=wire("line2", personal=True))
    line3: str | None = attrs.field(default=None, metadata=wire("line3", personal=True))
    line4: str | None = attrs.field(default=None, metadata=wire("line4", personal=True))
    line5: str | None = attrs.field(default=None, metadata=wire("line5", personal=True))
    country: str | None = attrs.field(default=None, metadata=wire("country", personal=True))
    postal_code: str | None = attrs.field(default=None, metadata=wire("postalCode", personal=True))
    city: str | None = attrs.field(default=None, metadata=wire("city", personal=True))
    subdivision: str | None = attrs.field(default=None, metadata=wire("subdivision", personal=True))
    state_code: str | None = attrs.field(default=None, metadata=wire("stateCode", personal=True))
    formatted_address: str | None = attrs.field(
        default=None, metadata=wire("formattedAddress", personal=True)
    )
    #: Keys the guide does not document, as sent (values are personal too, so ``repr`` shows only the keys).
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class RejectReasonDetail(Answer):
    """One detail of a reject reason (``rejectReasonDetails`` item), e.g. ``1001`` / ``PHOTO``."""

    code: str | None = attrs.field(default=None, metadata=wire("detailsCode"))
    description: RejectReasonDetailDescription | str | None = attrs.field(
        default=None, metadata=wire("detailsDescription")
    )
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class RejectReason(Answer):
    """Why a scan was denied or not readable (``rejectReason``).

    ``details`` is always a tuple, whether Jumio sent one object, an array, or nothing (then it is empty).
    When the details were not JSON at all, they are kept as the raw string instead.
    """

    code: str | None = attrs.field(default=None, metadata=wire("rejectReasonCode"))
    description: RejectReasonDescription | str | None = attrs.field(
        default=None, metadata=wire("rejectReasonDescription")
    )
    details: tuple[RejectReasonDetail, ...] | str = attrs.field(
        default=(), metadata=wire("rejectReasonDetails")
    )
    extra: Mapping[str, Any] = extra_field()

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code carried: ``code`` first, then each detail's code (``("100", "1001", "1004")``)."""
        found = [self.code] if self.code is not None else []
        if isinstance(self.details, tuple):
            found.extend(detail.code for detail in self.details if detail.code is not None)
        return tuple(found)


@attrs.frozen(repr=False)
class IdentityVerification(Answer):
    """Result of the selfie check (``identityVerification``).

    ``validity`` is True/False whichever way Jumio spelled it (``TRUE``, ``true``, ``"true"``); an
    unrecognised spelling is kept as the raw string.
    """

    similarity: Similarity | str | None = attrs.field(default=None, metadata=wire("similarity"))
    validity: bool | str | None = attrs.field(default=None, metadata=wire("validity"))
    reason: ValidityReason | str | None = attrs.field(default=None, metadata=wire("reason"))
    similarity_decision: SimilarityDecision | str | None = attrs.field(
        default=None, metadata=wire("similarityDecision")
    )
    similarity_score: str | None = attrs.field(default=None, metadata=wire("similarityScore"))
    handwritten_note_matches: bool | str | None = attrs.field(
        default=None, metadata=wire("handwrittenNoteMatches")
    )
    extra: Mapping[str, Any] = extra_field()

    @property
    def is_verified(self) -> bool:
        """True when the selfie matches the document and shows a live person."""
        return self.similarity is Similarity.MATCH and self.validity is True


resolve_field_types(Address, RejectReasonDetail, RejectReason, IdentityVerification)
