"""The retrieval API's single parts (``/data/document``, ``/data/transaction``, ``/data/verification``) and
the image list: the guide's samples, and the client against the emulator."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from _support import emulator_client

from netverify_async import (
    ConfigurationError,
    IdType,
    Image,
    NetverifyRequest,
    NotFoundError,
    ScanDocumentData,
    ScanState,
    ScanTransactionData,
    ScanVerificationData,
    VerificationStatus,
)
from netverify_async._retrieval import (
    MrzCheck,
    SearchResult,
    parse_scan_document,
    parse_scan_images,
    parse_scan_transaction,
    parse_scan_verification,
)
from netverify_async.emulator import sample_image

REF = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


def test_the_guides_document_sample() -> None:
    document = parse_scan_document(
        {
            "type": "DRIVING_LICENSE",
            "dob": "1990-01-01",
            "expiry": "2022-12-31",
            "firstName": "FIRST NAME",
            "issuingCountry": "AUT",
            "gender": "M",
            "issuingDate": "2013-01-01",
            "lastName": "LAST NAME",
            "nationality": "BHR",
            "personalNumber": "12345679",
            "number": "123456789",
            "status": "APPROVED_VERIFIED",
            "scanReference": REF,
            "timestamp": "2019-03-01T11:44:56.741Z",
        }
    )
    assert isinstance(document, ScanDocumentData) and document.scan_reference == REF
    assert document.type is IdType.DRIVING_LICENSE and document.status is VerificationStatus.APPROVED_VERIFIED
    assert document.dob == dt.date(1990, 1, 1) and document.first_name == "FIRST NAME"
    assert isinstance(document.timestamp, dt.datetime) and not document.problems and not document.extra
    assert "FIRST NAME" not in repr(document) and "123456789" not in repr(document)


def test_the_guides_transaction_sample() -> None:
    transaction = parse_scan_transaction(
        b'{"clientIp":"xxx.xxx.xxx.xxx","customerId":"CUSTOMERID","date":"2019-02-01T11:01:10.227Z",'
        b'"merchantReportingCriteria":"YOURMERCHANTREPORTINGCRITERIA","merchantScanReference":"YOURSCANREFERENCE",'
        b'"source":"WEB_UPLOAD","status":"DONE","scanReference":"' + REF.encode() + b'",'
        b'"timestamp":"2019-03-01T11:46:57.127Z"}'
    )
    assert isinstance(transaction, ScanTransactionData)
    assert transaction.status is ScanState.DONE and transaction.merchant_scan_reference == "YOURSCANREFERENCE"
    assert transaction.customer_id == "CUSTOMERID" and "CUSTOMERID" not in repr(transaction)


def test_the_guides_verification_samples() -> None:
    approved = parse_scan_verification(
        {
            "additionalChecks": {
                "addressValidation": {"searchResults": "POSITIVE_RESULT"},
                "proofOfResidency": {"searchResults": "PARTIAL_RESULT"},
                "faceSearchFindings": {"status": "DONE", "findings": [REF, REF]},
                "personalNumberValidation": {"searchResults": "POSITIVE_RESULT"},
            },
            "identityVerification": {"similarity": "MATCH", "validity": "true"},
            "mrzCheck": "OK",
            "scanReference": REF,
            "timestamp": "2019-03-01T11:48:31.331Z",
        }
    )
    assert isinstance(approved, ScanVerificationData) and approved.mrz_check is MrzCheck.OK
    checks = approved.additional_checks
    assert checks is not None and not isinstance(checks, str)
    assert getattr(checks.address_validation, "search_results", None) is SearchResult.POSITIVE_RESULT
    assert approved.reject_reason_codes == () and not approved.problems

    unreadable = parse_scan_verification(
        {
            "mrzCheck": "OK",
            "rejectReason": {"rejectReasonCode": "201", "rejectReasonDescription": "NO_DOCUMENT"},
            "scanReference": REF,
            "timestamp": "2019-03-01T11:51:39.876Z",
        }
    )
    assert unreadable.reject_reason_codes == ("201",)


def test_the_guides_image_list_with_liveness_images() -> None:
    base = f"https://netverify.com/api/netverify/v2/scans/{REF}/images"
    images = parse_scan_images(
        {
            "timestamp": "2019-03-01T11:53:52.878Z",
            "images": [{"classifier": c, "href": f"{base}/{c}"} for c in ("back", "front", "face")],
            "livenessImages": [f"{base}/liveness/{n}" for n in (7, 5, 1)],
            "scanReference": REF,
        }
    )
    assert [i.classifier for i in images.images] == ["back", "front", "face"]
    assert images.liveness_images == tuple(f"{base}/liveness/{n}" for n in (7, 5, 1))


@pytest.mark.anyio
@pytest.mark.both_loops
async def test_each_part_through_the_client(emulator: Any) -> None:
    request = NetverifyRequest(
        "parts-1", Image.from_bytes(sample_image(1200, 850)), "AUT", "PASSPORT", customer_id="cust-7"
    )
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(request)
        ref = receipt.scan_reference
        details = await client.scan_details(ref)
        document = await client.scan_document(ref)
        transaction = await client.scan_transaction(ref)
        verification = await client.scan_verification(ref)
        with pytest.raises(NotFoundError):
            await client.scan_document("00000000-0000-0000-0000-000000000000")
        with pytest.raises(ConfigurationError):
            await client.scan_verification("../x")
    assert document.scan_reference == transaction.scan_reference == verification.scan_reference == ref
    assert details.document is not None and document.status == details.document.status
    assert document.type is IdType.PASSPORT and document.issuing_country == "AUT"
    assert transaction.merchant_scan_reference == "parts-1" and transaction.customer_id == "cust-7"
    assert transaction.status is ScanState.DONE
    assert verification.mrz_check is not None
    for part in (document, transaction, verification):
        assert not part.problems and not part.extra
