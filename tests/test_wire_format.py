"""The JSON wire format: exact keys, omission, scalar formats, strict parsing, and round trips."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from netverify_async import (
    CallbackGranularity,
    Consent,
    ConsentObtained,
    EnabledField,
    IdType,
    Image,
    MimeType,
    NetverifyRequest,
    RequestValidationError,
    ResponseError,
    ScanReceipt,
    UserConsent,
    UserLocation,
)
from netverify_async._constants import CONSENT_MAX_AGE_DAYS
from netverify_async._wire import (
    encode_request_body,
    format_date,
    format_timestamp,
    parse_date,
    parse_timestamp,
    receipt_from_wire,
    receipt_to_wire,
    request_from_wire,
    request_to_wire,
)

UTC = dt.timezone.utc


def _encode(fmt: str, size: tuple[int, int] = (12, 9)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", size, (10, 120, 200)).save(buf, fmt)
    return buf.getvalue()


JPEG = _encode("JPEG")
PNG = _encode("PNG")
B64_JPEG = base64.b64encode(JPEG).decode()
B64_PNG = base64.b64encode(PNG).decode()


def _recent() -> dt.datetime:
    return (dt.datetime.now(UTC) - dt.timedelta(days=2)).replace(microsecond=123000)


def full_request() -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference="order-1",
        frontside_image=Image.from_bytes(JPEG),
        backside_image=Image.from_bytes(PNG),
        face_image=Image.from_bytes(JPEG),
        country="USA",
        id_type=IdType.DRIVING_LICENSE,
        enabled_fields=(EnabledField.ID_NUMBER, EnabledField.ID_FACE_MATCH),
        merchant_reporting_criteria="crit",
        customer_id="cust-1",
        callback_url="https://hooks.example.com/cb",
        first_name="Ada",
        last_name="Lovelace",
        us_state="IL",
        expiry=dt.date(2030, 2, 3),
        number="N1",
        dob=dt.date(1990, 4, 5),
        callback_granularity=CallbackGranularity.ON_ALL_STEPS,
        personal_number="P1",
        user_consent=UserConsent("1.2.3.4", UserLocation("USA", "IL"), Consent("yes", _recent())),
    )


def minimal_body(**extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "merchantIdScanReference": "ref-1",
        "frontsideImage": B64_JPEG,
        "country": "DEU",
        "idType": "PASSPORT",
    }
    body.update(extra)
    return body


def wire_issues(body: Any) -> list[tuple[str, str]]:
    try:
        request_from_wire(body)
    except RequestValidationError as exc:
        return [(e.path, e.code) for e in exc.errors]
    return []


# ----------------------------------------------------------------------------------------------------
# Outbound


def test_every_wire_key_is_spelt_as_in_the_spec() -> None:
    wire = request_to_wire(full_request())
    assert set(wire) == {
        "merchantIdScanReference", "frontsideImage", "frontsideImageMimeType", "faceImage",
        "faceImageMimeType", "backsideImage", "backsideImageMimeType", "country", "idType", "enabledFields",
        "merchantReportingCriteria", "customerId", "callbackUrl", "firstName", "lastName", "usState",
        "expiry", "number", "dob", "callbackGranularity", "personalNumber", "userConsent",
    }  # fmt: skip
    assert set(wire["userConsent"]) == {"userIp", "userLocation", "consent"}
    assert wire["userConsent"]["userLocation"] == {"country": "USA", "state": "IL"}
    assert set(wire["userConsent"]["consent"]) == {"obtained", "obtainedAt"}


def test_values_are_plain_json_types() -> None:
    wire = request_to_wire(full_request())
    assert type(wire["idType"]) is str and wire["idType"] == "DRIVING_LICENSE"
    assert type(wire["callbackGranularity"]) is str and wire["callbackGranularity"] == "onAllSteps"
    assert type(wire["userConsent"]["consent"]["obtained"]) is str
    assert wire["enabledFields"] == "idNumber,idFaceMatch"
    assert wire["dob"] == "1990-04-05"
    assert wire["expiry"] == "2030-02-03"
    assert wire["frontsideImage"] == B64_JPEG
    assert wire["frontsideImageMimeType"] == "image/jpeg"
    assert wire["backsideImageMimeType"] == "image/png"
    assert wire["userConsent"]["consent"]["obtainedAt"].endswith(".123Z")


def test_absent_values_are_omitted() -> None:
    req = NetverifyRequest("ref-1", Image.from_bytes(JPEG), "DEU", "PASSPORT")
    assert request_to_wire(req) == minimal_body(frontsideImageMimeType="image/jpeg")
    consent = UserConsent("10.0.0.1", UserLocation("AUT"))
    req2 = NetverifyRequest("ref-1", Image.from_bytes(JPEG), "DEU", "PASSPORT", user_consent=consent)
    assert request_to_wire(req2)["userConsent"] == {"userIp": "10.0.0.1", "userLocation": {"country": "AUT"}}


def test_undeclared_mime_type_is_omitted() -> None:
    req = NetverifyRequest("ref-1", Image(JPEG, None), "DEU", "PASSPORT")
    assert "frontsideImageMimeType" not in request_to_wire(req)


def test_empty_enabled_fields_is_sent_as_empty_string() -> None:
    req = NetverifyRequest("ref-1", Image.from_bytes(JPEG), "DEU", "PASSPORT", enabled_fields=())
    assert request_to_wire(req)["enabledFields"] == ""


def test_encoded_body_is_compact_json_equal_to_the_dict() -> None:
    req = full_request()
    body = encode_request_body(req)
    assert isinstance(body, bytes)
    assert json.loads(body) == request_to_wire(req)
    assert b", " not in body and b": " not in body and b"\n" not in body
    body.decode("ascii")  # every non-ASCII character is escaped


def test_encoded_body_escapes_non_ascii_text() -> None:
    req = NetverifyRequest("ref-1", Image.from_bytes(PNG), "DEU", "PASSPORT", first_name='Zoë "Q" \\')
    body = encode_request_body(req)
    assert json.loads(body)["firstName"] == 'Zoë "Q" \\'
    assert b"\\u00eb" in body


def test_encoded_body_without_optional_images() -> None:
    req = NetverifyRequest("ref-1", Image.from_bytes(PNG), "DEU", "PASSPORT")
    body = encode_request_body(req)
    assert json.loads(body) == request_to_wire(req)
    assert body.endswith(b'"}')


def test_receipt_to_wire() -> None:
    receipt = ScanReceipt("abc-123", dt.datetime(2017, 8, 16, 10, 37, 44, 623000, tzinfo=UTC))
    assert receipt_to_wire(receipt) == {
        "timestamp": "2017-08-16T10:37:44.623Z",
        "jumioIdScanReference": "abc-123",
    }
    assert receipt.to_wire() == receipt_to_wire(receipt)


# ----------------------------------------------------------------------------------------------------
# Timestamps and dates


def test_format_timestamp_is_utc_with_three_millisecond_digits() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert (
        format_timestamp(dt.datetime(2022, 7, 20, 19, 20, 35, tzinfo=plus_two)) == "2022-07-20T17:20:35.000Z"
    )
    assert (
        format_timestamp(dt.datetime(2022, 7, 20, 17, 20, 35, 999999, tzinfo=UTC))
        == "2022-07-20T17:20:35.999Z"
    )
    assert (
        format_timestamp(dt.datetime(2022, 7, 20, 17, 20, 35, 1000, tzinfo=UTC)) == "2022-07-20T17:20:35.001Z"
    )


def test_format_timestamp_refuses_naive() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        format_timestamp(dt.datetime(2022, 7, 20, 17, 20, 35))


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("2017-08-16T10:37:44Z", 0),
        ("2017-08-16T10:37:44.6Z", 600000),
        ("2017-08-16T10:37:44.62Z", 620000),
        ("2017-08-16T10:37:44.623Z", 623000),
        ("2017-08-16T10:37:44.623+00:00", 623000),
    ],
)
def test_parse_timestamp_accepts_zero_to_three_digits(text: str, micro: int) -> None:
    assert parse_timestamp(text) == dt.datetime(2017, 8, 16, 10, 37, 44, micro, tzinfo=UTC)
    assert parse_timestamp(text).tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2017-08-16T10:37:44.6234Z",
        "2017-08-16T10:37:44.623",
        "2017-08-16T10:37:44.623+01:00",
        "2017-08-16T10:37:44.623z",
        "2017-08-16 10:37:44.623Z",
        "2017-02-30T10:37:44.623Z",
        "2017-08-16T24:00:00.000Z",
        "2017-08-16T10:37:60Z",
        "2017-08-16T10:37:44.Z",
        "",
        "२०१७-08-16T10:37:44Z",
    ],
)
def test_parse_timestamp_refuses_other_forms(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_dates() -> None:
    assert format_date(dt.date(999, 1, 2)) == "0999-01-02"
    assert parse_date("2024-02-29") == dt.date(2024, 2, 29)
    for bad in [
        "2023-02-30",
        "2023-02-29",
        "2023-2-3",
        "20230203",
        "2023-02-03T00:00",
        "0000-01-01",
        " 2023-01-01",
    ]:
        with pytest.raises(ValueError):
            parse_date(bad)


# ----------------------------------------------------------------------------------------------------
# Inbound: parsing bodies


def test_spec_sample_request_parses() -> None:
    body = {
        "merchantIdScanReference": "YOURSCANREFERENCE",
        "frontsideImage": B64_JPEG,
        "country": "XKX",
        "idType": "PASSPORT",
        "customerId": "customerId",
        "userConsent": {
            "userIp": "1.2.3.4",
            "userLocation": {"country": "USA", "state": "IL"},
            "consent": {"obtained": "yes", "obtainedAt": format_timestamp(_recent())},
        },
    }
    req = request_from_wire(body)
    assert req.country == "XKX"
    assert req.frontside_image.data == JPEG
    assert req.frontside_image.mime_type is None  # not declared; the API assumes image/jpeg
    assert req.user_consent is not None and req.user_consent.consent is not None
    assert req.user_consent.consent.obtained is ConsentObtained.YES
    assert request_to_wire(req) == body


def test_model_from_wire_delegates() -> None:
    assert NetverifyRequest.from_wire(minimal_body()) == request_from_wire(minimal_body())


def test_enabled_fields_parsing_tolerates_spaces() -> None:
    body = minimal_body(enabledFields="idNumber,idFirstName,idLastName,idDob, idExpiry,idUsState")
    req = request_from_wire(body)
    assert req.enabled_fields is not None and EnabledField.ID_EXPIRY in req.enabled_fields
    assert len(req.enabled_fields) == 6
    assert request_from_wire(minimal_body(enabledFields="")).enabled_fields == ()


@pytest.mark.parametrize("text", ["idNumber,,idDob", "idNumber,idFoo", "idNumber;idDob", ","])
def test_enabled_fields_parsing_refuses_bad_items(text: str) -> None:
    assert wire_issues(minimal_body(enabledFields=text)) == [("enabledFields", "invalid_choice")]


def test_null_is_read_as_absent() -> None:
    req = request_from_wire(minimal_body(firstName=None, userConsent=None, backsideImage=None))
    assert req.first_name is None and req.user_consent is None and req.backside_image is None


def test_mime_types_are_read_from_sibling_keys() -> None:
    req = request_from_wire(minimal_body(frontsideImage=B64_PNG, frontsideImageMimeType="image/png"))
    assert req.frontside_image.mime_type is MimeType.PNG


def test_body_that_is_not_an_object() -> None:
    for body in ([], "x", None, 3, [minimal_body()]):
        assert wire_issues(body) == [("body", "type")]


def test_unknown_keys_are_errors_at_every_level() -> None:
    body = minimal_body(
        firstname="Ada",
        userConsent={
            "userIp": "1.2.3.4",
            "userLocation": {"country": "AUT", "city": "Wien"},
            "consent": {"obtained": "na", "when": "now"},
            "extra": 1,
        },
    )
    assert set(wire_issues(body)) == {
        ("firstname", "unknown_field"),
        ("userConsent.extra", "unknown_field"),
        ("userConsent.userLocation.city", "unknown_field"),
        ("userConsent.consent.when", "unknown_field"),
    }


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"merchantIdScanReference": 12}, "merchantIdScanReference"),
        ({"country": ["DEU"]}, "country"),
        ({"idType": True}, "idType"),
        ({"frontsideImage": {"data": "x"}}, "frontsideImage"),
        ({"frontsideImageMimeType": 1}, "frontsideImageMimeType"),
        ({"enabledFields": ["idNumber"]}, "enabledFields"),
        ({"dob": 19900101}, "dob"),
        ({"userConsent": "yes"}, "userConsent"),
        ({"userConsent": {"userIp": 1234, "userLocation": {"country": "AUT"}}}, "userConsent.userIp"),
        ({"userConsent": {"userIp": "1.2.3.4", "userLocation": ["AUT"]}}, "userConsent.userLocation"),
        ({"userConsent": {"userIp": "1.2.3.4", "userLocation": {"country": "AUT"}, "consent": []}},
         "userConsent.consent"),
        ({"userConsent": {"userIp": "1.2.3.4", "userLocation": {"country": "AUT"},
                          "consent": {"obtained": "no", "obtainedAt": 1700000000}}},
         "userConsent.consent.obtainedAt"),
    ],
)  # fmt: skip
def test_wrong_json_types(extra: dict[str, Any], path: str) -> None:
    assert wire_issues(minimal_body(**extra)) == [(path, "type")]


@pytest.mark.parametrize(
    "text",
    [
        B64_JPEG[:-1],  # broken padding
        B64_JPEG[:40] + "\n" + B64_JPEG[40:],  # whitespace
        B64_JPEG.replace("+", "-").replace("/", "_") + "-_",  # URL-safe alphabet
        B64_JPEG + "==",  # data after padding
        "data:image/jpeg;base64," + B64_JPEG,  # data URL
        "bü==",
    ],
)
def test_base64_must_be_strict(text: str) -> None:
    assert wire_issues(minimal_body(frontsideImage=text)) == [("frontsideImage", "invalid_base64")]


def test_empty_base64_image_is_an_empty_image() -> None:
    assert wire_issues(minimal_body(frontsideImage="")) == [("frontsideImage", "empty")]


def test_mime_type_without_its_image() -> None:
    assert wire_issues(minimal_body(faceImageMimeType="image/png")) == [
        ("faceImageMimeType", "mime_type_without_image")
    ]


@pytest.mark.parametrize("text", ["2023-02-30", "1990-1-2", "02.01.1990", "1990-01-02T00:00:00Z"])
def test_impossible_or_malformed_dates(text: str) -> None:
    assert wire_issues(minimal_body(dob=text, expiry=text)) == [
        ("expiry", "invalid_date"),
        ("dob", "invalid_date"),
    ]


@pytest.mark.parametrize(
    "text", ["2024-01-01", "2024-01-01T10:00:00+02:00", "yesterday", "2024-13-01T00:00:00Z"]
)
def test_malformed_timestamps(text: str) -> None:
    body = minimal_body(
        userConsent={
            "userIp": "1.2.3.4",
            "userLocation": {"country": "USA"},
            "consent": {"obtained": "yes", "obtainedAt": text},
        }
    )
    # The broken timestamp is reported once; "required when obtained" is not added on top of it.
    assert wire_issues(body) == [("userConsent.consent.obtainedAt", "invalid_timestamp")]


def test_structural_and_semantic_errors_are_reported_together() -> None:
    body = {
        "merchantIdScanReference": "someone@example.com",
        "frontsideImage": "%%%",
        "idType": "PASSPORT",
        "dob": "2023-02-30",
        "enabledFields": "idFaceMatch",
        "bogus": True,
        "userConsent": {"userIp": "1.2.3.4", "userLocation": {"country": "USA", "state": "XX"}},
    }
    assert set(wire_issues(body)) == {
        ("bogus", "unknown_field"),
        ("frontsideImage", "invalid_base64"),
        ("dob", "invalid_date"),
        ("merchantIdScanReference", "contains_email"),
        ("country", "required"),
        ("faceImage", "required_with_face_match"),
        ("userConsent.userLocation.state", "invalid_state"),
        ("userConsent.consent", "required_for_usa"),
    }


def test_unknown_key_path_is_bounded_and_printable() -> None:
    found = wire_issues(minimal_body(**{"x" * 500: 1, "bad\nkey": 2}))
    assert all(len(path) <= 64 and path.isprintable() for path, _ in found)
    assert len(found) == 2


def test_wire_paths_of_semantic_errors_are_wire_keys() -> None:
    """Each semantic rule reports under the same key the body uses."""
    wire = request_to_wire(full_request())
    wire["firstName"] = "x" * 101
    wire["callbackUrl"] = "http://example.com"
    wire["userConsent"]["userLocation"]["state"] = "ZZ"
    assert set(wire_issues(wire)) == {
        ("firstName", "too_long"),
        ("callbackUrl", "https_required"),
        ("userConsent.userLocation.state", "invalid_state"),
    }


# ----------------------------------------------------------------------------------------------------
# Receipts


@pytest.mark.parametrize(
    "stamp", ["2017-08-16T10:37:44.623Z", "2017-08-16T10:37:44Z", "2017-08-16T10:37:44.6+00:00"]
)
def test_receipt_from_wire(stamp: str) -> None:
    receipt = receipt_from_wire({"timestamp": stamp, "jumioIdScanReference": "abc", "newField": [1]})
    assert receipt.scan_reference == "abc"
    assert receipt.timestamp.tzinfo is not None
    assert ScanReceipt.from_wire({"timestamp": stamp, "jumioIdScanReference": "abc"}) == receipt


@pytest.mark.parametrize(
    "body",
    [
        [],
        "ok",
        None,
        {},
        {"timestamp": "2017-08-16T10:37:44.623Z"},
        {"jumioIdScanReference": "abc"},
        {"timestamp": "2017-08-16T10:37:44.623Z", "jumioIdScanReference": ""},
        {"timestamp": "2017-08-16T10:37:44.623Z", "jumioIdScanReference": 17},
        {"timestamp": "16.08.2017", "jumioIdScanReference": "abc"},
        {"timestamp": 1502879864, "jumioIdScanReference": "abc"},
    ],
)
def test_receipt_from_wire_refuses_unusable_bodies(body: Any) -> None:
    with pytest.raises(ResponseError) as info:
        receipt_from_wire(body)
    assert "receipt" in str(info.value) or "JSON object" in str(info.value)
    assert info.value.operation == "performNetverify"


# ----------------------------------------------------------------------------------------------------
# Property tests


@pytest.fixture(scope="module")
def country_codes() -> list[str]:
    import pycountry

    return [*sorted(c.alpha_3 for c in pycountry.countries), "XKX"]


_US_STATES = ["AL", "CA", "DC", "IL", "NY", "PR", "TX", "WY"]
# Text validation refuses control characters (Cc) and bidi formatting characters; codec="utf-8" excludes surrogates.
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SAFE_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters="@" + _BIDI_CONTROLS),
    min_size=1,
    max_size=100,
).filter(lambda s: s.strip() != "")
_REF_TEXT = st.text(st.sampled_from("abcXYZ0189-_.:/ "), min_size=1, max_size=100).filter(
    lambda s: s.strip() != ""
)


def _ms_utc(seconds_ago: int, millis: int) -> dt.datetime:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    return now - dt.timedelta(seconds=seconds_ago, milliseconds=millis)


@st.composite
def valid_requests(draw: st.DrawFn, countries: list[str]) -> NetverifyRequest:
    images = st.sampled_from([JPEG, PNG]).flatmap(
        # an undeclared type is sent only where Jumio's default (image/jpeg) is right; a PNG must declare itself
        lambda data: st.sampled_from([Image.from_bytes(data), Image(data, None)] if data is JPEG else [Image(data)])
    )
    id_type = draw(st.sampled_from(list(IdType)))
    fields = draw(st.none() | st.lists(st.sampled_from(list(EnabledField)), unique=True).map(tuple))
    face_match = fields is not None and EnabledField.ID_FACE_MATCH in fields
    face = draw(images) if face_match else draw(st.none() | images)

    if id_type is IdType.DRIVING_LICENSE:
        us_state = draw(st.none() | st.sampled_from(_US_STATES))
    else:
        us_state = draw(
            st.none() | st.sampled_from([*_US_STATES, "Germany", "Kosovo", "DE", "XK", "FRA", "XKX"])
        )

    consent: UserConsent | None = None
    if face_match or draw(st.booleans()):
        location_country = draw(st.sampled_from(["USA", "CAN", "AUS", "AUT", "XKX", *countries[:20]]))
        state = {
            "USA": st.sampled_from(_US_STATES),
            "CAN": st.sampled_from(["ON", "QC", "BC"]),
            "AUS": st.sampled_from(["NSW", "VIC"]),
        }.get(location_country, _SAFE_TEXT)
        obtained = draw(st.sampled_from(list(ConsentObtained)))
        max_age = (CONSENT_MAX_AGE_DAYS - 1) * 86400
        obtained_at = draw(st.builds(_ms_utc, st.integers(0, max_age), st.integers(0, 999)))
        consent_obj = Consent(
            obtained,
            obtained_at if obtained is ConsentObtained.YES else draw(st.none() | st.just(obtained_at)),
        )
        consent = UserConsent(
            user_ip=draw(st.ip_addresses().map(str)),
            user_location=UserLocation(location_country, draw(st.none() | state)),
            consent=consent_obj if location_country == "USA" else draw(st.none() | st.just(consent_obj)),
        )

    host = draw(
        # labels start and end with a letter or digit (a host such as "a.-b.com" is rightly refused)
        st.from_regex(
            r"[a-z0-9]{1,12}(\.[a-z0-9]([a-z0-9-]{0,9}[a-z0-9])?)?\.(com|example|de)", fullmatch=True
        )
    )
    callback = draw(st.none() | st.just(f"https://{host}/cb") | st.just(f"https://bücher-{host}/x"))
    today = dt.datetime.now(UTC).date()
    return NetverifyRequest(
        merchant_id_scan_reference=draw(_REF_TEXT),
        frontside_image=draw(images),
        country=draw(st.sampled_from(countries)),
        id_type=id_type,
        face_image=face,
        backside_image=draw(st.none() | images),
        enabled_fields=fields,
        merchant_reporting_criteria=draw(st.none() | _SAFE_TEXT),
        customer_id=draw(st.none() | _REF_TEXT),
        callback_url=callback,
        first_name=draw(st.none() | _SAFE_TEXT),
        last_name=draw(st.none() | _SAFE_TEXT),
        us_state=us_state,
        expiry=draw(st.none() | st.dates(dt.date(1950, 1, 1), dt.date(2100, 1, 1))),
        number=draw(st.none() | _SAFE_TEXT),
        dob=draw(st.none() | st.dates(dt.date(1900, 1, 1), today)),
        callback_granularity=draw(st.none() | st.sampled_from(list(CallbackGranularity))),
        personal_number=draw(st.none() | _SAFE_TEXT.map(lambda s: s[:14]).filter(lambda s: s.strip() != "")),
        user_consent=consent,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_round_trip_through_the_wire(data: st.DataObject, country_codes: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # idAddress on unsupported documents only warns
        req = data.draw(valid_requests(country_codes))
        assert request_from_wire(request_to_wire(req)) == req
        assert request_from_wire(json.loads(encode_request_body(req))) == req


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
_TOP_KEYS = [
    "merchantIdScanReference", "frontsideImage", "frontsideImageMimeType", "faceImage", "faceImageMimeType",
    "backsideImage", "backsideImageMimeType", "country", "idType", "enabledFields",
    "merchantReportingCriteria", "customerId", "callbackUrl", "firstName", "lastName", "usState", "expiry",
    "number", "dob", "callbackGranularity", "personalNumber", "userConsent",
]  # fmt: skip
_plausible = st.sampled_from(
    [B64_JPEG, "", "PASSPORT", "DEU", "XKX", "image/png", "idFaceMatch,idAddress", "2023-02-30", "1990-01-01",
     "https://bü.example/x", "https://1.2.3.4/", "1.2.3.4", "yes", "USA", "IL", "2024-01-01T00:00:00.000Z"]
)  # fmt: skip
_garbage = _json_values | _plausible
_consent_like = st.fixed_dictionaries(
    {},
    optional={
        "userIp": _garbage,
        "userLocation": st.fixed_dictionaries({}, optional={"country": _garbage, "state": _garbage})
        | _garbage,
        "consent": st.fixed_dictionaries({}, optional={"obtained": _garbage, "obtainedAt": _garbage})
        | _garbage,
    },
)
_bodies_with_real_keys = st.fixed_dictionaries(
    {}, optional={**{key: _garbage for key in _TOP_KEYS}, "userConsent": _consent_like | _garbage}
)


@settings(max_examples=300, deadline=None)
@given(body=_json_values | _bodies_with_real_keys)
def test_from_wire_raises_only_request_validation_error(body: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            req = request_from_wire(body)
        except RequestValidationError as exc:
            assert exc.errors
            assert all(issue.path and issue.code and issue.message for issue in exc.errors)
        else:
            assert isinstance(req, NetverifyRequest)


@pytest.mark.parametrize("text", ["QUJD==", "QUJD=", "QUJD====", "QQ===", "QUI=="])
def test_base64_surplus_padding_is_refused(text: str) -> None:
    assert wire_issues(minimal_body(frontsideImage=text)) == [("frontsideImage", "invalid_base64")]


@pytest.mark.parametrize(("text", "data"), [("QUJD", b"ABC"), ("QUI=", b"AB"), ("QQ==", b"A")])
def test_base64_canonical_padding_is_accepted(text: str, data: bytes) -> None:
    with pytest.raises(RequestValidationError) as info:  # tiny "images", but the base64 itself is fine
        request_from_wire(minimal_body(frontsideImage=text, country="???"))
    assert ("frontsideImage", "invalid_base64") not in [(e.path, e.code) for e in info.value.errors]
    from netverify_async._convert import decode_base64

    assert decode_base64(text) == data


@pytest.mark.parametrize("reference", ["x" * 101, "../../etc", "a b", "ref?x=1"])
def test_a_receipt_with_an_unusable_scan_reference_is_refused(reference: str) -> None:
    from netverify_async import ResponseError, ScanReceipt

    with pytest.raises(ResponseError, match="jumioIdScanReference"):
        ScanReceipt.from_wire({"timestamp": "2017-08-16T10:37:44.623Z", "jumioIdScanReference": reference})


def test_the_converters_do_not_depend_on_the_defining_module() -> None:
    """A public class may show ``__module__ = "netverify_async"``; the converters must not resolve its field
    types through that module (they are resolved where the classes are defined)."""
    import subprocess
    import sys

    code = (
        "import netverify_async as n, netverify_async.callbacks as c, netverify_async._retrieval as r\n"
        "import datetime as dt, inspect\n"
        "for module in (n, c, r):\n"
        "    for name in module.__all__:\n"
        "        value = getattr(module, name)\n"
        "        if inspect.isclass(value): value.__module__ = 'netverify_async'\n"
        f"req = n.NetverifyRequest('r', n.Image({JPEG!r}), 'DEU', 'PASSPORT', dob=dt.date(1990, 1, 2))\n"
        "assert n.NetverifyRequest.from_wire(req.to_wire()) == req\n"
        "assert n.ScanReceipt.from_wire({'timestamp': '2017-08-16T10:37:44Z', 'jumioIdScanReference': 'a'})\n"
        "d = r.parse_scan_details({'scanReference': 'r', 'document': {'dob': '1990-01-02'}})\n"
        "assert d.document.dob == dt.date(1990, 1, 2) and d.to_dict(redact=True)\n"
        "assert c.parse_callback(b'jumioIdScanReference=r&idDob=1990-01-02').id_dob == dt.date(1990, 1, 2)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("image", "path", "code"),
    [
        (lambda: Image(PNG, None), "frontsideImageMimeType", "mime_mismatch"),  # Jumio would read it as a JPEG
        (lambda: Image(PNG, "image/jpeg"), "frontsideImageMimeType", "mime_mismatch"),
        (lambda: Image(JPEG, "image/png"), "frontsideImageMimeType", "mime_mismatch"),
        (lambda: Image(b"GIF89a" + bytes(64), None), "frontsideImage", "unsupported_format"),
    ],
)
def test_an_image_whose_bytes_do_not_match_its_declared_or_default_type_is_never_encoded(
    image: Any, path: str, code: str
) -> None:
    request = NetverifyRequest("ref-1", image(), "DEU", "PASSPORT")
    with pytest.raises(RequestValidationError) as info:
        encode_request_body(request)
    assert [(e.path, e.code) for e in info.value.errors] == [(path, code)]


def test_an_image_without_a_type_gets_the_type_of_its_bytes() -> None:
    assert Image(PNG).mime_type is MimeType.PNG and Image(JPEG).mime_type is MimeType.JPEG
