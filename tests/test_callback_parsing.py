"""parse_callback turns Jumio's form-encoded callback into a typed NetverifyCallback, tolerantly."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
from _support import SAMPLE_APPROVED, SAMPLE_FRAUD

from netverify_async import CallbackParseError, ValidationIssue
from netverify_async.callbacks import (
    Address,
    CallbackType,
    DlCarPermission,
    DlCategory,
    Gender,
    IdCheckResult,
    IdentityVerification,
    IdScanStatus,
    IdSubtype,
    IdType,
    NetverifyCallback,
    RejectReason,
    RejectReasonDescription,
    RejectReasonDetailDescription,
    ScanSource,
    Similarity,
    ValidityReason,
    VerificationStatus,
    parse_callback,
)

UTC = dt.timezone.utc
REF = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

# The Authentication sample of the same guide, shortened: a different kind of callback.
SAMPLE_AUTHENTICATION = (
    "scanSource=SDK&transactionReference=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    "&enrollmentTransactionReference=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx&callBackType=NETVERIFY_AUTHENTICATION"
    "&callbackDate=2019-05-30T08%3A37%3A35.822Z&transactionDate=2019-05-29T08%3A37%3A24.344Z&transactionResult=PASSED"
)
LIVENESS_URLS = [
    f"https://netverify.com/api/netverify/v2/authentications/{REF}/images/liveness/{n}" for n in range(1, 8)
]


def form(**fields: Any) -> str:
    """A urlencoded callback body with a scan reference plus ``fields`` (JSON-encoded when not a string)."""
    body = {"jumioIdScanReference": REF}
    for key, value in fields.items():
        body[key] = value if isinstance(value, str) else json.dumps(value)
    return urllib.parse.urlencode(body)


def codes(callback: NetverifyCallback) -> dict[str, str]:
    return {issue.path: issue.code for issue in callback.problems}


# -- the documented samples -------------------------------------------------------------------------


def test_approved_sample_is_fully_typed() -> None:
    cb = parse_callback(SAMPLE_APPROVED.encode())

    assert cb.jumio_id_scan_reference == REF
    assert cb.verification_status is VerificationStatus.APPROVED_VERIFIED
    assert cb.is_approved and cb.is_final
    assert cb.id_scan_status is IdScanStatus.SUCCESS
    assert cb.callback_type is CallbackType.NETVERIFYID
    assert cb.id_scan_source is ScanSource.SDK
    assert cb.id_type is IdType.PASSPORT
    assert cb.id_country == "USA"
    for check in (
        cb.id_check_data_positions,
        cb.id_check_document_validation,
        cb.id_check_hologram,
        cb.id_check_mrz_code,
        cb.id_check_microprint,
        cb.id_check_security_features,
        cb.id_check_signature,
    ):
        assert check is IdCheckResult.OK
    assert cb.id_first_name == "FIRSTNAME"
    assert cb.id_last_name == "LASTNAME"
    assert cb.id_dob == dt.date(1990, 1, 1)
    assert cb.id_expiry == dt.date(2022, 12, 31)
    assert cb.id_number == "P1234"
    assert cb.personal_number is None  # sent as N/A
    assert cb.merchant_id_scan_reference == "YOURIDSCANREFERENCE"
    assert cb.client_ip == "xxx.xxx.xxx.xxx"  # a placeholder; kept as sent, it is not ours to judge
    assert cb.id_scan_image == f"https://netverify.com/recognition/v1/idscan/{REF}/front"
    assert cb.id_address == Address(country="USA", state_code="US-OH")
    assert cb.identity_verification == IdentityVerification(similarity=Similarity.MATCH, validity=True)
    assert isinstance(cb.identity_verification, IdentityVerification)
    assert cb.identity_verification.is_verified
    assert cb.reject_reason is None and cb.reject_reason_codes == ()
    # The sample omits transactionDate and callbackDate although the table calls them required.
    assert cb.transaction_date is None and cb.callback_date is None
    assert cb.extra == {}
    assert cb.problems == ()


def test_fraud_sample_has_reject_reason_with_array_details_and_na_checks() -> None:
    cb = parse_callback(SAMPLE_FRAUD)

    assert cb.verification_status is VerificationStatus.DENIED_FRAUD
    assert not cb.is_approved
    assert cb.id_scan_status is IdScanStatus.ERROR
    assert isinstance(cb.reject_reason, RejectReason)
    assert cb.reject_reason.code == "100"
    assert cb.reject_reason.description is RejectReasonDescription.MANIPULATED_DOCUMENT
    assert isinstance(cb.reject_reason.details, tuple)
    assert [(d.code, d.description) for d in cb.reject_reason.details] == [
        ("1001", RejectReasonDetailDescription.PHOTO),
        ("1004", RejectReasonDetailDescription.DOB),
    ]
    assert cb.reject_reason_codes == ("100", "1001", "1004")
    # For idCheck* fields N/A is a documented value, not "absent".
    assert cb.id_check_signature is IdCheckResult.NOT_AVAILABLE
    assert cb.id_check_mrz_code is IdCheckResult.NOT_AVAILABLE
    assert cb.problems == ()


@pytest.mark.parametrize(
    "as_input",
    [
        pytest.param(lambda s: s, id="str"),
        pytest.param(lambda s: s.encode(), id="bytes"),
        pytest.param(lambda s: bytearray(s.encode()), id="bytearray"),
        pytest.param(lambda s: dict(urllib.parse.parse_qsl(s)), id="mapping-of-str"),
        pytest.param(lambda s: urllib.parse.parse_qs(s), id="mapping-of-lists"),
    ],
)
def test_raw_body_and_decoded_form_give_the_same_result(as_input: Any) -> None:
    expected = parse_callback(SAMPLE_FRAUD)
    assert parse_callback(as_input(SAMPLE_FRAUD)) == expected


# -- every documented field -------------------------------------------------------------------------

#: Every parameter of the guide's table, line by line, with a plausible value and the attribute it lands in.
DOCUMENTED_FIELDS: dict[str, tuple[str, str, Any]] = {
    "callBackType": ("callback_type", "NETVERIFYID", CallbackType.NETVERIFYID),
    "verificationStatus": ("verification_status", "APPROVED_VERIFIED", VerificationStatus.APPROVED_VERIFIED),
    "idScanStatus": ("id_scan_status", "SUCCESS", IdScanStatus.SUCCESS),
    "idScanSource": ("id_scan_source", "WEB_UPLOAD", ScanSource.WEB_UPLOAD),
    "idCheckDataPositions": ("id_check_data_positions", "OK", IdCheckResult.OK),
    "idCheckDocumentValidation": ("id_check_document_validation", "OK", IdCheckResult.OK),
    "idCheckHologram": ("id_check_hologram", "OK", IdCheckResult.OK),
    "idCheckMRZcode": ("id_check_mrz_code", "N/A", IdCheckResult.NOT_AVAILABLE),
    "idCheckMicroprint": ("id_check_microprint", "OK", IdCheckResult.OK),
    "idCheckSecurityFeatures": ("id_check_security_features", "OK", IdCheckResult.OK),
    "idCheckSignature": ("id_check_signature", "OK", IdCheckResult.OK),
    "transactionDate": (
        "transaction_date",
        "2021-03-04T05:06:07.891Z",
        dt.datetime(2021, 3, 4, 5, 6, 7, 891000, UTC),
    ),
    "callbackDate": ("callback_date", "2021-03-04T05:16:07Z", dt.datetime(2021, 3, 4, 5, 16, 7, tzinfo=UTC)),
    "identityVerification": (
        "identity_verification",
        '{"similarity":"NO_MATCH","validity":"FALSE","reason":"LIVENESS_FAILED"}',
        IdentityVerification(Similarity.NO_MATCH, False, ValidityReason.LIVENESS_FAILED),
    ),
    "idType": ("id_type", "ID_CARD", IdType.ID_CARD),
    "idSubtype": ("id_subtype", "NATIONAL_ID", IdSubtype.NATIONAL_ID),
    "idCountry": ("id_country", "XKX", "XKX"),
    "rejectReason": (
        "reject_reason",
        '{"rejectReasonCode":"201","rejectReasonDescription":"NO_DOCUMENT"}',
        RejectReason("201", RejectReasonDescription.NO_DOCUMENT),
    ),
    "idScanImage": ("id_scan_image", "https://example.test/front", "https://example.test/front"),
    "idScanImageFace": ("id_scan_image_face", "https://example.test/face", "https://example.test/face"),
    "idScanImageBackside": (
        "id_scan_image_backside",
        "https://example.test/back",
        "https://example.test/back",
    ),
    "idNumber": ("id_number", "X123", "X123"),
    "idFirstName": ("id_first_name", "ANNA", "ANNA"),
    "idLastName": ("id_last_name", "MUSTER", "MUSTER"),
    "idDob": ("id_dob", "1980-02-29", dt.date(1980, 2, 29)),
    "idExpiry": ("id_expiry", "2031-01-31", dt.date(2031, 1, 31)),
    "idUsState": ("id_us_state", "OH", "OH"),
    "personalNumber": ("personal_number", "12345678901234", "12345678901234"),
    "idAddress": (
        "id_address",
        '{"line1":"1 MAIN ST","city":"TOWN"}',
        Address(line1="1 MAIN ST", city="TOWN"),
    ),
    "merchantIdScanReference": ("merchant_id_scan_reference", "order-1", "order-1"),
    "merchantReportingCriteria": ("merchant_reporting_criteria", "crit", "crit"),
    "customerId": ("customer_id", "cust-9", "cust-9"),
    "clientIp": ("client_ip", "192.0.2.10", "192.0.2.10"),
    "firstAttemptDate": (
        "first_attempt_date",
        "2021-03-04T05:00:00.1Z",
        dt.datetime(2021, 3, 4, 5, 0, 0, 100000, UTC),
    ),
    "optionalData1": ("optional_data1", "OPT1", "OPT1"),
    "optionalData2": ("optional_data2", "OPT2", "OPT2"),
    "dni": ("dni", "12345678Z", "12345678Z"),
    "curp": ("curp", "CURP000000HDFXXX00", "CURP000000HDFXXX00"),
    "gender": ("gender", "F", Gender.F),
    "presetCountry": ("preset_country", "AUT", "AUT"),
    "presetIdType": ("preset_id_type", "DRIVING_LICENSE", IdType.DRIVING_LICENSE),
    "dlCarPermission": ("dl_car_permission", "NOT_READABLE", DlCarPermission.NOT_READABLE),
    "dlCategories": (
        "dl_categories",
        '[{"category":"B","issueDate":"2010-05-06","isReadable":"FALSE"},{"category":"AM","availability":"yes"}]',
        (DlCategory("B", dt.date(2010, 5, 6), None, False), DlCategory("AM", availability="yes")),
    ),
    "nationality": ("nationality", "BEL", "BEL"),
    "passportNumber": ("passport_number", "PN1", "PN1"),
    "durationOfStay": ("duration_of_stay", "90", "90"),
    "numberOfEntries": ("number_of_entries", "M", "M"),
    "visaCategory": ("visa_category", "B1", "B1"),
    "originDob": ("origin_dob", "1990//09", "1990//09"),
    "issuingAuthority": ("issuing_authority", "COMUNE", "COMUNE"),
    "issuingDate": ("issuing_date", "2015-07-08", dt.date(2015, 7, 8)),
    "issuingPlace": ("issuing_place", "ROMA", "ROMA"),
    "livenessImages": ("liveness_images", json.dumps(LIVENESS_URLS), tuple(LIVENESS_URLS)),
    "placeOfBirth": ("place_of_birth", "PARIS", "PARIS"),
    "facemap": ("facemap", "https://example.test/facemap", "https://example.test/facemap"),
    "taxNumber": ("tax_number", "TX1", "TX1"),
    "cpf": ("cpf", "000.000.000-00", "000.000.000-00"),
    "registrationNumber": ("registration_number", "R1", "R1"),
    "mothersName": ("mothers_name", "MARIA", "MARIA"),
    "fathersName": ("fathers_name", "JOSE", "JOSE"),
    "personalIdentificationNumber": ("personal_identification_number", "PIN1", "PIN1"),
    "rgNumber": ("rg_number", "RG1", "RG1"),
    "voterIdNumber": ("voter_id_number", "VOTER1", "VOTER1"),
    "issuingNumber": ("issuing_number", "07", "07"),
}


def test_every_documented_field_has_an_attribute_and_nothing_lands_in_extra() -> None:
    cb = parse_callback(form(**{key: raw for key, (_, raw, _) in DOCUMENTED_FIELDS.items()}))

    assert cb.extra == {}
    assert cb.problems == ()
    for key, (attribute, _, expected) in DOCUMENTED_FIELDS.items():
        assert getattr(cb, attribute) == expected, key


def test_every_attribute_is_reachable_from_a_wire_field() -> None:
    import attrs

    reachable = {attribute for attribute, _, _ in DOCUMENTED_FIELDS.values()}
    legacy = {"id_face_match", "id_face_liveness"}
    special = {"jumio_id_scan_reference", "extra", "problems"}
    assert {f.name for f in attrs.fields(NetverifyCallback)} == reachable | legacy | special


def test_legacy_face_match_fields_are_still_read() -> None:
    cb = parse_callback(form(idFaceMatch="93", idFaceLiveness="TRUE"))
    assert cb.id_face_match == "93" and cb.id_face_liveness is True


# -- statuses and enum tolerance --------------------------------------------------------------------


@pytest.mark.parametrize("status", list(VerificationStatus))
def test_every_verification_status_parses(status: VerificationStatus) -> None:
    cb = parse_callback(form(verificationStatus=status.value))
    assert cb.verification_status is status
    assert cb.is_approved == (status is VerificationStatus.APPROVED_VERIFIED)
    assert cb.is_final


def test_unknown_enum_values_are_kept_raw_and_noted() -> None:
    cb = parse_callback(
        form(
            verificationStatus="APPROVED_PENDING_REVIEW",
            idType="RESIDENCE_PERMIT",
            idScanStatus="MAYBE",
            gender="Q",
        )
    )
    assert cb.verification_status == "APPROVED_PENDING_REVIEW"
    assert not isinstance(cb.verification_status, VerificationStatus)
    assert cb.id_type == "RESIDENCE_PERMIT"
    assert cb.id_scan_status == "MAYBE"
    assert cb.gender == "Q"
    assert not cb.is_approved and cb.is_final
    assert codes(cb) == {
        "verificationStatus": "unknown_value",
        "idType": "unknown_value",
        "idScanStatus": "unknown_value",
        "gender": "unknown_value",
    }


def test_gender_x_seen_in_real_traffic_is_a_known_value() -> None:
    assert parse_callback(form(gender="X")).gender is Gender.X


def test_enum_values_in_other_case_are_recognised() -> None:
    cb = parse_callback(form(verificationStatus="approved_verified"))
    assert cb.verification_status is VerificationStatus.APPROVED_VERIFIED


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("WEB_CAM", ScanSource.WEB_CAM),
        ("WEB-CAM", ScanSource.WEB_CAM),
        ("WEB_UPLOAD", ScanSource.WEB_UPLOAD),
        ("WEB-UPLOAD", ScanSource.WEB_UPLOAD),
        ("REDIRECT-CAM", ScanSource.REDIRECT_CAM),
        ("web-cam", ScanSource.WEB_CAM),
        ("API", ScanSource.API),
        ("SDK", ScanSource.SDK),
        ("WEB", ScanSource.WEB),
    ],
)
def test_both_source_spellings_are_normalised(raw: str, expected: ScanSource) -> None:
    assert parse_callback(form(idScanSource=raw)).id_scan_source is expected


def test_callback_type_accepts_both_spellings_of_the_key() -> None:
    assert parse_callback(form(callbackType="NETVERIFYID")).callback_type is CallbackType.NETVERIFYID
    assert parse_callback(form(callBackType="NETVERIFYID")).callback_type is CallbackType.NETVERIFYID


def test_both_spellings_of_callback_type_keep_the_first_and_note_it() -> None:
    cb = parse_callback(f"jumioIdScanReference={REF}&callBackType=NETVERIFYID&callbackType=OTHER")
    assert cb.callback_type is CallbackType.NETVERIFYID
    assert cb.extra == {"callbackType": "OTHER"}
    assert codes(cb) == {"callbackType": "duplicate_field"}


# -- reject reasons ---------------------------------------------------------------------------------


def test_reject_reason_details_as_a_single_object_become_a_one_item_tuple() -> None:
    reason = {
        "rejectReasonCode": "200",
        "rejectReasonDescription": "NOT_READABLE_DOCUMENT",
        "rejectReasonDetails": {"detailsCode": "2001", "detailsDescription": "BLURRED"},
    }
    cb = parse_callback(form(verificationStatus="ERROR_NOT_READABLE_ID", rejectReason=reason))
    assert isinstance(cb.reject_reason, RejectReason)
    assert isinstance(cb.reject_reason.details, tuple) and len(cb.reject_reason.details) == 1
    assert cb.reject_reason.details[0].description is RejectReasonDetailDescription.BLURRED
    assert cb.reject_reason_codes == ("200", "2001")


def test_reject_reason_without_details_has_an_empty_tuple() -> None:
    cb = parse_callback(
        form(rejectReason={"rejectReasonCode": "201", "rejectReasonDescription": "NO_DOCUMENT"})
    )
    assert isinstance(cb.reject_reason, RejectReason)
    assert cb.reject_reason.details == ()
    assert cb.reject_reason_codes == ("201",)


@pytest.mark.parametrize("details", [[], None, ""])
def test_empty_reject_reason_details_are_an_empty_tuple(details: Any) -> None:
    cb = parse_callback(form(rejectReason={"rejectReasonCode": "100", "rejectReasonDetails": details}))
    assert isinstance(cb.reject_reason, RejectReason)
    assert cb.reject_reason.details == ()


def test_reject_reason_details_sent_as_json_text_are_decoded_too() -> None:
    details = json.dumps([{"detailsCode": "1005", "detailsDescription": "NAME"}])
    cb = parse_callback(form(rejectReason={"rejectReasonCode": "100", "rejectReasonDetails": details}))
    assert cb.reject_reason_codes == ("100", "1005")


def test_reject_reason_with_numeric_codes_and_unknown_detail() -> None:
    reason = {
        "rejectReasonCode": 100,
        "rejectReasonDescription": "MANIPULATED_DOCUMENT",
        "rejectReasonDetails": [
            {"detailsCode": 1099, "detailsDescription": "HOLOGRAM_MISSING", "score": 3},
            7,
        ],
    }
    cb = parse_callback(form(rejectReason=reason))
    assert isinstance(cb.reject_reason, RejectReason)
    assert cb.reject_reason_codes == ("100", "1099")
    assert isinstance(cb.reject_reason.details, tuple)
    detail = cb.reject_reason.details[0]
    assert detail.description == "HOLOGRAM_MISSING"
    assert detail.extra == {"score": 3}
    assert codes(cb) == {
        "rejectReason.rejectReasonDetails[0].detailsDescription": "unknown_value",
        "rejectReason.rejectReasonDetails[1]": "wrong_type",
    }


def test_reject_reason_code_maps_to_its_documented_number() -> None:
    assert RejectReasonDescription.MANIPULATED_DOCUMENT.code == "100"
    assert RejectReasonDescription.MANUAL_REJECTION.code == "300"
    assert RejectReasonDetailDescription.PLACE_OF_BIRTH.code == "10011"
    assert all(member.code for member in RejectReasonDescription)
    assert all(member.code for member in RejectReasonDetailDescription)


# -- absent, masked and empty values ----------------------------------------------------------------


def test_na_and_empty_values_are_absent() -> None:
    cb = parse_callback(form(idFirstName="N/A", idLastName="", idNumber=" N/A ", idDob="", idAddress="N/A"))
    assert (cb.id_first_name, cb.id_last_name, cb.id_number, cb.id_dob, cb.id_address) == (None,) * 5
    assert cb.problems == ()


def test_masked_fields_that_are_not_sent_are_none() -> None:
    # Masking (e.g. a German passport) leaves idCheckMRZcode and idNumber out of the callback entirely.
    cb = parse_callback(form(verificationStatus="APPROVED_VERIFIED", idCountry="DEU", idCheckSignature="OK"))
    assert cb.id_check_mrz_code is None
    assert cb.id_number is None
    assert cb.id_check_signature is IdCheckResult.OK


def test_placeholder_looking_values_are_kept_as_sent() -> None:
    cb = parse_callback(form(idNumber="XXXX", clientIp="xxx.xxx.xxx.xxx"))
    assert cb.id_number == "XXXX"
    assert cb.client_ip == "xxx.xxx.xxx.xxx"


@pytest.mark.parametrize("value", ["", "{}", "N/A", "null"])
def test_empty_id_address_is_absent(value: str) -> None:
    cb = parse_callback(form(idAddress=value))
    assert cb.id_address is None
    assert cb.problems == ()


def test_id_address_with_unknown_keys_keeps_them() -> None:
    cb = parse_callback(
        form(idAddress={"line1": "MAIN ST 1", "postalCode": "1010", "county": "X", "line9": "Y"})
    )
    assert isinstance(cb.id_address, Address)
    assert cb.id_address.line1 == "MAIN ST 1" and cb.id_address.postal_code == "1010"
    assert cb.id_address.extra == {"county": "X", "line9": "Y"}


# -- unknown fields ---------------------------------------------------------------------------------


def test_unknown_fields_are_kept_in_extra_never_dropped() -> None:
    cb = parse_callback(form(brandNewField="42", anotherOne="", weird="N/A"))
    assert cb.extra == {"brandNewField": "42", "anotherOne": "", "weird": "N/A"}
    assert cb.problems == ()


def test_repeated_field_keeps_first_value_and_notes_only_a_conflict() -> None:
    same = parse_callback(f"jumioIdScanReference={REF}&idCountry=AUT&idCountry=AUT")
    assert same.id_country == "AUT" and same.problems == ()
    different = parse_callback(f"jumioIdScanReference={REF}&idCountry=AUT&idCountry=DEU")
    assert different.id_country == "AUT"
    assert codes(different) == {"idCountry": "duplicate_field"}


def test_raw_unencoded_utf8_text_is_tolerated() -> None:
    cb = parse_callback(f"jumioIdScanReference={REF}&idLastName=MÜLLER\u00a0JR".encode())
    assert cb.id_last_name == "MÜLLER\u00a0JR"


def test_plus_and_percent_encoding_are_decoded() -> None:
    cb = parse_callback(f"jumioIdScanReference={REF}&idFirstName=ANNA+MARIA&idLastName=M%C3%9CLLER")
    assert cb.id_first_name == "ANNA MARIA"
    assert cb.id_last_name == "MÜLLER"


# -- timestamps and dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "micro"),
    [
        ("2019-05-30T08:37:35Z", 0),
        ("2019-05-30T08:37:35.8Z", 800000),
        ("2019-05-30T08:37:35.82Z", 820000),
        ("2019-05-30T08:37:35.822Z", 822000),
        ("2019-05-30T08:37:35.822", 822000),
        ("2019-05-30T08:37:35", 0),
        ("2019-05-30T08:37:35.822+00:00", 822000),
        ("2019-05-30T10:37:35.822+02:00", 822000),
        ("2019-05-30T08:37:35.822123456Z", 822123),
    ],
)
def test_timestamps_with_0_to_3_millisecond_digits_and_optional_zone(raw: str, micro: int) -> None:
    cb = parse_callback(form(transactionDate=raw, callbackDate=raw, firstAttemptDate=raw))
    expected = dt.datetime(2019, 5, 30, 8, 37, 35, micro, tzinfo=UTC)
    for value in (cb.transaction_date, cb.callback_date, cb.first_attempt_date):
        assert isinstance(value, dt.datetime)
        assert value == expected
        assert value.utcoffset() == dt.timedelta(0)
    assert cb.problems == ()


@pytest.mark.parametrize(
    "raw", ["2019-13-30T08:37:35Z", "yesterday", "2019-05-30", "2019-05-30T25:00:00Z", "٢٠١٩-05-30T08:37:35Z"]
)
def test_unparseable_timestamps_are_kept_raw_and_noted(raw: str) -> None:
    cb = parse_callback(form(transactionDate=raw))
    assert cb.transaction_date == raw
    assert codes(cb) == {"transactionDate": "bad_timestamp"}


@pytest.mark.parametrize("raw", ["1990-02-30", "01.02.1990", "1990-1-1", "1990"])
def test_unparseable_dates_are_kept_raw_and_noted(raw: str) -> None:
    cb = parse_callback(form(idDob=raw))
    assert cb.id_dob == raw
    assert codes(cb) == {"idDob": "bad_date"}


def test_incomplete_hkg_dob_keeps_its_origin_form() -> None:
    cb = parse_callback(form(idDob="1990-01-09", originDob="1990//09"))
    assert cb.id_dob == dt.date(1990, 1, 9)
    assert cb.origin_dob == "1990//09"


# -- JSON inside form fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "attribute"),
    [
        ("rejectReason", "reject_reason"),
        ("identityVerification", "identity_verification"),
        ("idAddress", "id_address"),
        ("livenessImages", "liveness_images"),
        ("dlCategories", "dl_categories"),
    ],
)
@pytest.mark.parametrize("garbage", ['{"similarity": "MATCH"', "{'a': 1}", "[1, 2", "not json"])
def test_malformed_json_in_a_field_is_kept_raw_and_noted(field: str, attribute: str, garbage: str) -> None:
    cb = parse_callback(form(verificationStatus="DENIED_FRAUD", **{field: garbage}))
    assert getattr(cb, attribute) == garbage
    assert codes(cb) == {field: "malformed_json"}
    assert cb.verification_status is VerificationStatus.DENIED_FRAUD  # the rest is still read


def test_json_of_the_wrong_shape_is_kept_raw_and_noted() -> None:
    cb = parse_callback(
        form(rejectReason="[1, 2]", identityVerification='"MATCH"', livenessImages='{"a": 1}')
    )
    assert cb.reject_reason == "[1, 2]"
    assert cb.identity_verification == '"MATCH"'
    assert cb.liveness_images == '{"a": 1}'
    assert set(codes(cb).values()) == {"wrong_type"}


def test_deeply_nested_json_does_not_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    cb = parse_callback(form(rejectReason=deep))
    assert cb.reject_reason == deep
    assert codes(cb) == {"rejectReason": "malformed_json"}


@pytest.mark.parametrize(
    ("validity", "expected"),
    [
        ('"TRUE"', True),
        ('"true"', True),
        ("true", True),
        ('"True"', True),
        ('"FALSE"', False),
        ('"false"', False),
        ("false", False),
    ],
)
def test_identity_validity_in_every_spelling(validity: str, expected: bool) -> None:
    cb = parse_callback(form(identityVerification=f'{{"similarity":"MATCH","validity":{validity}}}'))
    assert isinstance(cb.identity_verification, IdentityVerification)
    assert cb.identity_verification.validity is expected
    assert cb.problems == ()


@pytest.mark.parametrize(("validity", "kept"), [('"maybe"', "maybe"), ("1", "1"), ('"YES"', "YES")])
def test_unknown_validity_is_kept_raw(validity: str, kept: str) -> None:
    cb = parse_callback(form(identityVerification=f'{{"similarity":"MATCH","validity":{validity}}}'))
    assert isinstance(cb.identity_verification, IdentityVerification)
    assert cb.identity_verification.validity == kept
    assert not cb.identity_verification.is_verified
    assert codes(cb) == {"identityVerification.validity": "unknown_value"}


def test_identity_verification_keeps_the_similarity_score_and_unknown_keys() -> None:
    payload = {
        "similarity": "MATCH",
        "validity": "TRUE",
        "similarityScore": 0.93,
        "similarityDecision": "MANUAL",
        "x": 1,
    }
    cb = parse_callback(form(identityVerification=payload))
    assert isinstance(cb.identity_verification, IdentityVerification)
    assert cb.identity_verification.similarity_score == "0.93"
    assert cb.identity_verification.similarity_decision == "MANUAL"
    assert cb.identity_verification.extra == {"x": 1}


def test_liveness_images_from_the_guides_sample() -> None:
    cb = parse_callback(form(livenessImages=LIVENESS_URLS))
    assert cb.liveness_images == tuple(LIVENESS_URLS)


def test_dl_categories_as_a_single_object() -> None:
    cb = parse_callback(form(dlCategories={"category": "B", "expiryDate": "2030-01-01"}))
    assert cb.dl_categories == (DlCategory("B", None, dt.date(2030, 1, 1)),)


# -- what is not a callback -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="blank"),
        pytest.param(b"\xff\xfe\x00\x01binary", id="not-utf8"),
        pytest.param(b"jumioIdScanReference=abc\x00def", id="nul-byte"),
        pytest.param("jumioIdScanReference=abc\x07", id="control-char"),
        pytest.param(b'{"jumioIdScanReference": "abc"}', id="json-object"),
        pytest.param(b"[1,2,3]", id="json-array"),
        pytest.param(b"jumioIdScanReference=%FF%FE", id="bad-percent-utf8"),
        pytest.param(b"verificationStatus=APPROVED_VERIFIED", id="no-reference"),
        pytest.param(b"jumioIdScanReference=&verificationStatus=APPROVED_VERIFIED", id="empty-reference"),
        pytest.param(b"jumioIdScanReference=N%2FA", id="na-reference"),
        pytest.param(b"jumioIdScanReference=abc+def", id="reference-with-space"),
        pytest.param(b"jumioIdScanReference=abc%0Adef", id="reference-with-newline"),
        pytest.param({"verificationStatus": "DENIED_FRAUD"}, id="mapping-without-reference"),
        pytest.param({"jumioIdScanReference": b"abc"}, id="mapping-bytes-value"),
        pytest.param({"jumioIdScanReference": ["abc", 5]}, id="mapping-non-text-item"),
        pytest.param({"jumioIdScanReference": None}, id="mapping-none-value"),
        pytest.param({1: "abc"}, id="mapping-non-text-key"),
    ],
)
def test_bodies_that_are_not_callbacks_raise_callback_parse_error(body: Any) -> None:
    with pytest.raises(CallbackParseError):
        parse_callback(body)


def test_callback_parse_error_is_a_value_error_and_names_the_field() -> None:
    with pytest.raises(ValueError, match="jumioIdScanReference"):
        parse_callback("verificationStatus=APPROVED_VERIFIED")


def test_other_kinds_of_callback_are_named_in_the_error() -> None:
    with pytest.raises(CallbackParseError, match="Authentication callback"):
        parse_callback(SAMPLE_AUTHENTICATION)
    document_verification = (
        "timestamp=2017-06-06T12%3A06%3A49.016Z&scanReference=x&document=%7B%7D&transaction=%7B%7D"
    )
    with pytest.raises(CallbackParseError, match="Document Verification callback"):
        parse_callback(document_verification)


def test_oversized_and_overlong_forms_are_refused() -> None:
    from netverify_async._constants import CALLBACK_MAX_BODY_BYTES, CALLBACK_MAX_FIELDS

    with pytest.raises(CallbackParseError, match="larger"):
        parse_callback(b"jumioIdScanReference=a&x=" + b"y" * CALLBACK_MAX_BODY_BYTES)
    with pytest.raises(CallbackParseError, match="fields"):
        parse_callback("jumioIdScanReference=a" + "&k=v" * CALLBACK_MAX_FIELDS)
    with pytest.raises(CallbackParseError, match="fields"):
        parse_callback({f"k{i}": "v" for i in range(CALLBACK_MAX_FIELDS + 1)})


def test_wrong_argument_type_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse_callback(42)  # type: ignore[arg-type]


def test_minimal_callback_is_just_a_reference() -> None:
    cb = parse_callback(b"jumioIdScanReference=abc-123")
    assert cb == NetverifyCallback("abc-123")
    assert not cb.is_final and not cb.is_approved


def test_reference_outside_the_documented_form_is_accepted_but_noted() -> None:
    cb = parse_callback(form(jumioIdScanReference="ref_with_underscores_and_more_than_36_chars_0000"))
    assert codes(cb) == {"jumioIdScanReference": "unexpected_format"}


def test_leading_and_trailing_whitespace_of_the_body_is_ignored() -> None:
    assert parse_callback(SAMPLE_FRAUD + "\r\n") == parse_callback(SAMPLE_FRAUD)


# -- privacy ----------------------------------------------------------------------------------------

PERSONAL_VALUES = ("FIRSTNAME", "LASTNAME", "1990", "2022", "P1234", "xxx.xxx", "netverify.com", "US-OH")


def test_repr_hides_personal_data() -> None:
    cb = parse_callback(SAMPLE_APPROVED)
    for text in (repr(cb), str(cb), repr(cb.id_address), repr(cb.identity_verification)):
        for value in PERSONAL_VALUES:
            assert value not in text
    assert "<redacted>" in repr(cb)
    assert "APPROVED_VERIFIED" in repr(cb)  # the outcome stays visible
    assert REF in repr(cb)


def test_repr_of_a_full_callback_hides_every_personal_value() -> None:
    cb = parse_callback(
        form(**{key: raw for key, (_, raw, _) in DOCUMENTED_FIELDS.items()}, secretExtra="HIDDEN9")
    )
    text = repr(cb)
    for value in (
        "ANNA",
        "MUSTER",
        "X123",
        "1980",
        "2031",
        "192.0.2.10",
        "cust-9",
        "MAIN ST",
        "example.test",
        "MARIA",
        "JOSE",
        "12345678Z",
        "PARIS",
        "ROMA",
        "COMUNE",
        "PN1",
        "1990//09",
        "HIDDEN9",
        "liveness/",
    ):
        assert value not in text, value
    assert "secretExtra" in text  # unknown field names are shown, their values are not


def test_to_dict_is_json_serialisable_and_can_redact() -> None:
    cb = parse_callback(SAMPLE_APPROVED)
    full = cb.to_dict()
    assert json.loads(json.dumps(full)) == full
    assert full["id_first_name"] == "FIRSTNAME"
    assert full["id_dob"] == "1990-01-01"
    assert full["verification_status"] == "APPROVED_VERIFIED"
    assert full["identity_verification"]["validity"] is True
    assert full["id_address"]["state_code"] == "US-OH"

    redacted = json.dumps(cb.to_dict(redact=True))
    for value in PERSONAL_VALUES:
        assert value not in redacted
    assert "APPROVED_VERIFIED" in redacted
    assert cb.to_dict(redact=True)["id_address"] == "<redacted>"


def test_to_dict_renders_timestamps_tuples_and_problems() -> None:
    cb = parse_callback(form(transactionDate="2019-05-30T08:37:35.8Z", livenessImages=["u1"], idDob="bad"))
    data = cb.to_dict()
    assert data["transaction_date"] == "2019-05-30T08:37:35.800000Z"
    assert data["liveness_images"] == ["u1"]
    assert data["problems"] == [
        {"path": "idDob", "code": "bad_date", "message": "is not a YYYY-MM-DD date; kept as sent"}
    ]
    redacted = cb.to_dict(redact=True)
    assert redacted["id_dob"] == "<redacted>" and redacted["liveness_images"] == "<redacted>"


def test_problem_messages_and_errors_never_repeat_the_value() -> None:
    cb = parse_callback(
        form(idDob="SECRETDOB", transactionDate="SECRETTS", rejectReason="{SECRETJSON", gender="SECRETG")
    )
    assert len(cb.problems) == 4
    for issue in cb.problems:
        assert isinstance(issue, ValidationIssue)
        assert "SECRET" not in str(issue)
    with pytest.raises(CallbackParseError) as info:
        parse_callback("jumioIdScanReference=SECRET+REF")
    assert "SECRET" not in str(info.value)


def test_callback_objects_are_frozen_and_hashable() -> None:
    import attrs

    cb = parse_callback(SAMPLE_FRAUD)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        cb.verification_status = VerificationStatus.APPROVED_VERIFIED  # type: ignore[misc]
    assert hash(cb) == hash(parse_callback(SAMPLE_FRAUD))
    assert not hasattr(cb, "__dict__")  # slotted


def test_importing_callbacks_adds_nothing_heavy_to_the_package() -> None:
    import subprocess
    import sys

    def loaded(module: str) -> set[str]:
        script = f"import sys, {module}; print(','.join(sorted(sys.modules)))"
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
        return set(out.strip().split(","))

    added = loaded("netverify_async.callbacks") - loaded("netverify_async")
    heavy = {
        "anyio",
        "httpx",
        "pycountry",
        "PIL",
        "cattrs",
        "socket",
        "asyncio",
        "trio",
        "starlette",
        "fastapi",
    }
    assert not heavy & added


@pytest.mark.parametrize(
    ("reference", "noted"),
    [
        ("0b5f8c3e-1111-4222-8333-944445555666", False),
        ("ref_with_underscore", False),  # the retrieval URL rule allows '_'; the guides give no character set
        ("x" * 36, False),
        ("x" * 37, True),  # longer than the documented 36
        ("ref.with.dots", True),  # not usable as a retrieval URL segment
    ],
)
def test_the_reference_rule_is_the_one_of_the_constants(reference: str, noted: bool) -> None:
    cb = parse_callback(form(jumioIdScanReference=reference))
    assert cb.jumio_id_scan_reference == reference
    assert (codes(cb) == {"jumioIdScanReference": "unexpected_format"}) is noted
