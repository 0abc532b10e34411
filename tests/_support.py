"""Helpers shared by the tests (importable as ``_support``)."""

from __future__ import annotations

import io
from typing import Any

USER_AGENT = "Example Corp SampleApp/1.0.1"

# The two sample callbacks of the callback guide, byte for byte.
SAMPLE_APPROVED = (
    "idExpiry=2022-12-31&idType=PASSPORT&idDob=1990-01-01&idCheckSignature=OK&idCheckDataPositions=OK"
    "&idCheckHologram=OK&idCheckMicroprint=OK&idCheckDocumentValidation=OK&idCountry=USA&idScanSource=SDK"
    "&idFirstName=FIRSTNAME&verificationStatus=APPROVED_VERIFIED"
    "&jumioIdScanReference=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx&personalNumber=N%2FA"
    "&merchantIdScanReference=YOURIDSCANREFERENCE&idCheckSecurityFeatures=OK&idCheckMRZcode=OK"
    "&idScanImage=https%3A%2F%2Fnetverify.com%2Frecognition%2Fv1%2Fidscan%2Fxxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    "%2Ffront&callBackType=NETVERIFYID&clientIp=xxx.xxx.xxx.xxx&idLastName=LASTNAME"
    "&idAddress=%7B%22country%22%3A%22USA%22%2C%22stateCode%22%3A%22US%2DOH%22%7D&idScanStatus=SUCCESS"
    "&identityVerification=%7B%22similarity%22%3A%22MATCH%22%2C%22validity%22%3Atrue%7D&idNumber=P1234"
)
SAMPLE_FRAUD = (
    "idType=PASSPORT&idCheckSignature=N%2FA&rejectReason=%7B%20%22rejectReasonCode%22%3A%22100%22%2C%20"
    "%22rejectReasonDescription%22%3A%22MANIPULATED_DOCUMENT%22%2C%20%22rejectReasonDetails%22%3A%20%5B%7B%20"
    "%22detailsCode%22%3A%20%221001%22%2C%20%22detailsDescription%22%3A%20%22PHOTO%22%20%7D%2C%7B%20"
    "%22detailsCode%22%3A%20%221004%22%2C%20%22detailsDescription%22%3A%20%22DOB%22%20%7D%5D%7D"
    "&idCheckDataPositions=N%2FA&idCheckHologram=N%2FA&idCheckMicroprint=N%2FA&idCheckDocumentValidation=N%2FA"
    "&idCountry=USA&idScanSource=SDK&verificationStatus=DENIED_FRAUD"
    "&jumioIdScanReference=xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx&merchantIdScanReference=YOURSCANREFERENCE"
    "&idCheckSecurityFeatures=N%2FA&idCheckMRZcode=N%2FA"
    "&idScanImage=https%3A%2F%2Fnetverify.com%2Frecognition%2Fv1%2Fidscan%2Fxxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    "%2Ffront&callBackType=NETVERIFYID&clientIp=xxx.xxx.xxx.xxx&idScanStatus=ERROR"
)


def make_jpeg(width: int = 640, height: int = 420, *, quality: int = 85, seed: int = 1) -> bytes:
    """A real JPEG with some texture, decodable by Pillow."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), (200 + seed % 50, 210, 190))
    draw = ImageDraw.Draw(img)
    for i in range(0, width, 40):
        draw.line([(i, 0), (width - i, height)], fill=(i % 255, 80, 120), width=3)
    draw.rectangle([20, 20, width // 3, height // 2], outline=(10, 10, 10), width=4)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


class SleepRecorder:
    """A stand-in for ``anyio.sleep`` that records the requested waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def emulator_client(emu: Any, sleeps: SleepRecorder | None = None, **kwargs: Any) -> Any:
    """A NetverifyClient pointed at a running emulator, with no rate limit and an optional sleep recorder."""
    from netverify_async import NetverifyClient

    params: dict[str, Any] = {
        "api_token": emu.api_token,
        "api_secret": emu.api_secret,
        "user_agent": USER_AGENT,
        "base_url": emu.base_url,
        "rate_limit": None,
        "sleep": sleeps,
    }
    params.update(kwargs)
    return NetverifyClient(**params)
