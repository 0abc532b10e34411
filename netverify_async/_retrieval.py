"""Typed models of the retrieval API's answers (``GET /api/netverify/v2/scans/{ref}``, ``.../data``,
``.../data/document``, ``.../data/transaction``, ``.../data/verification``, ``.../images``, and ``DELETE``), and
of a downloaded image (:class:`DownloadedImage`).

They describe the same verification result as the callback; the enums and value objects the two share live in
:mod:`netverify_async._results` and are re-exported here.

Parsing is tolerant, because Jumio's documents disagree with themselves and with real traffic (the rules are
written once, in :mod:`netverify_async._lenient`):

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
import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._convert import Answer, extra_field, resolve_field_types, wire
from ._enums import IdType, TextEnum
from ._errors import ResponseError, ValidationIssue
from ._lenient import is_absent, load_json_object, read, text_or_texts
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
from ._results import SimilarityDecision as SimilarityDecision
from ._results import ValidityReason as ValidityReason
from ._results import VerificationStatus as VerificationStatus

__all__ = [
    "AdditionalChecks",
    "Address",
    "CheckResult",
    "DeleteResult",
    "DownloadedImage",
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
    "ScanDocumentData",
    "ScanImage",
    "ScanImages",
    "ScanSource",
    "ScanState",
    "ScanStatus",
    "ScanTransaction",
    "ScanTransactionData",
    "ScanVerification",
    "ScanVerificationData",
    "SearchResult",
    "Similarity",
    "SimilarityDecision",
    "ValidityReason",
    "VerificationStatus",
    "parse_delete_result",
    "parse_scan_details",
    "parse_scan_document",
    "parse_scan_images",
    "parse_scan_status",
    "parse_scan_transaction",
    "parse_scan_verification",
]


# ----------------------------------------------------------------------------------------------------
# Enums of values only the retrieval API reports


class ScanState(TextEnum):
    """Where a scan is in its life (retrieval ``status``)."""

    PENDING = "PENDING"
    DONE = "DONE"
    FAILED = "FAILED"


class MrzCheck(TextEnum):
    """Result of the machine-readable-zone check (retrieval ``verification.mrzCheck``)."""

    OK = "OK"
    NOT_AVAILABLE = "NOT_AVAILABLE"


class SearchResult(TextEnum):
    """Result of an additional check (``addressValidation``, ``proofOfResidency``,
    ``personalNumberValidation``).
    """

    POSITIVE_RESULT = "POSITIVE_RESULT"
    PARTIAL_RESULT = "PARTIAL_RESULT"
    NEGATIVE_RESULT = "NEGATIVE_RESULT"
    CHECK_NOT_DONE = "CHECK_NOT_DONE"


class FaceSearchStatus(TextEnum):
    """State of the 1:n face search (``faceSearchFindings.status``)."""

    DONE = "DONE"
    PENDING = "PENDING"
    ERROR = "ERROR"


# ----------------------------------------------------------------------------------------------------
# Models


@attrs.frozen(repr=False)
class ScanStatus(Answer):
    """``GET /scans/{ref}``: whether the scan is still PENDING, or DONE / FAILED."""

    scan_reference: str
    status: ScanState | str = attrs.field(metadata=wire("status"))
    timestamp: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("timestamp"))
    extra: Mapping[str, Any] = extra_field()
    problems: tuple[ValidationIssue, ...] = ()

    @property
    def is_final(self) -> bool:
        """True once the scan is DONE or FAILED (details can be fetched, polling can stop)."""
        return self.status in (ScanState.DONE, ScanState.FAILED)


@attrs.frozen(repr=False)
class ScanDocument(Answer):
    """``document`` of the scan details: what was read from the ID (almost all of it personal data).

    ``type`` is an :class:`~netverify_async.IdType`, or the string ``"UNSUPPORTED"``, which the retrieval guide
    documents for this field only (it is not a type one can submit).
    """

    status: VerificationStatus | str | None = attrs.field(default=None, metadata=wire("status"))
    type: IdType | Literal["UNSUPPORTED"] | str | None = attrs.field(default=None, metadata=wire("type"))
    id_subtype: IdSubtype | str | None = attrs.field(default=None, metadata=wire("idSubtype"))
    issuing_country: str | None = attrs.field(default=None, metadata=wire("issuingCountry"))
    first_name: str | None = attrs.field(default=None, metadata=wire("firstName", personal=True))
    last_name: str | None = attrs.field(default=None, metadata=wire("lastName", personal=True))
    dob: _dt.date | str | None = attrs.field(default=None, metadata=wire("dob", personal=True))
    expiry: _dt.date | str | None = attrs.field(default=None, metadata=wire("expiry", personal=True))
    issuing_date: _dt.date | str | None = attrs.field(
        default=None, metadata=wire("issuingDate", personal=True)
    )
    number: str | None = attrs.field(default=None, metadata=wire("number", personal=True))
    us_state: str | None = attrs.field(default=None, metadata=wire("usState", personal=True))
    personal_number: str | None = attrs.field(default=None, metadata=wire("personalNumber", personal=True))
    optional_data1: str | None = attrs.field(default=None, metadata=wire("optionalData1", personal=True))
    optional_data2: str | None = attrs.field(default=None, metadata=wire("optionalData2", personal=True))
    address: Address | str | None = attrs.field(default=None, metadata=wire("address", personal=True))
    issuing_authority: str | None = attrs.field(
        default=None, metadata=wire("issuingAuthority", personal=True)
    )
    issuing_place: str | None = attrs.field(default=None, metadata=wire("issuingPlace", personal=True))
    curp: str | None = attrs.field(default=None, metadata=wire("curp", personal=True))
    gender: Gender | str | None = attrs.field(default=None, metadata=wire("gender", personal=True))
    nationality: str | None = attrs.field(default=None, metadata=wire("nationality", personal=True))
    place_of_birth: str | None = attrs.field(default=None, metadata=wire("placeOfBirth", personal=True))
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
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class ScanTransaction(Answer):
    """``transaction`` of the scan details: when, how and for whom the scan was made."""

    status: ScanState | str | None = attrs.field(default=None, metadata=wire("status"))
    date: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("date"))
    source: ScanSource | str | None = attrs.field(default=None, metadata=wire("source"))
    merchant_scan_reference: str | None = attrs.field(default=None, metadata=wire("merchantScanReference"))
    merchant_reporting_criteria: str | None = attrs.field(
        default=None, metadata=wire("merchantReportingCriteria")
    )
    customer_id: str | None = attrs.field(default=None, metadata=wire("customerId", personal=True))
    client_ip: str | None = attrs.field(default=None, metadata=wire("clientIp", personal=True))
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class CheckResult(Answer):
    """Result of one additional check (address validation, proof of residency, personal number validation).

    ``search_response`` carries ``searchResponse`` or ``searchReason`` (the guide uses both names), e.g.
    ``NOT_ENOUGH_DATA`` when the check was not done.
    """

    search_results: SearchResult | str | None = attrs.field(default=None, metadata=wire("searchResults"))
    search_response: str | None = attrs.field(
        default=None, metadata=wire("searchResponse", also=["searchReason"])
    )
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class FaceSearchFindings(Answer):
    """Result of the 1:n face search: earlier scans whose faces match this one (a string or an array on the
    wire; always a tuple here)."""

    status: FaceSearchStatus | str | None = attrs.field(default=None, metadata=wire("status"))
    findings: tuple[str, ...] | str = attrs.field(
        default=(), metadata=wire("findings", structure=text_or_texts)
    )
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class AdditionalChecks(Answer):
    """``verification.additionalChecks``; ``watchlist_screening`` is kept as the JSON object Jumio sent."""

    address_validation: CheckResult | str | None = attrs.field(
        default=None, metadata=wire("addressValidation")
    )
    proof_of_residency: CheckResult | str | None = attrs.field(
        default=None, metadata=wire("proofOfResidency")
    )
    personal_number_validation: CheckResult | str | None = attrs.field(
        default=None, metadata=wire("personalNumberValidation")
    )
    face_search_findings: FaceSearchFindings | str | None = attrs.field(
        default=None, metadata=wire("faceSearchFindings")
    )
    watchlist_screening: Mapping[str, Any] | str | None = attrs.field(
        default=None, hash=False, metadata=wire("watchlistScreening")
    )
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class ScanVerification(Answer):
    """``verification`` of the scan details: MRZ check, reject reason, selfie check, additional checks."""

    mrz_check: MrzCheck | str | None = attrs.field(default=None, metadata=wire("mrzCheck"))
    reject_reason: RejectReason | str | None = attrs.field(default=None, metadata=wire("rejectReason"))
    identity_verification: IdentityVerification | str | None = attrs.field(
        default=None, metadata=wire("identityVerification")
    )
    additional_checks: AdditionalChecks | str | None = attrs.field(
        default=None, metadata=wire("additionalChecks")
    )
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class _Link(Answer):
    """A download link of the retrieval API: what it is (``classifier``) and its URL (``href``)."""

    classifier: str | None = attrs.field(default=None, metadata=wire("classifier"))
    href: str | None = attrs.field(default=None, metadata=wire("href", personal=True))
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class FacemapLink(_Link):
    """Where to download the facemap (``facemap``: classifier and URL)."""


@attrs.frozen(repr=False)
class ScanDetails(Answer):
    """``GET /scans/{ref}/data``: document, transaction and verification data of one scan.

    A part that is missing is None. A part that is not a JSON object is moved to ``extra`` under its wire name
    (and noted in ``problems``).
    """

    scan_reference: str
    timestamp: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("timestamp"))
    document: ScanDocument | None = attrs.field(default=None, metadata=wire("document"))
    transaction: ScanTransaction | None = attrs.field(default=None, metadata=wire("transaction"))
    verification: ScanVerification | None = attrs.field(default=None, metadata=wire("verification"))
    facemap: FacemapLink | None = attrs.field(default=None, metadata=wire("facemap"))
    extra: Mapping[str, Any] = extra_field()
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


@attrs.frozen(repr=False)
class ScanImage(_Link):
    """One image of a scan: its classifier (``front``, ``back``, ``face``) and the URL to download it from."""


@attrs.frozen(repr=False)
class ScanImages(Answer):
    """``GET /scans/{ref}/images``: the images and liveness images available for download."""

    scan_reference: str
    timestamp: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("timestamp"))
    images: tuple[ScanImage, ...] | str = attrs.field(default=(), metadata=wire("images"))
    liveness_images: tuple[str, ...] | str = attrs.field(
        default=(), metadata=wire("livenessImages", personal=True)
    )
    extra: Mapping[str, Any] = extra_field()
    problems: tuple[ValidationIssue, ...] = ()


@attrs.frozen(repr=False)
class DeleteResult(Answer):
    """The outcome of ``DELETE /scans/{ref}``: the guide documents only ``200 OK`` and no body.

    When the server does send a JSON object, its ``timestamp`` is read and other keys are kept in ``extra``.
    """

    scan_reference: str
    timestamp: _dt.datetime | str | None = attrs.field(default=None, metadata=wire("timestamp"))
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(repr=False)
class ScanDocumentData(ScanDocument):
    """``GET /scans/{ref}/data/document``: the document part alone, with the answer's ``scan_reference``,
    ``timestamp`` and ``problems``."""

    scan_reference: str = attrs.field(kw_only=True)
    timestamp: _dt.datetime | str | None = attrs.field(default=None, kw_only=True, metadata=wire("timestamp"))
    problems: tuple[ValidationIssue, ...] = attrs.field(default=(), kw_only=True)


@attrs.frozen(repr=False)
class ScanTransactionData(ScanTransaction):
    """``GET /scans/{ref}/data/transaction``: the transaction part alone, with the answer's ``scan_reference``,
    ``timestamp`` and ``problems``."""

    scan_reference: str = attrs.field(kw_only=True)
    timestamp: _dt.datetime | str | None = attrs.field(default=None, kw_only=True, metadata=wire("timestamp"))
    problems: tuple[ValidationIssue, ...] = attrs.field(default=(), kw_only=True)


@attrs.frozen(repr=False)
class ScanVerificationData(ScanVerification):
    """``GET /scans/{ref}/data/verification``: the verification part alone, with the answer's
    ``scan_reference``, ``timestamp`` and ``problems``."""

    scan_reference: str = attrs.field(kw_only=True)
    timestamp: _dt.datetime | str | None = attrs.field(default=None, kw_only=True, metadata=wire("timestamp"))
    problems: tuple[ValidationIssue, ...] = attrs.field(default=(), kw_only=True)

    @property
    def reject_reason_codes(self) -> tuple[str, ...]:
        """Every reject code: the main code, then the detail codes; empty when there is no reject reason."""
        reason = self.reject_reason
        return reason.codes if isinstance(reason, RejectReason) else ()


@attrs.frozen(repr=False)
class DownloadedImage(Answer):
    """An image written to a file by :meth:`~netverify_async.NetverifyClient.download_image`.

    ``classifier`` is ``front``, ``back``, ``face`` or ``liveness/N``; ``content_type`` what the server said
    (``image/jpeg`` or ``image/png``); ``size`` the bytes written to ``path``.
    """

    scan_reference: str
    classifier: str
    path: str = attrs.field(metadata=wire("path", personal=True))
    size: int = 0
    content_type: str | None = None


resolve_field_types(
    _Link,
    ScanStatus,
    ScanDocument,
    ScanTransaction,
    CheckResult,
    FaceSearchFindings,
    AdditionalChecks,
    ScanVerification,
    FacemapLink,
    ScanDetails,
    ScanImage,
    ScanImages,
    DeleteResult,
    ScanDocumentData,
    ScanTransactionData,
    ScanVerificationData,
    DownloadedImage,
)


# ----------------------------------------------------------------------------------------------------
# Parsing the answers

_REFERENCE_KEY = "scanReference"


def _load_answer(body: Mapping[str, Any] | bytes | bytearray | str, operation: str) -> Mapping[str, Any]:
    """The answer as a JSON object with a usable ``scanReference``, or :class:`ResponseError`."""
    decoded = load_json_object(body, operation)
    reference = decoded.get(_REFERENCE_KEY)
    if not isinstance(reference, str) or is_absent(reference):
        raise ResponseError(
            f"{operation}: '{_REFERENCE_KEY}' is missing or not a non-empty string", operation=operation
        )
    return decoded


def parse_scan_status(body: Mapping[str, Any] | bytes | str) -> ScanStatus:
    """Parse the answer of ``GET /scans/{ref}`` (a decoded JSON object, or its raw JSON bytes/text).

    Raises :class:`~netverify_async.ResponseError` when it is not a JSON object or lacks ``scanReference`` or
    ``status``. An undocumented status is kept as the raw string (and is not final).
    """
    operation = "scanStatus"
    obj = _load_answer(body, operation)
    if is_absent(obj.get("status")):
        raise ResponseError(f"{operation}: 'status' is missing or empty", operation=operation)
    return read(obj, ScanStatus, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


def parse_scan_details(body: Mapping[str, Any] | bytes | str) -> ScanDetails:
    """Parse the answer of ``GET /scans/{ref}/data`` (a decoded JSON object, or its raw JSON bytes/text).

    Raises :class:`~netverify_async.ResponseError` only when it is not a JSON object or has no
    ``scanReference``; everything else is read tolerantly (see the module documentation).
    """
    obj = _load_answer(body, "scanDetails")
    return read(obj, ScanDetails, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


def parse_scan_images(body: Mapping[str, Any] | bytes | str) -> ScanImages:
    """Parse the answer of ``GET /scans/{ref}/images``; ``images`` may be one object or an array."""
    obj = _load_answer(body, "scanImages")
    return read(obj, ScanImages, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


def parse_scan_document(body: Mapping[str, Any] | bytes | str) -> ScanDocumentData:
    """Parse the answer of ``GET /scans/{ref}/data/document`` (tolerantly; see :func:`parse_scan_details`)."""
    obj = _load_answer(body, "scanDocument")
    return read(obj, ScanDocumentData, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


def parse_scan_transaction(body: Mapping[str, Any] | bytes | str) -> ScanTransactionData:
    """Parse the answer of ``GET /scans/{ref}/data/transaction`` (tolerantly; see :func:`parse_scan_details`)."""
    obj = _load_answer(body, "scanTransaction")
    return read(obj, ScanTransactionData, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


def parse_scan_verification(body: Mapping[str, Any] | bytes | str) -> ScanVerificationData:
    """Parse the answer of ``GET /scans/{ref}/data/verification`` (tolerantly; see :func:`parse_scan_details`)."""
    obj = _load_answer(body, "scanVerification")
    return read(obj, ScanVerificationData, skip=[_REFERENCE_KEY], scan_reference=obj[_REFERENCE_KEY])


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
    return read(obj, DeleteResult, scan_reference=scan_reference)
