"""Helpers shared by the tests (importable as ``_support``)."""

from __future__ import annotations

import io
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import httpx
    import pytest

    from netverify_async import NetverifyClient, NetverifyError, NetverifyRequest

T = TypeVar("T")

#: A factory of valid requests (the ``make_request`` fixture): ``make_request("ref", first_name="Ada")``.
RequestFactory = Callable[..., "NetverifyRequest"]

#: The event loops the library supports.
LOOPS = ("asyncio", "trio")
#: (event loop, transport) pairs: the library's own transports on each loop they support.
TRANSPORT_MODES = (("asyncio", "httpx"), ("asyncio", "aiohttp"), ("trio", "httpx"))
#: A caller-supplied ``httpx.AsyncClient`` (``http_client=``) on each loop.
CALLER_MODES = (("asyncio", "caller"), ("trio", "caller"))
#: One pair per loop: for cases where the transport plays no part beyond delivering bytes.
ONE_MODE_PER_LOOP = (("asyncio", "aiohttp"), ("trio", "httpx"))

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


def mode_ids(modes: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{loop}-{transport}" for loop, transport in modes]


def in_modes(*modes: tuple[str, str]) -> pytest.MarkDecorator:
    """Run the test in these (event loop, transport) modes instead of ``TRANSPORT_MODES`` (see conftest)."""
    import pytest

    return pytest.mark.parametrize("mode", modes, ids=mode_ids(modes))


def client_at(base_url: str, **kwargs: Any) -> NetverifyClient:
    """A NetverifyClient for ``base_url`` with test credentials, a descriptive User-Agent and no rate limit;
    ``kwargs`` override or add any setting."""
    from netverify_async import NetverifyClient

    params: dict[str, Any] = {
        "api_token": "test-token",
        "api_secret": "test-secret",
        "user_agent": USER_AGENT,
        "base_url": base_url,
        "rate_limit": None,
    }
    params.update(kwargs)
    return NetverifyClient(**params)


@asynccontextmanager
async def client_in_mode(base_url: str, transport: str, **kwargs: Any) -> AsyncIterator[NetverifyClient]:
    """:func:`client_at` on ``transport``: one of the library's (``httpx``, ``aiohttp``), or ``caller``: a
    caller-supplied ``httpx.AsyncClient``, made here and closed afterwards (unless ``http_client`` is given)."""
    import httpx

    caller = httpx.AsyncClient() if transport == "caller" and "http_client" not in kwargs else None
    if caller is not None:
        kwargs["http_client"] = caller
    elif transport != "caller":
        kwargs["transport"] = transport
    try:
        async with client_at(base_url, **kwargs) as client:
            yield client
    finally:
        if caller is not None:
            await caller.aclose()


def emulator_client(emu: Any, sleeps: SleepRecorder | None = None, **kwargs: Any) -> NetverifyClient:
    """A NetverifyClient pointed at a running emulator, with no rate limit and an optional sleep recorder."""
    params: dict[str, Any] = {
        "base_url": emu.base_url,
        "api_token": emu.api_token,
        "api_secret": emu.api_secret,
        "sleep": sleeps,
    }
    params.update(kwargs)
    return client_at(**params)


def api_client(emu: Any) -> httpx.AsyncClient:
    """A raw httpx client for a running emulator, with its credentials and the headers the API asks for."""
    import httpx

    from netverify_async.emulator import API_HEADERS

    return httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS)


async def outcome_of(call: Awaitable[T], *, within: float = 10.0) -> T | NetverifyError:
    """The call's result or the library error it raised; any other exception, or a call still running after
    ``within`` seconds, fails the test."""
    import anyio

    from netverify_async import NetverifyError

    with anyio.fail_after(within):
        try:
            return await call
        except NetverifyError as exc:
            return exc


def free_port() -> int:
    """A loopback port that was free a moment ago: nobody listens on it, so connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """``http://127.0.0.1:PORT`` of a port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminate a child process; kill it when it does not end within ``timeout`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class AnswerGate:
    """ASGI middleware in front of the emulator that holds its answers to performNetverify until the test opens
    the gate: the emulator has processed each held request (its scan exists), but the client has no answer yet.

    ``hold(n)`` chooses the held requests by arrival (1 = the first submission; default: all); with
    ``open_at=N`` the gate opens by itself when the N-th submission arrives. Works whether the server runs in the
    test's event loop (asyncio) or in a thread with its own loop (trio). ``arrived`` and ``held`` count the
    submissions that reached the emulator and the answers being held.
    """

    def __init__(self, app: Any, *, hold: Callable[[int], bool] = lambda n: True, open_at: int | None = None):
        import threading

        self.app = app
        self._hold = hold
        self._open_at = open_at
        self._lock = threading.Lock()
        self._opened = False
        self._waiting: list[tuple[Any, Any]] = []
        self.arrived = 0
        self.held = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        import asyncio

        from netverify_async._constants import PERFORM_NETVERIFY_PATH

        if scope["type"] != "http" or scope["path"] != PERFORM_NETVERIFY_PATH:
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.arrived += 1
            number = self.arrived
        if self._open_at is not None and number >= self._open_at:
            self.open()
        if not self._hold(number):
            await self.app(scope, receive, send)
            return
        released = asyncio.Event()
        with self._lock:
            if self._opened:
                released.set()
            else:
                self._waiting.append((asyncio.get_running_loop(), released))

        async def held_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and not released.is_set():
                self.held += 1
                try:
                    await released.wait()
                finally:
                    self.held -= 1
            await send(message)

        await self.app(scope, receive, held_send)

    def open(self) -> None:
        """Let every held answer go, and all later ones."""
        with self._lock:
            self._opened = True
            waiting, self._waiting = self._waiting, []
        for loop, event in waiting:
            loop.call_soon_threadsafe(event.set)


@asynccontextmanager
async def gated_emulator(
    *, hold: Callable[[int], bool] = lambda n: True, open_at: int | None = None
) -> AsyncIterator[tuple[Any, AnswerGate]]:
    """An emulator (instant processing) behind an :class:`AnswerGate`; the gate opens when the block ends."""
    from netverify_async.emulator import EmulatorApp, EmulatorConfig, RunningEmulator, serve_asgi

    app = EmulatorApp(EmulatorConfig(processing_delay=0))
    gate = AnswerGate(app, hold=hold, open_at=open_at)
    async with serve_asgi(gate) as base_url:
        try:
            yield RunningEmulator(app, base_url), gate
        finally:
            gate.open()
