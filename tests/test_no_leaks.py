"""No secret, personal value or image byte ever reaches a log record, an exception or a repr.

Sentinels: the API secret and token (and the Base64 of the Basic credentials), the end user's names, document
number, personal number, date of birth and IP address, and a marker embedded in the image bytes (plus the
Base64 of the image). Many failure paths run with every logger at DEBUG; then every log record (message with
its arguments, the arguments' reprs, any formatted traceback), every exception raised (``str`` and ``repr``
along the whole ``__cause__``/``__context__`` chain) and the ``repr`` of the requests, clients, receipts,
retrieval results, retry events and statistics involved is searched for each sentinel.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from _support import ONE_MODE_PER_LOOP, SleepRecorder, client_at, closed_port_url, in_modes

from netverify_async import (
    Consent,
    Image,
    NetverifyClient,
    NetverifyError,
    NetverifyRequest,
    RequestValidationError,
    RetryEvent,
    RetryPolicy,
    UserConsent,
    UserLocation,
)
from netverify_async.emulator import Faults, run_emulator

pytestmark = pytest.mark.anyio

TOKEN = "tok-Sentinel-7Hq2Lm"
SECRET = "sec-Sentinel-R8vX1p-secret"
FIRST_NAME = "Quixfirstsentinel"
LAST_NAME = "Zorblastsentinel"
NUMBER = "XK99117733"
PERSONAL_NUMBER = "PN44220088"
DOB = dt.date(1961, 7, 19)
USER_IP = "198.51.100.73"
IMAGE_MARKER = b"IMG-SENTINEL-c0ffee-5a5a"


def _jpeg_with_marker(width: int, height: int) -> bytes:
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), (180, 200, 190))
    ImageDraw.Draw(img).rectangle([10, 10, width // 2, height // 2], outline=(0, 0, 0), width=3)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80, comment=IMAGE_MARKER)
    data = out.getvalue()
    assert IMAGE_MARKER in data
    return data


GOOD_IMAGE = _jpeg_with_marker(640, 420)
TINY_IMAGE = _jpeg_with_marker(120, 80)  # refused by preflight and by the emulator


def _b64_variants(data: bytes) -> list[str]:
    """Pieces of the Base64 text that must appear if ``data`` were Base64-encoded in any alignment."""
    pieces = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        pieces.append(encoded[4 : len(encoded) - 4])  # drop the characters touched by the padding
    return pieces


def sentinels() -> dict[str, str]:
    credentials = base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()
    whole = base64.b64encode(GOOD_IMAGE).decode()
    tiny = base64.b64encode(TINY_IMAGE).decode()
    found = {
        "api secret": SECRET,
        "api token": TOKEN,
        "basic credentials": credentials,
        "first name": FIRST_NAME,
        "last name": LAST_NAME,
        "document number": NUMBER,
        "personal number": PERSONAL_NUMBER,
        "dob": DOB.isoformat(),
        "dob (compact)": DOB.strftime("%Y%m%d"),
        "user ip": USER_IP,
        "image marker": IMAGE_MARKER.decode(),
        "image base64 (middle)": whole[len(whole) // 2 : len(whole) // 2 + 40],
        "image base64 (end)": whole[-60:-4],
        "tiny image base64 (middle)": tiny[len(tiny) // 2 : len(tiny) // 2 + 40],
    }
    for index, piece in enumerate(_b64_variants(IMAGE_MARKER)):
        found[f"image marker base64 #{index}"] = piece
    return found


def make_request(reference: str, *, image: bytes = GOOD_IMAGE, **overrides: Any) -> NetverifyRequest:
    fields: dict[str, Any] = {
        "merchant_id_scan_reference": reference,
        "frontside_image": Image.from_bytes(image),
        "country": "AUT",
        "id_type": "PASSPORT",
        "first_name": FIRST_NAME,
        "last_name": LAST_NAME,
        "number": NUMBER,
        "personal_number": PERSONAL_NUMBER,
        "dob": DOB,
        "user_consent": UserConsent(
            user_ip=USER_IP,
            user_location=UserLocation("AUT"),
            consent=Consent("yes", obtained_at=dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)),
        ),
    }
    fields.update(overrides)
    return NetverifyRequest(**fields)


class Evidence:
    """Everything a scenario produced that a user could print, log or show."""

    def __init__(self) -> None:
        self.objects: list[object] = []
        self.errors: list[BaseException] = []
        self.events: list[RetryEvent] = []

    def keep(self, *objects: object) -> None:
        self.objects.extend(objects)

    async def expect_error(self, call: Any) -> NetverifyError:
        with anyio.fail_after(15):
            try:
                result = await call
            except NetverifyError as exc:
                self.errors.append(exc)
                return exc
        raise AssertionError(f"expected a typed error, got {result!r}")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
        todo.extend(getattr(current, "exceptions", ()))


def _texts(caplog: pytest.LogCaptureFixture, evidence: Evidence) -> Iterator[tuple[str, str]]:
    formatter = logging.Formatter()
    for record in caplog.records:
        where = f"log record {record.name}:{record.levelname}"
        yield where, record.getMessage()
        yield where + " args", repr(record.args)
        if record.exc_info:
            yield where + " traceback", formatter.formatException(record.exc_info)
    for error in evidence.errors:
        for link in _chain(error):
            yield f"exception {type(link).__name__}", f"{link!s} | {link!r}"
            for name in ("report", "errors"):
                if hasattr(link, name):
                    yield f"exception {type(link).__name__}.{name}", repr(getattr(link, name))
    for obj in evidence.objects + evidence.events:
        yield f"repr of {type(obj).__name__}", repr(obj)


def assert_no_leak(caplog: pytest.LogCaptureFixture, evidence: Evidence) -> None:
    assert caplog.records, "nothing was logged: the capture is not working"
    leaks = []
    checked = 0
    for where, text in _texts(caplog, evidence):
        checked += 1
        for name, value in sentinels().items():
            if value in text:
                leaks.append(f"{name} in {where}: ...{text[max(0, text.find(value) - 60) :][:160]}...")
    assert not leaks, "\n".join(leaks)
    assert checked > 10


def client(base_url: str, transport: str, evidence: Evidence, **kwargs: Any) -> NetverifyClient:
    params: dict[str, Any] = {
        "api_token": TOKEN,
        "api_secret": SECRET,
        "transport": transport,
        "sleep": SleepRecorder(),
        "on_retry": evidence.events.append,
        "retry": RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=10),
    }
    params.update(kwargs)
    made = client_at(base_url, **params)
    evidence.keep(made, made.retry_policy, made.submit_limiter)
    return made


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger, so every logger without its own level
    for name in ("netverify_async", "httpx", "httpx", "aiohttp", "uvicorn", "uvicorn.error", "asyncio"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


# -- the scenarios -------------------------------------------------------------------------------------------------


@in_modes(*ONE_MODE_PER_LOOP)
async def test_api_paths_leak_nothing(mode: tuple[str, str], debug_logs: pytest.LogCaptureFixture) -> None:
    transport = mode[1]
    ev = Evidence()
    async with run_emulator(processing_delay=0.0, api_token=TOKEN, api_secret=SECRET) as emu:
        # success, then retrieval of the personal data the emulator echoes back
        async with client(emu.base_url, transport, ev) as c:
            request = make_request("leak-ok")
            receipt = await c.perform_netverify(request)
            status = await c.scan_status(receipt.scan_reference)
            details = await c.scan_details(receipt.scan_reference)
            ev.keep(request, receipt, status, details, c.stats)
            assert FIRST_NAME in str(details.to_dict())  # the personal data really is in there, behind repr
            await ev.expect_error(c.scan_status("no-such-scan"))  # 404
        # 403: the emulator knows another secret
        emu_other = emu.app.config
        assert emu_other.api_secret == SECRET
        async with client(emu.base_url, transport, ev, api_secret=SECRET + "-wrong") as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-403")))
        # 400: the server refuses the image (preflight off)
        async with client(emu.base_url, transport, ev, preflight=False) as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-400", image=TINY_IMAGE)))
        # 503 retried until the attempts run out
        emu.set_faults(Faults(errors={503: 1.0}))
        async with client(emu.base_url, transport, ev) as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-503")))
        # 500 after processing, resent under retry_ambiguous, then dropped connections
        emu.set_faults(Faults(sequence=["500", "drop", "drop"], error_phase="after"))
        policy = RetryPolicy(max_attempts=3, retry_ambiguous=True)
        async with client(emu.base_url, transport, ev, retry=policy) as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-amb")))
        # a drop with the default policy: unknown at once
        emu.set_faults(Faults(drop_rate=1.0))
        async with client(emu.base_url, transport, ev) as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-drop")))
        # timeouts: a slow submission, and slow GETs retried until the deadline
        emu.set_faults(Faults(slow_rate=1.0, slow_seconds=1.0, apply_to={"submit", "retrieval"}))
        fast = RetryPolicy(max_attempts=2, attempt_timeout=0.3, deadline=2)
        async with client(emu.base_url, transport, ev, retry=fast) as c:
            await ev.expect_error(c.perform_netverify(make_request("leak-slow")))
            await ev.expect_error(c.scan_status(receipt.scan_reference))
        # 429 with a Retry-After above the cap
        emu.set_faults(Faults(rate_limit="1/60s", retry_after=True))
        async with client(emu.base_url, transport, ev, retry=RetryPolicy(max_retry_after=5)) as c:
            await c.perform_netverify(make_request("leak-429-first"))
            await ev.expect_error(c.perform_netverify(make_request("leak-429")))
    assert len(ev.errors) == 9
    assert ev.events, "no retry happened: the retry log lines were not exercised"
    assert_no_leak(debug_logs, ev)


@in_modes(*ONE_MODE_PER_LOOP)
async def test_local_failures_leak_nothing(
    mode: tuple[str, str], debug_logs: pytest.LogCaptureFixture
) -> None:
    transport = mode[1]
    ev = Evidence()
    logging.getLogger("netverify_async").debug("capture check")  # so that an empty capture is not a pass
    # connection refused, retried, then given up
    async with client(closed_port_url(), transport, ev) as c:
        await ev.expect_error(c.perform_netverify(make_request("leak-refused")))
    # preflight refuses the image: nothing sent
    async with client(closed_port_url(), transport, ev) as c:
        await ev.expect_error(c.perform_netverify(make_request("leak-preflight", image=TINY_IMAGE)))
    # validation refuses the request itself: each field is invalid *because of* its sentinel-bearing value
    with pytest.raises(RequestValidationError) as info:
        make_request(
            "leak-invalid",
            first_name=FIRST_NAME * 10,
            last_name=LAST_NAME * 10,
            number=NUMBER * 20,
            personal_number=PERSONAL_NUMBER * 20,
            dob=dt.date.today() + dt.timedelta(days=400),
            user_consent=UserConsent(user_ip=USER_IP + ".7", user_location=UserLocation("AUT")),
        )
    ev.errors.append(info.value)
    assert len(info.value.errors) >= 5, info.value.errors
    # a request that is fine, shown in every way a user might print it
    request = make_request("leak-repr")
    ev.keep(request, request.frontside_image, request.user_consent)
    assert len(ev.errors) == 3
    assert_no_leak(debug_logs, ev)


def test_the_sentinels_would_be_found() -> None:
    """The search itself works: each sentinel is found in the text a careless implementation would log."""
    request_body = base64.b64encode(GOOD_IMAGE).decode()
    careless = (
        f"Authorization: Basic {base64.b64encode(f'{TOKEN}:{SECRET}'.encode()).decode()} token={TOKEN} "
        f"secret={SECRET} {FIRST_NAME} {LAST_NAME} {NUMBER} {PERSONAL_NUMBER} {DOB} {DOB:%Y%m%d} "
        f"{USER_IP} {IMAGE_MARKER!r} {request_body} {base64.b64encode(TINY_IMAGE).decode()}"
    )
    found = sentinels()
    variants = [name for name in found if name.startswith("image marker base64")]
    missing = [name for name, value in found.items() if name not in variants and value not in careless]
    assert missing == [], missing
    # the marker sits at one alignment inside the image: one of the three variants matches its Base64
    assert any(found[name] in request_body for name in variants)


def test_the_check_catches_a_leak(debug_logs: pytest.LogCaptureFixture) -> None:
    """A leaking log line, or a secret hidden in an exception's context, makes the check fail."""
    ev = Evidence()
    logging.getLogger("netverify_async").debug("sending for %s", FIRST_NAME)
    with pytest.raises(AssertionError, match="first name"):
        assert_no_leak(debug_logs, ev)
    debug_logs.clear()
    logging.getLogger("netverify_async").debug("a harmless line")
    try:
        try:
            raise ValueError(f"bad secret {SECRET}")
        except ValueError:
            raise NetverifyError("wrapped") from None  # __cause__ hidden, __context__ still set
    except NetverifyError as exc:
        ev.errors.append(exc)
    with pytest.raises(AssertionError, match="api secret in exception ValueError"):
        assert_no_leak(debug_logs, ev)
