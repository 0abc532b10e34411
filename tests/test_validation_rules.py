"""Every documented request rule: the bad case is refused with its code and wire path, the boundary passes."""

from __future__ import annotations

import datetime as dt
import io
import unicodedata
import warnings
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from netverify_async import (
    Consent,
    EnabledField,
    IdType,
    Image,
    MimeType,
    NetverifyRequest,
    NetverifyWarning,
    RequestValidationError,
    UserConsent,
    UserLocation,
)
from netverify_async._constants import CONSENT_MAX_AGE_DAYS, MAX_IMAGE_BYTES, MAX_LENGTHS
from netverify_async._validation import (
    ADDRESS_EXTRACTION_SUPPORT,
    CONSENT_CLOCK_SKEW,
    deferred_validation,
    request_issues,
)

UTC = dt.timezone.utc


def _encode(fmt: str) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (16, 12), (200, 30, 30)).save(buf, fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def jpeg() -> Image:
    return Image.from_bytes(_encode("JPEG"))


@pytest.fixture(scope="module")
def png() -> Image:
    return Image.from_bytes(_encode("PNG"))


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def us_consent(**changes: Any) -> UserConsent:
    consent = UserConsent(
        user_ip="203.0.113.7",
        user_location=UserLocation("USA", "IL"),
        consent=Consent("yes", _now() - dt.timedelta(days=1)),
    )
    return attrs.evolve(consent, **changes)


@pytest.fixture
def make(jpeg: Image) -> Any:
    """Build a request from a valid minimal one plus keyword changes."""

    def build(**changes: Any) -> NetverifyRequest:
        fields: dict[str, Any] = {
            "merchant_id_scan_reference": "order-1234",
            "frontside_image": jpeg,
            "country": "DEU",
            "id_type": IdType.PASSPORT,
        }
        fields.update(changes)
        return NetverifyRequest(**fields)

    return build


def issues_of(make: Any, **changes: Any) -> list[tuple[str, str]]:
    """(path, code) of every issue the changed request has; [] when it is valid."""
    try:
        make(**changes)
    except RequestValidationError as exc:
        return [(e.path, e.code) for e in exc.errors]
    return []


def assert_refused(make: Any, path: str, code: str, **changes: Any) -> None:
    found = issues_of(make, **changes)
    assert (path, code) in found, found


# ----------------------------------------------------------------------------------------------------
# Valid requests


def test_minimal_request_is_valid(make: Any) -> None:
    req = make()
    assert req.id_type is IdType.PASSPORT


def test_full_request_is_valid(make: Any, jpeg: Image, png: Image) -> None:
    req = make(
        country="USA",
        id_type="DRIVING_LICENSE",
        face_image=png,
        backside_image=jpeg,
        enabled_fields=list(EnabledField),
        merchant_reporting_criteria="campaign-7",
        customer_id="cust-42",
        callback_url="https://hooks.example.com/jumio/callback",
        first_name="Ada",
        last_name="Lovelace",
        us_state="IL",
        expiry=dt.date(2031, 5, 1),
        number="D1234567",
        dob=dt.date(1990, 1, 2),
        callback_granularity="onAllSteps",
        personal_number="12345678901234",
        user_consent=us_consent(),
    )
    assert req.enabled_fields == tuple(EnabledField)
    assert request_issues(req) == []


def test_every_violation_is_reported_at_once(make: Any) -> None:
    with pytest.raises(RequestValidationError) as info:
        make(
            merchant_id_scan_reference="",
            country="ZZZ",
            id_type="PASSPORTS",
            first_name="x" * 101,
            callback_url="http://example.com/cb",
        )
    assert info.value.paths == {"merchantIdScanReference", "country", "idType", "firstName", "callbackUrl"}
    assert isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------------------------------
# Required fields, types, empty strings


@pytest.mark.parametrize(
    ("attr", "path"),
    [
        ("merchant_id_scan_reference", "merchantIdScanReference"),
        ("frontside_image", "frontsideImage"),
        ("country", "country"),
        ("id_type", "idType"),
    ],
)
def test_required_field_missing(make: Any, attr: str, path: str) -> None:
    assert issues_of(make, **{attr: None}) == [(path, "required")]


@pytest.mark.parametrize(
    ("attr", "path"),
    [
        ("merchant_id_scan_reference", "merchantIdScanReference"),
        ("country", "country"),
        ("id_type", "idType"),
    ],
)
@pytest.mark.parametrize("blank", ["", "   "])
def test_required_string_empty_or_blank(make: Any, attr: str, path: str, blank: str) -> None:
    assert issues_of(make, **{attr: blank}) == [(path, "empty")]


@pytest.mark.parametrize(
    ("attr", "path"),
    [
        ("merchant_reporting_criteria", "merchantReportingCriteria"),
        ("customer_id", "customerId"),
        ("callback_url", "callbackUrl"),
        ("first_name", "firstName"),
        ("last_name", "lastName"),
        ("us_state", "usState"),
        ("number", "number"),
        ("personal_number", "personalNumber"),
    ],
)
def test_optional_string_empty_is_refused(make: Any, attr: str, path: str) -> None:
    assert issues_of(make, **{attr: ""}) == [(path, "empty")]


@pytest.mark.parametrize(
    ("attr", "value", "path"),
    [
        ("merchant_id_scan_reference", 1234, "merchantIdScanReference"),
        ("country", b"DEU", "country"),
        ("id_type", 1, "idType"),
        ("frontside_image", b"\xff\xd8\xff", "frontsideImage"),
        ("first_name", ["Ada"], "firstName"),
        ("dob", "1990-01-02", "dob"),
        ("dob", dt.datetime(1990, 1, 2, tzinfo=UTC), "dob"),
        ("expiry", 20300101, "expiry"),
        ("enabled_fields", "idNumber", "enabledFields"),
        ("enabled_fields", 7, "enabledFields"),
        ("callback_granularity", True, "callbackGranularity"),
        ("user_consent", {"userIp": "1.2.3.4"}, "userConsent"),
    ],
)
def test_wrong_python_type(make: Any, attr: str, value: object, path: str) -> None:
    assert issues_of(make, **{attr: value}) == [(path, "type")]


def test_wrong_type_of_image_data(make: Any) -> None:
    assert issues_of(make, frontside_image=Image("not bytes", MimeType.JPEG)) == [("frontsideImage", "type")]  # type: ignore[arg-type]


def test_image_accepts_bytearray_and_memoryview(make: Any, jpeg: Image) -> None:
    assert make(frontside_image=Image(bytearray(jpeg.data), MimeType.JPEG)).frontside_image == jpeg
    assert make(frontside_image=Image(memoryview(jpeg.data), MimeType.JPEG)).frontside_image == jpeg


# ----------------------------------------------------------------------------------------------------
# Lengths


_PLAIN_LENGTH_FIELDS = [
    ("merchant_id_scan_reference", "merchantIdScanReference"),
    ("merchant_reporting_criteria", "merchantReportingCriteria"),
    ("customer_id", "customerId"),
    ("first_name", "firstName"),
    ("last_name", "lastName"),
    ("number", "number"),
    ("personal_number", "personalNumber"),
]


@pytest.mark.parametrize(("attr", "path"), _PLAIN_LENGTH_FIELDS)
def test_max_length_boundary(make: Any, attr: str, path: str) -> None:
    limit = MAX_LENGTHS[path]
    assert issues_of(make, **{attr: "a" * limit}) == []
    assert issues_of(make, **{attr: "a" * (limit + 1)}) == [(path, "too_long")]


def test_personal_number_limit_is_14() -> None:
    assert MAX_LENGTHS["personalNumber"] == 14


def test_us_state_too_long(make: Any) -> None:
    assert ("usState", "too_long") in issues_of(make, us_state="a" * 101)


def test_country_too_long(make: Any) -> None:
    assert issues_of(make, country="DEUT") == [("country", "too_long")]


def test_user_location_state_length_boundary(make: Any) -> None:
    def consent(state: str) -> UserConsent:
        return UserConsent("198.51.100.1", UserLocation("AUT", state))

    assert issues_of(make, user_consent=consent("s" * 100)) == []
    assert issues_of(make, user_consent=consent("s" * 101)) == [
        ("userConsent.userLocation.state", "too_long")
    ]


def test_callback_url_length_boundary(make: Any) -> None:
    base = "https://hooks.example.com/"
    assert issues_of(make, callback_url=base + "p" * (255 - len(base))) == []
    assert issues_of(make, callback_url=base + "p" * (256 - len(base))) == [("callbackUrl", "too_long")]


def test_callback_url_length_counts_the_punycode_form(make: Any) -> None:
    # 23 characters as typed, but the host is much longer once converted to punycode.
    host = "ü" * 20 + ".example.com"
    base = f"https://{host}/"
    converted = make(callback_url=base).callback_url
    assert converted is not None
    path = "p" * (255 - len(base))
    assert len(base + path) == 255
    assert ("callbackUrl", "too_long") in issues_of(make, callback_url=base + path)


# ----------------------------------------------------------------------------------------------------
# Country and enumerations


@pytest.mark.parametrize("code", ["DEU", "USA", "XKX", "SSD", "BES"])
def test_country_accepts_current_alpha3_and_kosovo(make: Any, code: str) -> None:
    assert make(country=code).country == code


@pytest.mark.parametrize("code", ["ZZZ", "deu", "DE", "ANT", "SUN", "YUG", "XK"])
def test_country_refuses_unknown_lowercase_alpha2_and_withdrawn_codes(make: Any, code: str) -> None:
    assert_refused(make, "country", "invalid_country", country=code)


@pytest.mark.parametrize("value", list(IdType) + [t.value for t in IdType])
def test_id_type_accepts_every_documented_value(make: Any, value: Any) -> None:
    assert isinstance(make(id_type=value).id_type, IdType)


@pytest.mark.parametrize("value", ["passport", "DRIVER_LICENSE", "RESIDENCE_PERMIT"])
def test_id_type_refuses_other_values(make: Any, value: str) -> None:
    assert issues_of(make, id_type=value) == [("idType", "invalid_choice")]


@pytest.mark.parametrize("mime", [MimeType.JPEG, "image/png", None])
def test_mime_type_accepts_jpeg_png_or_undeclared(make: Any, jpeg: Image, mime: Any) -> None:
    assert issues_of(make, frontside_image=Image(jpeg.data, mime)) == []


@pytest.mark.parametrize(
    ("attr", "path"),
    [("frontside_image", "frontsideImage"), ("backside_image", "backsideImage"), ("face_image", "faceImage")],
)
@pytest.mark.parametrize("mime", ["image/gif", "image/jpg", "IMAGE/JPEG", ""])
def test_mime_type_refuses_other_values(make: Any, jpeg: Image, attr: str, path: str, mime: str) -> None:
    assert issues_of(make, **{attr: Image(jpeg.data, mime)}) == [(f"{path}MimeType", "invalid_choice")]


@pytest.mark.parametrize("value", ["onFinish", "onAllSteps"])
def test_callback_granularity_accepts_documented_values(make: Any, value: str) -> None:
    assert make(callback_granularity=value).callback_granularity.value == value


@pytest.mark.parametrize("value", ["onfinish", "ON_FINISH", "always"])
def test_callback_granularity_refuses_other_values(make: Any, value: str) -> None:
    assert issues_of(make, callback_granularity=value) == [("callbackGranularity", "invalid_choice")]


# ----------------------------------------------------------------------------------------------------
# enabledFields


def test_enabled_fields_all_documented_values_fit(make: Any, jpeg: Image) -> None:
    req = make(
        country="USA",
        id_type="DRIVING_LICENSE",
        enabled_fields=[f.value for f in EnabledField],
        face_image=jpeg,
        user_consent=us_consent(),
    )
    assert len(",".join(f.value for f in req.enabled_fields)) <= MAX_LENGTHS["enabledFields"]


def test_enabled_fields_empty_is_allowed(make: Any) -> None:
    assert make(enabled_fields=()).enabled_fields == ()


@pytest.mark.parametrize("bad", ["idFoo", "idnumber", "", " idNumber"])
def test_enabled_fields_refuses_unknown_items(make: Any, bad: str) -> None:
    assert issues_of(make, enabled_fields=["idNumber", bad]) == [("enabledFields", "invalid_choice")]


def test_enabled_fields_refuses_duplicates(make: Any) -> None:
    assert issues_of(make, enabled_fields=["idNumber", "idDob", "idNumber"]) == [
        ("enabledFields", "duplicate")
    ]


def test_enabled_fields_joined_length_over_100_is_refused(make: Any) -> None:
    # Without duplicates the documented values join to 95 characters; only repetition can pass 100.
    fields = ["idPersonalNumber"] * 7  # 7 * 16 + 6 = 118 characters
    found = issues_of(make, enabled_fields=fields)
    assert ("enabledFields", "too_long") in found
    assert ("enabledFields", "duplicate") in found


# ----------------------------------------------------------------------------------------------------
# Images


def test_face_image_required_when_face_match_enabled(make: Any, jpeg: Image) -> None:
    assert issues_of(make, enabled_fields=["idFaceMatch"], user_consent=us_consent()) == [
        ("faceImage", "required_with_face_match")
    ]
    assert issues_of(make, enabled_fields=["idFaceMatch"], user_consent=us_consent(), face_image=jpeg) == []


def test_face_image_not_required_without_face_match(make: Any) -> None:
    assert issues_of(make, enabled_fields=["idNumber"]) == []


@pytest.mark.parametrize(
    ("attr", "path"),
    [("frontside_image", "frontsideImage"), ("backside_image", "backsideImage"), ("face_image", "faceImage")],
)
def test_image_empty_refused(make: Any, attr: str, path: str) -> None:
    assert issues_of(make, **{attr: Image(b"", MimeType.JPEG)}) == [(path, "empty")]


@pytest.mark.parametrize(
    ("attr", "path"),
    [("frontside_image", "frontsideImage"), ("backside_image", "backsideImage"), ("face_image", "faceImage")],
)
def test_image_size_boundary(make: Any, attr: str, path: str) -> None:
    at_limit = b"\xff\xd8\xff" + bytes(MAX_IMAGE_BYTES - 3)
    assert issues_of(make, **{attr: Image(at_limit, MimeType.JPEG)}) == []
    assert issues_of(make, **{attr: Image(at_limit + b"\0", MimeType.JPEG)}) == [(path, "file_too_large")]


# ----------------------------------------------------------------------------------------------------
# Dates


def test_dob_today_is_allowed_but_future_is_refused(make: Any) -> None:
    today = dt.datetime.now(UTC).date()
    assert issues_of(make, dob=today) == []
    assert issues_of(make, dob=today + dt.timedelta(days=2)) == [("dob", "in_future")]


def test_expiry_accepts_past_and_future_dates(make: Any) -> None:
    assert issues_of(make, expiry=dt.date(2001, 1, 1)) == []
    assert issues_of(make, expiry=dt.date(2099, 12, 31)) == []


# ----------------------------------------------------------------------------------------------------
# usState


@pytest.mark.parametrize("id_type", ["PASSPORT", "ID_CARD", "VISA"])
@pytest.mark.parametrize(
    "value",
    [
        "IL",
        "DC",
        "PR",
        "Germany",
        "GERMANY",
        "Kosovo",
        "DE",
        "XK",
        "DEU",
        "XKX",
        "Bolivia, Plurinational State of",
    ],
)
def test_us_state_for_passport_id_card_and_visa(make: Any, id_type: str, value: str) -> None:
    assert issues_of(make, id_type=id_type, us_state=value) == []


@pytest.mark.parametrize("id_type", ["PASSPORT", "ID_CARD", "VISA"])
@pytest.mark.parametrize("value", ["ZZ", "US-IL", "Atlantis", "XKK", "il"])
def test_us_state_for_passport_refuses_other_values(make: Any, id_type: str, value: str) -> None:
    assert issues_of(make, id_type=id_type, us_state=value) == [("usState", "invalid_us_state")]


@pytest.mark.parametrize("value", ["IL", "CA", "DC", "DE", "WY"])
def test_us_state_for_driving_license_accepts_us_codes(make: Any, value: str) -> None:
    assert issues_of(make, id_type="DRIVING_LICENSE", us_state=value) == []


@pytest.mark.parametrize("value", ["DEU", "Germany", "XK", "XKX", "Kosovo", "US-IL", "ZZ"])
def test_us_state_for_driving_license_refuses_countries(make: Any, value: str) -> None:
    assert issues_of(make, id_type="DRIVING_LICENSE", us_state=value) == [("usState", "invalid_us_state")]


def test_us_state_not_judged_when_id_type_is_invalid(make: Any) -> None:
    assert issues_of(make, id_type="NOPE", us_state="Germany") == [("idType", "invalid_choice")]


# ----------------------------------------------------------------------------------------------------
# callbackUrl


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/callback",
        "https://hooks.example.co.uk/a/b-c_d/~e",
        "https://example.com",
        "https://example.com./x",
        "https://xn--bcher-kva.example/cb",
        "https://a1.example/%20escaped",
    ],
)
def test_callback_url_accepted(make: Any, url: str) -> None:
    assert make(callback_url=url).callback_url == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://example.com/cb", "https_required"),
        ("ftp://example.com/cb", "https_required"),
        ("https://203.0.113.5/cb", "ip_host_not_allowed"),
        ("https://[2001:db8::1]/cb", "ip_host_not_allowed"),
        ("https://1.2.3/cb", "ip_host_not_allowed"),
        ("https://example.com:8443/cb", "port_not_allowed"),
        ("https://example.com:443/cb", "port_not_allowed"),
        ("https://example.com/cb?token=1", "query_not_allowed"),
        ("https://example.com/cb?", "query_not_allowed"),
        ("https://example.com/cb#top", "fragment_not_allowed"),
        ("https://user:pw@example.com/cb", "userinfo_not_allowed"),
        ("https://example.com/users/jane.doe@example.org", "contains_email"),
        ("example.com/cb", "https_required"),
        ("https:///cb", "invalid_url"),
        ("https://exa mple.com/cb", "invalid_url"),
        ("https://ex_ample.com/cb", "invalid_url"),
        ("https://-example.com/cb", "invalid_url"),
        ("https://xn--zz.example/cb", "invalid_url"),
        ("https://example.com/caf\u00e9", "invalid_url"),
        ("https://example.com/a\nb", "invalid_url"),
    ],
)
def test_callback_url_refused(make: Any, url: str, code: str) -> None:
    assert_refused(make, "callbackUrl", code, callback_url=url)


def test_callback_url_internationalised_host_is_converted_to_punycode(make: Any) -> None:
    req = make(callback_url="https://Bücher.example/cb/ok")
    assert req.callback_url == "https://xn--bcher-kva.example/cb/ok"


def test_callback_url_unconvertible_host_is_kept_and_refused(make: Any) -> None:
    assert_refused(make, "callbackUrl", "invalid_url", callback_url="https://bü\u0000cher.example/")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://bücher-a.-b.com/x", "not a valid internationalised domain name"),  # a label starts with "-"
        ("https://example.com/bücher", "percent-encode the path"),
    ],
)
def test_callback_url_non_ascii_message_names_the_part_at_fault(make: Any, url: str, says: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        make(callback_url=url)
    messages = [issue.message for issue in info.value.errors if issue.path == "callbackUrl"]
    assert len(messages) == 1 and says in messages[0], messages


# ----------------------------------------------------------------------------------------------------
# userConsent


def test_user_consent_outside_usa_needs_no_consent_object(make: Any) -> None:
    assert issues_of(make, user_consent=UserConsent("192.168.0.1", UserLocation("AUT"))) == []


@pytest.mark.parametrize("ip", ["203.0.113.7", "2001:db8::8a2e:370:7334", "::1"])
def test_user_ip_accepts_ipv4_and_ipv6(make: Any, ip: str) -> None:
    assert issues_of(make, user_consent=us_consent(user_ip=ip)) == []


@pytest.mark.parametrize("ip", ["256.1.1.1", "1.2.3", "example.com", "1.2.3.4/32"])
def test_user_ip_refuses_non_addresses(make: Any, ip: str) -> None:
    assert issues_of(make, user_consent=us_consent(user_ip=ip)) == [("userConsent.userIp", "invalid_ip")]


def test_user_ip_and_location_required(make: Any) -> None:
    found = issues_of(make, user_consent=UserConsent(None, None))  # type: ignore[arg-type]
    assert found == [("userConsent.userIp", "required"), ("userConsent.userLocation", "required")]


@pytest.mark.parametrize("country", ["XXX", "us", "US", "ANT"])
def test_user_location_country_must_be_alpha3(make: Any, country: str) -> None:
    consent = UserConsent("192.0.2.1", UserLocation(country))
    assert_refused(make, "userConsent.userLocation.country", "invalid_country", user_consent=consent)


@pytest.mark.parametrize(("country", "state"), [("USA", "IL"), ("USA", "DC"), ("CAN", "ON"), ("AUS", "NSW")])
def test_user_location_state_codes_accepted(make: Any, country: str, state: str) -> None:
    consent = UserConsent("192.0.2.1", UserLocation(country, state), Consent("na"))
    assert issues_of(make, user_consent=consent) == []


@pytest.mark.parametrize(
    ("country", "state"),
    [("USA", "US-IL"), ("USA", "Illinois"), ("USA", "ON"), ("CAN", "NSW"), ("AUS", "ON"), ("AUS", "nsw")],
)
def test_user_location_state_codes_refused(make: Any, country: str, state: str) -> None:
    consent = UserConsent("192.0.2.1", UserLocation(country, state), Consent("na"))
    assert issues_of(make, user_consent=consent) == [("userConsent.userLocation.state", "invalid_state")]


def test_user_location_state_free_text_elsewhere(make: Any) -> None:
    consent = UserConsent("192.0.2.1", UserLocation("DEU", "Bayern"))
    assert issues_of(make, user_consent=consent) == []


def test_consent_required_for_usa(make: Any) -> None:
    assert issues_of(make, user_consent=us_consent(consent=None)) == [
        ("userConsent.consent", "required_for_usa")
    ]


def test_obtained_at_required_when_obtained_is_yes(make: Any) -> None:
    assert issues_of(make, user_consent=us_consent(consent=Consent("yes"))) == [
        ("userConsent.consent.obtainedAt", "required_when_obtained")
    ]
    assert issues_of(make, user_consent=us_consent(consent=Consent("no"))) == []
    assert issues_of(make, user_consent=us_consent(consent=Consent("na"))) == []


def test_consent_obtained_must_be_documented_value(make: Any) -> None:
    assert issues_of(make, user_consent=us_consent(consent=Consent("maybe"))) == [
        ("userConsent.consent.obtained", "invalid_choice")
    ]
    assert issues_of(make, user_consent=us_consent(consent=Consent(None))) == [  # type: ignore[arg-type]
        ("userConsent.consent.obtained", "required")
    ]


def test_obtained_at_must_be_aware(make: Any) -> None:
    naive = dt.datetime.now() - dt.timedelta(days=1)  # deliberately naive
    assert issues_of(make, user_consent=us_consent(consent=Consent("yes", naive))) == [
        ("userConsent.consent.obtainedAt", "timezone_required")
    ]


def test_obtained_at_must_be_datetime(make: Any) -> None:
    consent = Consent("yes", dt.date(2024, 1, 1))  # type: ignore[arg-type]
    assert issues_of(make, user_consent=us_consent(consent=consent)) == [
        ("userConsent.consent.obtainedAt", "type")
    ]


def test_obtained_at_future_boundary_allows_clock_skew(make: Any) -> None:
    minute = dt.timedelta(minutes=1)
    ok = Consent("yes", _now() + CONSENT_CLOCK_SKEW - minute)
    late = Consent("yes", _now() + CONSENT_CLOCK_SKEW + minute)
    assert issues_of(make, user_consent=us_consent(consent=ok)) == []
    assert issues_of(make, user_consent=us_consent(consent=late)) == [
        ("userConsent.consent.obtainedAt", "in_future")
    ]


def test_obtained_at_other_time_zone_is_compared_as_an_instant(make: Any) -> None:
    plus_ten = dt.timezone(dt.timedelta(hours=10))
    consent = Consent("yes", _now().astimezone(plus_ten) - dt.timedelta(minutes=1))
    assert issues_of(make, user_consent=us_consent(consent=consent)) == []


def test_obtained_at_three_year_limit(make: Any) -> None:
    limit = dt.timedelta(days=CONSENT_MAX_AGE_DAYS)
    hour = dt.timedelta(hours=1)
    fresh = Consent("yes", _now() - limit + hour)
    stale = Consent("yes", _now() - limit - hour)
    assert issues_of(make, user_consent=us_consent(consent=fresh)) == []
    assert issues_of(make, user_consent=us_consent(consent=stale)) == [
        ("userConsent.consent.obtainedAt", "consent_expired")
    ]


def test_consent_limit_is_at_least_three_years() -> None:
    assert CONSENT_MAX_AGE_DAYS >= 3 * 365


def test_request_issues_uses_given_reference_time(make: Any) -> None:
    obtained = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    with deferred_validation():
        req = make(user_consent=us_consent(consent=Consent("yes", obtained)))
    assert request_issues(req, now=obtained) == []
    later = obtained + dt.timedelta(days=CONSENT_MAX_AGE_DAYS, seconds=1)
    assert [(i.path, i.code) for i in request_issues(req, now=later)] == [
        ("userConsent.consent.obtainedAt", "consent_expired")
    ]
    earlier = obtained - CONSENT_CLOCK_SKEW - dt.timedelta(seconds=1)
    assert [(i.path, i.code) for i in request_issues(req, now=earlier)] == [
        ("userConsent.consent.obtainedAt", "in_future")
    ]


def test_user_consent_required_with_face_match(make: Any, jpeg: Image) -> None:
    assert issues_of(make, enabled_fields=["idFaceMatch"], face_image=jpeg) == [
        ("userConsent", "required_with_face_match")
    ]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"user_location": "USA"}, "userConsent.userLocation"),
        ({"consent": "yes"}, "userConsent.consent"),
    ],
)
def test_nested_objects_of_wrong_type(make: Any, changes: dict[str, Any], path: str) -> None:
    assert issues_of(make, user_consent=us_consent(**changes)) == [(path, "type")]


def test_nested_objects_are_validated_only_inside_a_request(make: Any) -> None:
    loose = UserConsent("not an ip", UserLocation("XXX", "??"), Consent("maybe"))
    assert loose.user_location.country == "XXX"
    assert set(issues_of(make, user_consent=loose)) == {
        ("userConsent.userIp", "invalid_ip"),
        ("userConsent.userLocation.country", "invalid_country"),
        ("userConsent.consent.obtained", "invalid_choice"),
    }


# ----------------------------------------------------------------------------------------------------
# No personal data in references


@pytest.mark.parametrize(
    ("attr", "path"),
    [("merchant_id_scan_reference", "merchantIdScanReference"), ("customer_id", "customerId")],
)
@pytest.mark.parametrize("value", ["jane.doe@example.com", "ref-42-J.Doe+kyc@mail.example.org-x"])
def test_reference_fields_refuse_email_addresses(make: Any, attr: str, path: str, value: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        make(**{attr: value})
    (issue,) = info.value.errors
    assert (issue.path, issue.code) == (path, "contains_email")
    assert "PII" in issue.message
    assert value not in str(info.value)


@pytest.mark.parametrize("value", ["batch@2024", "order#1234@retry", "a@b", "user-7f3a"])
def test_reference_fields_accept_non_email_at_signs(make: Any, value: str) -> None:
    assert issues_of(make, merchant_id_scan_reference=value, customer_id=value) == []


# ----------------------------------------------------------------------------------------------------
# Address extraction warning


def test_address_extraction_table_is_keyed_by_real_alpha3_codes() -> None:
    import pycountry

    assert len(ADDRESS_EXTRACTION_SUPPORT) == 16
    for code, id_types in ADDRESS_EXTRACTION_SUPPORT.items():
        assert pycountry.countries.get(alpha_3=code) is not None, code
        assert id_types <= {t.value for t in IdType}
    assert ADDRESS_EXTRACTION_SUPPORT["FRA"] == {"ID_CARD", "DRIVING_LICENSE", "PASSPORT"}
    assert ADDRESS_EXTRACTION_SUPPORT["GBR"] == {"DRIVING_LICENSE"}


@pytest.mark.parametrize(
    ("country", "id_type"), [("DEU", "PASSPORT"), ("GBR", "ID_CARD"), ("AUT", "ID_CARD")]
)
def test_address_extraction_unsupported_document_warns(make: Any, country: str, id_type: str) -> None:
    with pytest.warns(NetverifyWarning, match="idAddress"):
        make(country=country, id_type=id_type, enabled_fields=["idAddress"])


@pytest.mark.parametrize(
    ("country", "id_type"), [("DEU", "ID_CARD"), ("FRA", "PASSPORT"), ("USA", "DRIVING_LICENSE")]
)
def test_address_extraction_supported_document_does_not_warn(make: Any, country: str, id_type: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(country=country, id_type=id_type, enabled_fields=["idAddress"])


def test_no_address_warning_without_id_address(make: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(country="AUT", enabled_fields=["idNumber"])


# ----------------------------------------------------------------------------------------------------
# Messages are safe to log


def test_messages_never_repeat_the_offending_values(make: Any, jpeg: Image) -> None:
    secret = "Zq9Secret"
    with pytest.raises(RequestValidationError) as info:
        make(
            merchant_id_scan_reference=f"{secret}@mail.example.com",
            country=secret[:3] + "X",
            id_type=secret,
            first_name=secret * 20,
            callback_url=f"http://{secret}.example/?q={secret}",
            us_state=secret,
            personal_number=secret * 2,
            callback_granularity=secret,
            enabled_fields=[secret],
            frontside_image=Image(jpeg.data, secret),
            user_consent=UserConsent(secret, UserLocation(secret, secret), Consent(secret)),
        )
    text = str(info.value) + repr(info.value) + "".join(e.message + e.path for e in info.value.errors)
    assert secret not in text
    assert secret[:3] + "X" not in text
    assert len(info.value.errors) >= 12


# ----------------------------------------------------------------------------------------------------
# Text that can go on the wire: encodable as UTF-8, no control or bidi formatting characters

#: Part of every refused value; non-ASCII, so that no part of it can occur in an (ASCII) message by chance.
_TEXT_SECRET = "Ж学é9Zq"
#: The bidirectional formatting characters that are refused (all of category Cf).
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def _text_changes(path: str, value: str) -> dict[str, Any]:
    """The ``make`` keyword changes that put ``value`` in the string field at wire path ``path``."""
    if path == "userConsent.userIp":
        return {"user_consent": UserConsent(value, UserLocation("AUT"))}
    if path == "userConsent.userLocation.country":
        return {"user_consent": UserConsent("192.0.2.1", UserLocation(value))}
    if path == "userConsent.userLocation.state":
        return {"user_consent": UserConsent("192.0.2.1", UserLocation("AUT", value))}
    attrs_by_path = {
        "merchantIdScanReference": "merchant_id_scan_reference",
        "country": "country",
        "merchantReportingCriteria": "merchant_reporting_criteria",
        "customerId": "customer_id",
        "firstName": "first_name",
        "lastName": "last_name",
        "usState": "us_state",
        "number": "number",
        "personalNumber": "personal_number",
    }
    return {attrs_by_path[path]: value}


#: Every string field the text rules apply to (callbackUrl has stricter rules of its own, tested below).
_FREE_TEXT_PATHS = [
    "merchantIdScanReference",
    "merchantReportingCriteria",
    "customerId",
    "firstName",
    "lastName",
    "number",
    "personalNumber",
    "userConsent.userLocation.state",
]
_CONSTRAINED_TEXT_PATHS = [
    "country",
    "usState",
    "userConsent.userIp",  # an IPv6 scope id ("fe80::1%eth0") is free text to the ipaddress module
    "userConsent.userLocation.country",
]

#: (character, code): one or more characters of every refused class.
_REFUSED_CHARACTERS = [
    pytest.param("\ud800", "not_encodable", id="lone-high-surrogate"),
    pytest.param("\udc80", "not_encodable", id="surrogateescape-byte"),
    pytest.param("\x00", "control_character", id="NUL"),
    pytest.param("\n", "control_character", id="LF"),
    pytest.param("\r", "control_character", id="CR"),
    pytest.param("\t", "control_character", id="TAB"),
    pytest.param("\x85", "control_character", id="C1-NEL"),
    pytest.param("\u202e", "bidi_control", id="RLO"),
    pytest.param("\u2066", "bidi_control", id="LRI"),
    pytest.param("\u200f", "bidi_control", id="RLM"),
    pytest.param("\u061c", "bidi_control", id="ALM"),
]


def _sandwich(path: str, char: str) -> tuple[str, str]:
    """A value of the field's allowed length with ``char`` in the middle, and the text either side of it."""
    side = _TEXT_SECRET[: (MAX_LENGTHS.get(path, 100) - 1) // 2]
    return side + char + side, side


@pytest.mark.parametrize("path", _FREE_TEXT_PATHS + _CONSTRAINED_TEXT_PATHS)
@pytest.mark.parametrize(("char", "code"), _REFUSED_CHARACTERS)
def test_text_rules_refuse_bad_characters_in_every_string_field(
    make: Any, path: str, char: str, code: str
) -> None:
    value, side = _sandwich(path, char)
    with pytest.raises(RequestValidationError) as info:
        make(**_text_changes(path, value))
    assert [(e.path, e.code) for e in info.value.errors] == [(path, code)]
    shown = str(info.value) + "".join(e.message + repr(e) for e in info.value.errors)
    assert side not in shown and char not in shown
    assert side not in repr(info.value) and ascii(char)[1:-1] not in repr(info.value)


@pytest.mark.parametrize(
    ("char", "code"),
    [(chr(c), "control_character") for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]
    + [(char, "bidi_control") for char in _BIDI_CONTROLS]
    + [(chr(c), "not_encodable") for c in (0xD800, 0xDBFF, 0xDC00, 0xDFFF)],
    ids=lambda v: f"U+{ord(v):04X}" if isinstance(v, str) and len(v) == 1 else str(v),
)
def test_text_rules_refuse_every_listed_character(make: Any, char: str, code: str) -> None:
    assert issues_of(make, merchant_id_scan_reference=f"ref-{char}-1") == [("merchantIdScanReference", code)]


def test_text_rules_refuse_a_surrogate_pair_held_as_two_code_points(make: Any) -> None:
    # "\ud83d\ude00" is how a broken UTF-16 decoder spells U+1F600; UTF-8 cannot encode it.
    assert issues_of(make, customer_id="cust-\ud83d\ude00") == [("customerId", "not_encodable")]


def test_text_rules_report_each_broken_rule_once(make: Any) -> None:
    value = "a\x00b\nc\u202ed\u2069e\ud800"
    assert issues_of(make, first_name=value) == [
        ("firstName", "not_encodable"),
        ("firstName", "control_character"),
        ("firstName", "bidi_control"),
    ]


@pytest.mark.parametrize("path", _FREE_TEXT_PATHS)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("Zoë Ñúñez-Łuk", id="accents"),
        pytest.param("山田太郎", id="cjk"),
        pytest.param("😀🎉", id="emoji"),
        pytest.param("\U0001f469\u200d\U0001f467", id="zwj-emoji-sequence"),
        pytest.param("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f", id="tag-flag"),
        pytest.param("می\u200cخواهم", id="zwnj-persian"),
        pytest.param("مرحبا שלום", id="rtl-letters"),
        pytest.param("Hyphen\u00adated", id="soft-hyphen"),
        pytest.param("a\u00a0b c", id="spaces"),
    ],
)
def test_text_rules_accept_real_unicode_text(make: Any, path: str, value: str) -> None:
    assert issues_of(make, **_text_changes(path, value)) == []


@pytest.mark.parametrize("value", ["Côte d'Ivoire", "Åland Islands", "Curaçao"])
def test_text_rules_accept_accented_country_names_in_us_state(make: Any, value: str) -> None:
    assert issues_of(make, us_state=value) == []


@pytest.mark.parametrize(("char", "_code"), _REFUSED_CHARACTERS)
def test_callback_url_keeps_its_own_stricter_rule(make: Any, char: str, _code: str) -> None:
    assert issues_of(make, callback_url=f"https://example.com/a{char}b") == [("callbackUrl", "invalid_url")]


def test_request_with_lone_surrogate_reference_is_refused_at_construction(jpeg: Image) -> None:
    with pytest.raises(RequestValidationError) as info:
        NetverifyRequest("ref-\ud800", jpeg, "DEU", IdType.PASSPORT)
    assert isinstance(info.value, ValueError)
    assert [(e.path, e.code) for e in info.value.errors] == [("merchantIdScanReference", "not_encodable")]
    assert "\ud800" not in str(info.value) and "\\ud800" not in repr(info.value)
    str(info.value).encode("utf-8")  # the error itself is safe to log


@pytest.mark.parametrize(("char", "code"), _REFUSED_CHARACTERS)
def test_wire_body_with_bad_text_is_refused_typed(jpeg: Image, char: str, code: str) -> None:
    body = NetverifyRequest("order-1", jpeg, "DEU", "PASSPORT").to_wire()
    body["merchantIdScanReference"] = f"order-{char}"
    body["userConsent"] = {"userIp": f"fe80::1%{char}", "userLocation": {"country": "AUT"}}
    with pytest.raises(RequestValidationError) as info:
        NetverifyRequest.from_wire(body)
    assert [(e.path, e.code) for e in info.value.errors] == [
        ("merchantIdScanReference", code),
        ("userConsent.userIp", code),
    ]


_ALLOWED_TEXT = st.text(
    st.characters(exclude_categories=["Cc", "Cs"], exclude_characters=_BIDI_CONTROLS), max_size=40
)
_REFUSED_CHARACTER = st.one_of(st.characters(categories=["Cc", "Cs"]), st.sampled_from(_BIDI_CONTROLS))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(left=_ALLOWED_TEXT, right=_ALLOWED_TEXT, bad=_REFUSED_CHARACTER)
def test_text_rules_accept_any_other_text_and_refuse_one_bad_character(
    make: Any, left: str, right: str, bad: str
) -> None:
    assert issues_of(make, last_name=f"x{left}{right}") == []
    code = {"Cc": "control_character", "Cs": "not_encodable"}.get(unicodedata.category(bad), "bidi_control")
    assert issues_of(make, last_name=f"x{left}{bad}{right}") == [("lastName", code)]
