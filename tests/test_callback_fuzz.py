"""Whatever arrives at the callback endpoint, parse_callback either returns a NetverifyCallback or raises
CallbackParseError: no other exception, and the result is always printable and serialisable."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netverify_async import CallbackParseError
from netverify_async.callbacks import NetverifyCallback, parse_callback

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

#: Every documented key, read from the model's wire metadata (other spellings included).
WIRE_KEYS = {
    name
    for field in attrs.fields(NetverifyCallback)
    if "wire" in field.metadata
    for name in (field.metadata["wire"], *field.metadata.get("also", ()))
}
REAL_KEYS = [*sorted(WIRE_KEYS), "jumioIdScanReference"]
JSON_KEYS = ["rejectReason", "identityVerification", "idAddress", "livenessImages", "dlCategories"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
json_like_keys = st.sampled_from(
    [
        "rejectReasonCode",
        "rejectReasonDescription",
        "rejectReasonDetails",
        "detailsCode",
        "similarity",
        "validity",
        "reason",
        "line1",
        "country",
        "category",
        "issueDate",
        "isReadable",
    ]
)
structured_json = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(json_like_keys, children, max_size=4),
    max_leaves=12,
)
garbage_text = st.text(max_size=40) | st.sampled_from(
    [
        "N/A",
        "",
        " ",
        "null",
        "{",
        "[]",
        "{}",
        "true",
        "TRUE",
        "WEB-CAM",
        "2019-05-30T08:37:35.8Z",
        "1990-02-30",
        "APPROVED_VERIFIED",
        "\x00",
        "%FF",
        "[" * 50,
    ]
)
field_value = garbage_text | structured_json.map(json.dumps)


def check(body: Any) -> None:
    try:
        result = parse_callback(body)
    except CallbackParseError as error:
        assert str(error)
        return
    assert isinstance(result, NetverifyCallback)
    assert result.jumio_id_scan_reference
    repr(result)
    json.dumps(result.to_dict())
    json.dumps(result.to_dict(redact=True))


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(body: bytes) -> None:
    check(body)


@FUZZ
@given(st.text(max_size=300))
def test_random_text(body: str) -> None:
    check(body)


@FUZZ
@given(
    st.dictionaries(
        st.text(max_size=20) | st.sampled_from(REAL_KEYS),
        st.text(max_size=40) | st.lists(st.text(max_size=20), max_size=3),
        max_size=12,
    )
)
def test_random_mappings(body: dict[str, Any]) -> None:
    check(body)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from(REAL_KEYS) | st.text(max_size=15), field_value), max_size=15),
    st.booleans(),
)
def test_urlencoded_real_keys_with_garbage_values(pairs: list[tuple[str, str]], with_reference: bool) -> None:
    if with_reference:
        pairs = [("jumioIdScanReference", "0b5f8c3e-1111-4222-8333-944445555666"), *pairs]
    body = urllib.parse.urlencode(pairs)
    check(body)
    check(body.encode())
    if with_reference:
        # With a valid reference first, garbage in the other fields is never fatal.
        assert parse_callback(body).jumio_id_scan_reference == "0b5f8c3e-1111-4222-8333-944445555666"


@FUZZ
@given(st.dictionaries(st.sampled_from(JSON_KEYS), structured_json.map(json.dumps), min_size=1))
def test_json_fields_of_any_shape_are_never_fatal(fields: dict[str, str]) -> None:
    body = {"jumioIdScanReference": "abc", **fields}
    result = parse_callback(body)
    assert result.jumio_id_scan_reference == "abc"
    json.dumps(result.to_dict())


@FUZZ
@given(st.binary(max_size=200))
def test_raw_bytes_after_a_valid_prefix(tail: bytes) -> None:
    check(b"jumioIdScanReference=abc&verificationStatus=APPROVED_VERIFIED&" + tail)
