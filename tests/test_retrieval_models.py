"""The retrieval API's answers parse into typed models, tolerantly; only unusable answers raise an error."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netverify_async import (
    IdType,
    RequestError,
    ResponseError,
    ScanDetails,
    ScanSource,
    ScanState,
    ScanStatus,
    VerificationStatus,
)
from netverify_async._retrieval import (
    AdditionalChecks,
    CheckResult,
    DeleteResult,
    FacemapLink,
    FaceSearchFindings,
    FaceSearchStatus,
    MrzCheck,
    ScanDocument,
    ScanImage,
    ScanTransaction,
    ScanVerification,
    SearchResult,
    parse_delete_result,
    parse_scan_details,
    parse_scan_images,
    parse_scan_status,
)
from netverify_async.callbacks import (
    Address,
    Gender,
    IdentityVerification,
    RejectReason,
    RejectReasonDescription,
    RejectReasonDetailDescription,
    Similarity,
)

UTC = dt.timezone.utc
REF = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

# Samples of the retrieval guide (the two "approved" verification parts merged into one details answer).
STATUS_SAMPLE = {"timestamp": "2019-01-01T16:23:55.039Z", "scanReference": REF, "status": "DONE"}
DETAILS_SAMPLE: dict[str, Any] = {
    "timestamp": "2019-03-20T16:25:38.663Z",
    "scanReference": REF,
    "document": {
        "type": "DRIVING_LICENSE",
        "dob": "1990-01-01",
        "expiry": "2022-12-31",
        "firstName": "FIRST NAME",
        "issuingCountry": "AUT",
        "issuingDate": "2013-01-01",
        "lastName": "LAST NAME",
        "number": "123456789",
        "status": "APPROVED_VERIFIED",
    },
    "transaction": {
        "clientIp": "XX.XX.X.XX",
        "customerId": "CUSTOMERID",
        "date": "2019-01-01T11:01:10.227Z",
        "merchantReportingCriteria": "YOURREPORTINGCRITERIA",
        "merchantScanReference": "YOURSCANREFERENCE",
        "source": "WEB_UPLOAD",
        "status": "DONE",
    },
    "verification": {
        "identityVerification": {"similarity": "MATCH", "validity": "true"},
        "mrzCheck": "NOT_AVAILABLE",
    },
    "facemap": {
        "classifier": "facemap",
        "href": f"https://netverify.com/api/netverify/v2/scans/{REF}/data/facemap",
    },
}
DOCUMENT_SAMPLE = {
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
}
VERIFICATION_APPROVED = {
    "additionalChecks": {
        "addressValidation": {"searchResults": "POSITIVE_RESULT"},
        "proofOfResidency": {"searchResults": "PARTIAL_RESULT"},
        "faceSearchFindings": {"status": "DONE", "findings": [REF, REF]},
        "personalNumberValidation": {"searchResults": "POSITIVE_RESULT"},
    },
    "identityVerification": {"similarity": "MATCH", "validity": "true"},
    "mrzCheck": "OK",
}
VERIFICATION_NOT_READABLE = {
    "mrzCheck": "OK",
    "rejectReason": {"rejectReasonCode": "201", "rejectReasonDescription": "NO_DOCUMENT"},
}
IMAGES_SAMPLE = {
    "timestamp": "2019-03-01T11:53:52.878Z",
    "images": [
        {"classifier": c, "href": f"https://netverify.com/api/netverify/v2/scans/{REF}/images/{c}"}
        for c in ("back", "front", "face")
    ],
    "livenessImages": [
        f"https://netverify.com/api/netverify/v2/scans/{REF}/images/liveness/{n}" for n in (7, 5, 6)
    ],
    "scanReference": REF,
}


def details(**parts: Any) -> dict[str, Any]:
    return {"timestamp": "2019-03-01T11:48:31.331Z", "scanReference": REF, **parts}


# -- scan status ------------------------------------------------------------------------------------


def test_status_sample() -> None:
    status = parse_scan_status(STATUS_SAMPLE)
    assert status == ScanStatus(REF, ScanState.DONE, dt.datetime(2019, 1, 1, 16, 23, 55, 39000, UTC))
    assert status.is_final


@pytest.mark.parametrize(("raw", "final"), [("PENDING", False), ("DONE", True), ("FAILED", True)])
def test_every_scan_state(raw: str, final: bool) -> None:
    status = parse_scan_status({**STATUS_SAMPLE, "status": raw})
    assert status.status is ScanState(raw)
    assert status.is_final is final


def test_unknown_status_is_kept_raw_and_not_final() -> None:
    status = parse_scan_status({**STATUS_SAMPLE, "status": "ARCHIVED", "newKey": 1})
    assert status.status == "ARCHIVED"
    assert not status.is_final
    assert status.extra == {"newKey": 1}
    assert [(p.path, p.code) for p in status.problems] == [("status", "unknown_value")]


def test_status_from_raw_json_bytes_and_text() -> None:
    assert parse_scan_status(json.dumps(STATUS_SAMPLE).encode()) == parse_scan_status(STATUS_SAMPLE)
    assert parse_scan_status(json.dumps(STATUS_SAMPLE)) == parse_scan_status(STATUS_SAMPLE)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>oops</html>", id="not-json"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param("[1, 2]", id="array"),
        pytest.param(["x"], id="list-object"),
        pytest.param({"timestamp": "2019-01-01T16:23:55.039Z", "status": "DONE"}, id="no-reference"),
        pytest.param({"scanReference": 5, "status": "DONE"}, id="numeric-reference"),
        pytest.param({"scanReference": REF}, id="no-status"),
        pytest.param({"scanReference": REF, "status": "N/A"}, id="na-status"),
        pytest.param(
            {"httpStatus": "404", "message": "Not found: Scan not found for x", "requestURI": "https://x/"},
            id="recorded-404-body",
        ),
    ],
)
def test_unusable_status_answers_raise_response_error(body: Any) -> None:
    with pytest.raises(ResponseError) as info:
        parse_scan_status(body)
    assert isinstance(info.value, RequestError)
    assert info.value.operation == "scanStatus"


# -- scan details -----------------------------------------------------------------------------------


def test_details_sample() -> None:
    result = parse_scan_details(DETAILS_SAMPLE)

    assert result.scan_reference == REF
    assert result.timestamp == dt.datetime(2019, 3, 20, 16, 25, 38, 663000, UTC)
    assert result.document == ScanDocument(
        status=VerificationStatus.APPROVED_VERIFIED,
        type=IdType.DRIVING_LICENSE,
        issuing_country="AUT",
        first_name="FIRST NAME",
        last_name="LAST NAME",
        dob=dt.date(1990, 1, 1),
        expiry=dt.date(2022, 12, 31),
        issuing_date=dt.date(2013, 1, 1),
        number="123456789",
    )
    assert result.transaction == ScanTransaction(
        status=ScanState.DONE,
        date=dt.datetime(2019, 1, 1, 11, 1, 10, 227000, UTC),
        source=ScanSource.WEB_UPLOAD,
        merchant_scan_reference="YOURSCANREFERENCE",
        merchant_reporting_criteria="YOURREPORTINGCRITERIA",
        customer_id="CUSTOMERID",
        client_ip="XX.XX.X.XX",
    )
    assert result.verification == ScanVerification(
        mrz_check=MrzCheck.NOT_AVAILABLE,
        identity_verification=IdentityVerification(similarity=Similarity.MATCH, validity=True),
    )
    assert result.facemap == FacemapLink(
        "facemap", f"https://netverify.com/api/netverify/v2/scans/{REF}/data/facemap"
    )
    assert result.is_approved
    assert result.verification_status is VerificationStatus.APPROVED_VERIFIED
    assert result.reject_reason_codes == ()
    assert result.problems == () and result.extra == {}


def test_document_sample_with_gender_nationality_and_personal_number() -> None:
    document = parse_scan_details(details(document=DOCUMENT_SAMPLE)).document
    assert document is not None
    assert document.gender is Gender.M
    assert document.nationality == "BHR"
    assert document.personal_number == "12345679"


def test_verification_sample_with_additional_checks() -> None:
    verification = parse_scan_details(details(verification=VERIFICATION_APPROVED)).verification
    assert verification is not None
    assert verification.mrz_check is MrzCheck.OK
    assert verification.additional_checks == AdditionalChecks(
        address_validation=CheckResult(SearchResult.POSITIVE_RESULT),
        proof_of_residency=CheckResult(SearchResult.PARTIAL_RESULT),
        personal_number_validation=CheckResult(SearchResult.POSITIVE_RESULT),
        face_search_findings=FaceSearchFindings(FaceSearchStatus.DONE, (REF, REF)),
    )


def test_single_face_search_finding_is_a_one_item_tuple() -> None:
    checks = {
        "faceSearchFindings": {"status": "DONE", "findings": REF},
        "addressValidation": {"searchResults": "CHECK_NOT_DONE", "searchResponse": "UNSUPPORTED_COUNTRY"},
    }
    verification = parse_scan_details(details(verification={"additionalChecks": checks})).verification
    assert verification is not None and isinstance(verification.additional_checks, AdditionalChecks)
    assert verification.additional_checks.face_search_findings == FaceSearchFindings(
        FaceSearchStatus.DONE, (REF,)
    )
    assert verification.additional_checks.address_validation == CheckResult(
        SearchResult.CHECK_NOT_DONE, "UNSUPPORTED_COUNTRY"
    )


def test_both_spellings_of_search_response_keep_the_first_and_note_the_second() -> None:
    checks = {"addressValidation": {"searchResponse": "FIRST", "searchReason": "SECOND"}}
    result = parse_scan_details(details(verification={"additionalChecks": checks}))
    assert result.verification is not None and isinstance(
        result.verification.additional_checks, AdditionalChecks
    )
    check = result.verification.additional_checks.address_validation
    assert check == CheckResult(search_response="FIRST", extra={"searchReason": "SECOND"})
    assert [(p.path, p.code) for p in result.problems] == [
        ("verification.additionalChecks.addressValidation.searchReason", "duplicate_field")
    ]


def test_not_readable_sample_has_a_reject_reason_without_details() -> None:
    result = parse_scan_details(
        details(document={"status": "ERROR_NOT_READABLE_ID"}, verification=VERIFICATION_NOT_READABLE)
    )
    assert result.verification is not None
    assert result.verification.reject_reason == RejectReason("201", RejectReasonDescription.NO_DOCUMENT)
    assert result.reject_reason_codes == ("201",)
    assert not result.is_approved


@pytest.mark.parametrize(
    "shape",
    [
        {"detailsCode": "1003", "detailsDescription": "EXPIRY"},
        [{"detailsCode": "1003", "detailsDescription": "EXPIRY"}],
    ],
)
def test_reject_reason_details_object_or_array_is_a_tuple(shape: Any) -> None:
    reason = {
        "rejectReasonCode": "100",
        "rejectReasonDescription": "MANIPULATED_DOCUMENT",
        "rejectReasonDetails": shape,
    }
    result = parse_scan_details(details(verification={"rejectReason": reason}))
    assert result.verification is not None and isinstance(result.verification.reject_reason, RejectReason)
    assert isinstance(result.verification.reject_reason.details, tuple)
    assert result.verification.reject_reason.details[0].description is RejectReasonDetailDescription.EXPIRY
    assert result.reject_reason_codes == ("100", "1003")


@pytest.mark.parametrize("validity", ["TRUE", "true", True, "FALSE", "false", False])
def test_identity_validity_in_every_spelling(validity: Any) -> None:
    result = parse_scan_details(details(verification={"identityVerification": {"validity": validity}}))
    assert result.verification is not None and isinstance(
        result.verification.identity_verification, IdentityVerification
    )
    assert result.verification.identity_verification.validity is (str(validity).lower() == "true")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WEB-CAM", ScanSource.WEB_CAM),
        ("WEB_CAM", ScanSource.WEB_CAM),
        ("WEB-UPLOAD", ScanSource.WEB_UPLOAD),
        ("REDIRECT-UPLOAD", ScanSource.REDIRECT_UPLOAD),
        ("REDIRECT", ScanSource.REDIRECT),
        ("API", ScanSource.API),
    ],
)
def test_transaction_source_in_both_spellings(raw: str, expected: ScanSource) -> None:
    result = parse_scan_details(details(transaction={"source": raw}))
    assert result.transaction is not None and result.transaction.source is expected


def test_the_source_enum_itself_knows_both_spellings() -> None:
    assert ScanSource("WEB-CAM") is ScanSource.WEB_CAM
    assert ScanSource(" redirect-upload ") is ScanSource.REDIRECT_UPLOAD
    with pytest.raises(ValueError):
        ScanSource("WEBCAM")


def test_unknown_values_and_keys_are_kept() -> None:
    result = parse_scan_details(
        details(
            document={"type": "RESIDENCE_CARD", "status": "NEW_STATUS", "gender": "X", "hairColour": "BROWN"},
            transaction={"status": "PENDING", "date": "1 Jan 2019"},
            somethingNew={"a": 1},
        )
    )
    assert result.document is not None and result.transaction is not None
    assert result.document.type == "RESIDENCE_CARD"
    assert result.document.status == "NEW_STATUS"
    assert result.document.gender is Gender.X
    assert result.document.extra == {"hairColour": "BROWN"}
    assert result.transaction.date == "1 Jan 2019"
    assert result.extra == {"somethingNew": {"a": 1}}
    assert {(p.path, p.code) for p in result.problems} == {
        ("document.type", "unknown_value"),
        ("document.status", "unknown_value"),
        ("transaction.date", "bad_timestamp"),
    }


def test_the_retrieval_only_type_unsupported_is_documented_not_a_problem() -> None:
    result = parse_scan_details(
        details(document={"type": "UNSUPPORTED", "status": "DENIED_UNSUPPORTED_ID_TYPE"})
    )
    assert result.document is not None
    assert result.document.type == "UNSUPPORTED"
    assert result.document.status is VerificationStatus.DENIED_UNSUPPORTED_ID_TYPE
    assert result.problems == ()


def test_parts_of_the_wrong_type_move_to_extra() -> None:
    result = parse_scan_details(
        details(document=["not", "an", "object"], transaction="DONE", verification=None)
    )
    assert result.document is None and result.transaction is None and result.verification is None
    assert result.extra == {"document": ["not", "an", "object"], "transaction": "DONE"}
    assert {(p.path, p.code) for p in result.problems} == {
        ("document", "wrong_type"),
        ("transaction", "wrong_type"),
    }


def test_missing_parts_are_none() -> None:
    result = parse_scan_details({"scanReference": REF})
    assert result == ScanDetails(REF)
    assert result.verification_status is None and not result.is_approved


def test_address_object_and_na_values_in_documents() -> None:
    document = parse_scan_details(
        details(
            document={
                "address": {"line1": "1 MAIN ST", "postalCode": "1010", "city": "WIEN", "country": "AUT"},
                "personalNumber": "N/A",
                "number": "",
            }
        )
    ).document
    assert document is not None
    assert document.address == Address(line1="1 MAIN ST", postal_code="1010", city="WIEN", country="AUT")
    assert document.personal_number is None and document.number is None


def test_numbers_sent_as_json_numbers_become_text() -> None:
    document = parse_scan_details(
        details(document={"number": 123456789, "personalNumber": {"x": 1}})
    ).document
    assert document is not None
    assert document.number == "123456789"
    assert document.personal_number == '{"x": 1}'  # kept, as JSON text


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", "null", "[]", {"timestamp": "x"}, {"scanReference": ""}, {"scanReference": None}],
)
def test_unusable_details_answers_raise_response_error(body: Any) -> None:
    with pytest.raises(ResponseError) as info:
        parse_scan_details(body)
    assert info.value.operation == "scanDetails"


def test_details_repr_and_redacted_dict_hide_personal_data() -> None:
    result = parse_scan_details(
        details(**{k: v for k, v in DETAILS_SAMPLE.items() if k != "timestamp"}, **{"extraPart": 1})
    )
    personal = (
        "FIRST NAME",
        "LAST NAME",
        "1990",
        "2022-12",
        "123456789",
        "XX.XX",
        "CUSTOMERID",
        "/data/facemap",
    )
    text = repr(result)
    for value in personal:
        assert value not in text, value
    assert "APPROVED_VERIFIED" in text and "<redacted>" in text
    assert "extraPart" in text and "<redacted>" in text
    redacted_dict = result.to_dict(redact=True)
    assert redacted_dict["extra"] == {"extraPart": "<redacted>"}
    redacted = json.dumps(redacted_dict)
    for value in personal:
        assert value not in redacted, value
    full = result.to_dict()
    assert full["document"]["first_name"] == "FIRST NAME"
    assert full["transaction"]["source"] == "WEB_UPLOAD"
    assert json.loads(json.dumps(full)) == full


def test_response_error_messages_carry_no_values() -> None:
    with pytest.raises(ResponseError) as info:
        parse_scan_details({"scanReference": "   ", "document": {"firstName": "SECRETNAME"}})
    assert "SECRETNAME" not in str(info.value)


def test_every_answer_model_reprs_and_redacts_by_its_personal_flag() -> None:
    """One metadata flag per field drives both repr and to_dict(redact=True), in every answer model."""
    import attrs

    from netverify_async import callbacks

    models = [
        getattr(module, name)
        for module in (callbacks, __import__("netverify_async._retrieval", fromlist=["x"]))
        for name in module.__all__
        if attrs.has(getattr(module, name))
    ]
    assert len(models) >= 15
    for model in models:
        fields = attrs.fields(model)
        personal = [f for f in fields if f.metadata.get("personal")]
        values = {f.name: f"SECRET{i}" for i, f in enumerate(personal)}
        required = {f.name: "R" for f in fields if f.default is attrs.NOTHING}
        instance = model(**{**required, **values})
        text = repr(instance)
        redacted = json.dumps(instance.to_dict(redact=True))
        assert "SECRET" not in text and "SECRET" not in redacted, model
        assert all(instance.to_dict()[name] == value for name, value in values.items()), model


# -- images and delete ------------------------------------------------------------------------------


def test_images_sample() -> None:
    images = parse_scan_images(IMAGES_SAMPLE)
    assert [i.classifier for i in images.images] == ["back", "front", "face"]  # type: ignore[union-attr]
    assert len(images.liveness_images) == 3
    assert images.timestamp == dt.datetime(2019, 3, 1, 11, 53, 52, 878000, UTC)
    assert "netverify.com" not in repr(images)


def test_a_single_image_object_is_a_one_item_tuple() -> None:
    images = parse_scan_images({"scanReference": REF, "images": {"classifier": "front", "href": "u"}})
    assert images.images == (ScanImage("front", "u"),)
    assert images.liveness_images == ()


@pytest.mark.parametrize("body", [None, b"", "", b"   ", b"not json", "[1]", {"unexpected": "x"}])
def test_delete_result_tolerates_any_body(body: Any) -> None:
    result = parse_delete_result(REF, body)
    assert result.scan_reference == REF
    assert result.timestamp is None


def test_delete_result_reads_a_timestamp_when_one_is_sent() -> None:
    result = parse_delete_result(REF, b'{"timestamp": "2021-01-01T00:00:00Z", "scanReference": "x"}')
    assert result == DeleteResult(REF, dt.datetime(2021, 1, 1, tzinfo=UTC), {"scanReference": "x"})


# -- arbitrary answers ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=15),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=10,
)
known_keys = st.sampled_from(
    [
        "document",
        "transaction",
        "verification",
        "facemap",
        "timestamp",
        "status",
        "rejectReason",
        "rejectReasonDetails",
        "identityVerification",
        "validity",
        "additionalChecks",
        "faceSearchFindings",
        "findings",
        "address",
        "dob",
        "source",
        "images",
        "livenessImages",
    ]
)
shaped = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(known_keys, children, max_size=5),
    max_leaves=15,
)


@settings(max_examples=150, deadline=None, database=None)
@given(st.dictionaries(known_keys, shaped, max_size=6), st.booleans())
def test_arbitrary_answers_give_a_model_or_response_error(body: dict[str, Any], with_reference: bool) -> None:
    if with_reference:
        body["scanReference"] = REF
    for parse in (parse_scan_details, parse_scan_status, parse_scan_images):
        try:
            result = parse(body)
        except ResponseError:
            assert not with_reference or parse is parse_scan_status
            continue
        repr(result)
    if with_reference:
        json.dumps(parse_scan_details(body).to_dict(), default=str)
