"""Which verification result a scan gets, and the synthetic documents (callback form, retrieval data) for it.

The outcome is chosen from the request alone, so tests and demos can ask for each result: a ``#keyword``
suffix on ``merchantIdScanReference`` (or, failing that, on ``customerId``) names it, e.g. ``order-17#fraud``.
Without a known suffix the emulator's ``default_outcome`` applies.

All extracted data is synthetic: values the caller provided in the request are echoed back (as Jumio does "if
provided"), the rest are fixed placeholders.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Outcome", "callback_form", "choose_outcome", "images_received_form", "scan_data"]


class Outcome(enum.Enum):
    """A scripted verification result. The value is the keyword that selects it (``#keyword``)."""

    APPROVED = "approved"
    FACE_MISMATCH = "face-mismatch"
    NOT_LIVE = "not-live"
    FRAUD = "fraud"
    UNSUPPORTED_TYPE = "unsupported-type"
    UNSUPPORTED_COUNTRY = "unsupported-country"
    UNREADABLE = "unreadable"
    NO_ID = "no-id"

    @property
    def verification_status(self) -> str:
        """The ``verificationStatus`` this outcome reports."""
        return _STATUS[self]

    @property
    def transaction_status(self) -> str:
        """The final status of the scan in the retrieval API: FAILED when no ID was uploaded, else DONE."""
        return "FAILED" if self is Outcome.NO_ID else "DONE"

    @classmethod
    def parse(cls, text: str) -> Outcome:
        """An outcome from its keyword (``fraud``) or its verification status (``DENIED_FRAUD``), any case."""
        key = text.strip().lower().replace("_", "-")
        for outcome in cls:
            if key == outcome.value:
                return outcome
        for outcome, status in _STATUS.items():
            if key == status.lower().replace("_", "-") and outcome in _BY_STATUS_DEFAULT:
                return outcome
        raise ValueError(f"unknown outcome {text!r}")

    @classmethod
    def names(cls) -> list[str]:
        """The keywords, for messages and help texts."""
        return [o.value for o in cls]


_STATUS = {
    Outcome.APPROVED: "APPROVED_VERIFIED",
    Outcome.FACE_MISMATCH: "APPROVED_VERIFIED",
    Outcome.NOT_LIVE: "APPROVED_VERIFIED",
    Outcome.FRAUD: "DENIED_FRAUD",
    Outcome.UNSUPPORTED_TYPE: "DENIED_UNSUPPORTED_ID_TYPE",
    Outcome.UNSUPPORTED_COUNTRY: "DENIED_UNSUPPORTED_ID_COUNTRY",
    Outcome.UNREADABLE: "ERROR_NOT_READABLE_ID",
    Outcome.NO_ID: "NO_ID_UPLOADED",
}
# The outcome a plain verification status stands for (APPROVED_VERIFIED means the ordinary approval).
_BY_STATUS_DEFAULT = frozenset(
    {
        Outcome.APPROVED,
        Outcome.FRAUD,
        Outcome.UNSUPPORTED_TYPE,
        Outcome.UNSUPPORTED_COUNTRY,
        Outcome.UNREADABLE,
        Outcome.NO_ID,
    }
)

# Reject reasons: fraud lists two details (a JSON array), unreadable one (a lone JSON object), as Jumio does.
_REJECT_REASONS: dict[Outcome, dict[str, Any]] = {
    Outcome.FRAUD: {
        "rejectReasonCode": "100",
        "rejectReasonDescription": "MANIPULATED_DOCUMENT",
        "rejectReasonDetails": [
            {"detailsCode": "1001", "detailsDescription": "PHOTO"},
            {"detailsCode": "1004", "detailsDescription": "DOB"},
        ],
    },
    Outcome.UNREADABLE: {
        "rejectReasonCode": "200",
        "rejectReasonDescription": "NOT_READABLE_DOCUMENT",
        "rejectReasonDetails": {"detailsCode": "2001", "detailsDescription": "BLURRED"},
    },
}

_IDENTITY: dict[Outcome, dict[str, Any]] = {
    Outcome.APPROVED: {"similarity": "MATCH", "validity": True},
    Outcome.FACE_MISMATCH: {"similarity": "NO_MATCH", "validity": True},
    Outcome.NOT_LIVE: {"similarity": "MATCH", "validity": False, "reason": "LIVENESS_FAILED"},
}

_SUBTYPES = {"ID_CARD": "NATIONAL_ID", "DRIVING_LICENSE": "REGULAR_DRIVING_LICENSE"}

# Synthetic extracted values:
# (wire name in the request, enabled-field name, callback name, retrieval name, value)
_EXTRACTED = (
    ("firstName", "idFirstName", "idFirstName", "firstName", "ALEX"),
    ("lastName", "idLastName", "idLastName", "lastName", "SAMPLE"),
    ("dob", "idDob", "idDob", "dob", "1990-01-01"),
    ("expiry", "idExpiry", "idExpiry", "expiry", "2031-12-31"),
    ("number", "idNumber", "idNumber", "number", None),  # derived from the scan reference
    ("personalNumber", "idPersonalNumber", "personalNumber", "personalNumber", None),
    ("usState", "idUsState", "idUsState", "usState", None),
)

_SYNTHETIC_ADDRESS = {
    "line1": "1 EMULATOR WAY",
    "city": "SAMPLETOWN",
    "postalCode": "00000",
    "country": "USA",
    "formattedAddress": "1 EMULATOR WAY, SAMPLETOWN 00000, USA",
}


def choose_outcome(merchant_reference: str | None, customer_id: str | None, default: Outcome) -> Outcome:
    """The outcome named by a ``#keyword`` suffix of the merchant reference, else of the customer id."""
    for value in (merchant_reference, customer_id):
        if value and "#" in value:
            try:
                return Outcome.parse(value.rpartition("#")[2])
            except ValueError:
                continue
    return default


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _extracted_values(scan: Any) -> dict[str, tuple[str, str, str]]:
    """enabled-field name -> (callback name, retrieval name, value) of the data "read" off the document."""
    wire: Mapping[str, Any] = scan.wire_fields
    enabled: tuple[str, ...] | None = scan.enabled_fields
    found: dict[str, tuple[str, str, str]] = {}
    for request_name, field, callback_name, retrieval_name, placeholder in _EXTRACTED:
        provided = wire.get(request_name)
        if enabled is not None and field not in enabled and provided is None:
            continue
        value = provided if isinstance(provided, str) and provided else placeholder
        if value is None and field == "idNumber":
            value = "EMU" + scan.reference.replace("-", "")[:9].upper()
        if value is None:
            continue
        found[field] = (callback_name, retrieval_name, value)
    return found


def _address_enabled(scan: Any) -> bool:
    return scan.enabled_fields is not None and "idAddress" in scan.enabled_fields


def images_received_form(scan: Any, timestamp: str) -> dict[str, str]:
    """The extra callback of ``callbackGranularity=onAllSteps``, sent once the images are received.

    Jumio documents only that it exists; the emulator sends the identifying fields with
    ``idScanStatus=PENDING`` and no ``verificationStatus`` (the result is not known yet).
    """
    form = {
        "callBackType": "NETVERIFYID",
        "jumioIdScanReference": scan.reference,
        "idScanStatus": "PENDING",
        "idScanSource": "API",
        "idType": scan.id_type,
        "idCountry": scan.country,
        "transactionDate": scan.created_timestamp,
        "callbackDate": timestamp,
        "merchantIdScanReference": scan.merchant_reference,
    }
    _add_optional(form, scan)
    return form


def _add_optional(form: dict[str, str], scan: Any) -> None:
    if scan.customer_id is not None:
        form["customerId"] = scan.customer_id
    if scan.reporting_criteria is not None:
        form["merchantReportingCriteria"] = scan.reporting_criteria


def callback_form(scan: Any, timestamp: str) -> dict[str, str]:
    """The final callback (form fields, all strings) for a processed scan."""
    outcome: Outcome = scan.outcome
    approved = outcome.verification_status == "APPROVED_VERIFIED"
    check = "OK" if approved else "N/A"
    form: dict[str, str] = {
        "callBackType": "NETVERIFYID",
        "jumioIdScanReference": scan.reference,
        "verificationStatus": outcome.verification_status,
        "idScanStatus": "SUCCESS" if approved else "ERROR",
        "idScanSource": "API",
        "idCheckDataPositions": check,
        "idCheckDocumentValidation": check,
        "idCheckHologram": check,
        "idCheckMRZcode": "OK" if approved and scan.id_type == "PASSPORT" else "N/A",
        "idCheckMicroprint": check,
        "idCheckSecurityFeatures": check,
        "idCheckSignature": check,
        "transactionDate": scan.created_timestamp,
        "callbackDate": timestamp,
        "merchantIdScanReference": scan.merchant_reference,
        "clientIp": scan.client_ip,
    }
    _add_optional(form, scan)
    if outcome is Outcome.NO_ID:
        return form
    form["idType"] = scan.id_type
    form["idCountry"] = scan.country
    if scan.id_type in _SUBTYPES:
        form["idSubtype"] = _SUBTYPES[scan.id_type]
    for role, name in (
        ("front", "idScanImage"),
        ("back", "idScanImageBackside"),
        ("face", "idScanImageFace"),
    ):
        if role in scan.image_roles:
            form[name] = scan.image_url(role)
    if scan.liveness_count:
        form["livenessImages"] = _json(scan.liveness_urls())
    if outcome in _REJECT_REASONS:
        form["rejectReason"] = _json(_REJECT_REASONS[outcome])
    if approved:
        for callback_name, _, value in _extracted_values(scan).values():
            form[callback_name] = value
        if _address_enabled(scan):
            form["idAddress"] = _json(_SYNTHETIC_ADDRESS)
        if scan.face_match:
            form["identityVerification"] = _json(_IDENTITY[outcome])
    return form


def scan_data(scan: Any, timestamp: str, status: str) -> dict[str, Any]:
    """The body of ``GET /scans/{ref}/data``: document, transaction and verification details."""
    outcome: Outcome = scan.outcome
    transaction: dict[str, Any] = {
        "clientIp": scan.client_ip,
        "date": scan.created_timestamp,
        "merchantScanReference": scan.merchant_reference,
        "source": "API",
        "status": status,
    }
    if scan.customer_id is not None:
        transaction["customerId"] = scan.customer_id
    if scan.reporting_criteria is not None:
        transaction["merchantReportingCriteria"] = scan.reporting_criteria
    body: dict[str, Any] = {"timestamp": timestamp, "scanReference": scan.reference}
    if status == "PENDING":
        body["document"] = {"type": scan.id_type, "issuingCountry": scan.country}
        body["transaction"] = transaction
        return body
    document: dict[str, Any] = {"status": outcome.verification_status}
    if outcome is not Outcome.NO_ID:
        document["type"] = "UNSUPPORTED" if outcome is Outcome.UNSUPPORTED_TYPE else scan.id_type
        document["issuingCountry"] = scan.country
        if scan.id_type in _SUBTYPES and outcome is not Outcome.UNSUPPORTED_TYPE:
            document["idSubtype"] = _SUBTYPES[scan.id_type]
    approved = outcome.verification_status == "APPROVED_VERIFIED"
    if approved:
        for _, retrieval_name, value in _extracted_values(scan).values():
            document[retrieval_name] = value
        if _address_enabled(scan):
            document["address"] = dict(_SYNTHETIC_ADDRESS)
    verification: dict[str, Any] = {
        "mrzCheck": "OK" if approved and scan.id_type == "PASSPORT" else "NOT_AVAILABLE",
    }
    if outcome in _REJECT_REASONS:
        verification["rejectReason"] = _REJECT_REASONS[outcome]
    if approved and scan.face_match:
        identity = dict(_IDENTITY[outcome])
        # The retrieval API spells the boolean as a string (see the reference's notes on validity).
        identity["validity"] = "true" if identity["validity"] else "false"
        verification["identityVerification"] = identity
    body["document"] = document
    body["transaction"] = transaction
    body["verification"] = verification
    return body
