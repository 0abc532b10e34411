"""repr() and str() of the models never show image bytes or personal data."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from PIL import Image as PILImage

from netverify_async import (
    Consent,
    Image,
    NetverifyRequest,
    RequestValidationError,
    ScanReceipt,
    UserConsent,
    UserLocation,
)

UTC = dt.timezone.utc

FIRST = "Sentinelfirst"
LAST = "Sentinellast"
NUMBER = "SNTLNUM8731"
PERSONAL = "SNTLPN0042"
IP = "198.51.100.203"
DOB = dt.date(1961, 7, 29)
EXPIRY = dt.date(2033, 11, 17)


@pytest.fixture(scope="module")
def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (10, 10), (1, 2, 3)).save(buf, "JPEG", comment=b"SENTINELPIXELS")
    data = buf.getvalue()
    assert b"SENTINELPIXELS" in data
    return data


def _forbidden(text: str) -> list[str]:
    needles = [FIRST, LAST, NUMBER, PERSONAL, IP, "1961", "2033", "SENTINELPIXELS", "\\xff\\xd8"]
    return [n for n in needles if n in text]


def test_request_repr_hides_personal_fields_and_image_bytes(jpeg_bytes: bytes) -> None:
    req = NetverifyRequest(
        merchant_id_scan_reference="ref-77",
        frontside_image=Image.from_bytes(jpeg_bytes),
        backside_image=Image.from_bytes(jpeg_bytes),
        face_image=Image.from_bytes(jpeg_bytes),
        country="USA",
        id_type="DRIVING_LICENSE",
        first_name=FIRST,
        last_name=LAST,
        number=NUMBER,
        personal_number=PERSONAL,
        dob=DOB,
        expiry=EXPIRY,
        us_state="IL",
        enabled_fields=["idFaceMatch"],
        user_consent=UserConsent(IP, UserLocation("USA", "IL"), Consent("yes", dt.datetime.now(UTC))),
    )
    for text in (repr(req), str(req), repr(req.user_consent), repr(req.frontside_image)):
        assert _forbidden(text) == [], text
    # What is not personal stays visible, so the repr is still useful.
    assert "ref-77" in repr(req)
    assert "size=" in repr(req.frontside_image)


def test_nested_models_repr_hides_ip(jpeg_bytes: bytes) -> None:
    consent = UserConsent(IP, UserLocation("AUT"))
    assert IP not in repr(consent)
    assert "<redacted>" in repr(consent)


def test_absent_personal_fields_show_none(jpeg_bytes: bytes) -> None:
    req = NetverifyRequest("ref-1", Image.from_bytes(jpeg_bytes), "DEU", "PASSPORT")
    assert "first_name=None" in repr(req)


def test_validation_error_about_personal_fields_hides_them(jpeg_bytes: bytes) -> None:
    with pytest.raises(RequestValidationError) as info:
        NetverifyRequest(
            "ref-1",
            Image.from_bytes(jpeg_bytes),
            "DEU",
            "PASSPORT",
            first_name=FIRST * 10,
            personal_number=PERSONAL * 2,
            dob=dt.date(9999, 1, 1),
            user_consent=UserConsent(IP + "9", UserLocation("AUT")),
        )
    assert _forbidden(str(info.value) + repr(info.value)) == []
    assert len(info.value.errors) == 4


def test_receipt_repr() -> None:
    receipt = ScanReceipt("0f0e0d0c-aaaa-bbbb-cccc-1234567890ab", dt.datetime(2024, 1, 1, tzinfo=UTC))
    assert "0f0e0d0c" in repr(receipt)
