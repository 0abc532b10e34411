"""TLS: the emulator served over HTTPS on 127.0.0.1 with certificates from a throwaway CA (trustme).

Verification is always on: an unknown CA and a certificate for another host name are refused before anything
is sent, with a message that says so; trusting the CA with ``ca_bundle`` makes the same server usable. Every
case runs on both transports (aiohttp's pool and httpcore), and on trio with httpcore.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
import trustme
from _support import RequestFactory, SleepRecorder, client_at, emulator_client

from netverify_async import ConnectError, NetverifyClient, RetryPolicy, ScanReceipt
from netverify_async.emulator import EmulatorApp, EmulatorConfig

pytestmark = pytest.mark.anyio



# -- an HTTPS emulator in a background thread ---------------------------------------------------------------------


class _TLSServerThread:
    """uvicorn serving an ASGI app over TLS on a loopback socket, in its own thread and asyncio loop."""

    def __init__(self, app: Any, certfile: Path, keyfile: Path) -> None:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        config = uvicorn.Config(
            app,
            ssl_certfile=str(certfile),
            ssl_keyfile=str(keyfile),
            lifespan="on",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = Server(config)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the TLS server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()


class TLSEmulator:
    def __init__(self, app: EmulatorApp, port: int, ca_pem: Path) -> None:
        self.app = app
        self.port = port
        self.ca_pem = ca_pem

    def url(self, host: str = "127.0.0.1") -> str:
        return f"https://{host}:{self.port}"

    @property
    def scans_created(self) -> int:
        return self.app.state.snapshot().scans_created

    @property
    def requests(self) -> int:
        return self.app.state.snapshot().requests


@contextlib.asynccontextmanager
async def serve_tls(tmp_path: Path, *hostnames: str) -> AsyncIterator[TLSEmulator]:
    """The emulator over HTTPS with a certificate for ``hostnames``, issued by a fresh CA."""
    ca = trustme.CA()
    cert = ca.issue_cert(*hostnames)
    certfile, keyfile, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(certfile), append=True)
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(ca_pem))
    app = EmulatorApp(EmulatorConfig(processing_delay=0.0))
    thread = _TLSServerThread(app, certfile, keyfile)
    await anyio.to_thread.run_sync(thread.start)
    try:
        yield TLSEmulator(app, thread.port, ca_pem)
    finally:
        await anyio.to_thread.run_sync(thread.stop)


def client_for(emu: TLSEmulator, base_url: str, transport: str, **kwargs: Any) -> NetverifyClient:
    config = emu.app.config
    params: dict[str, Any] = {
        "api_token": config.api_token,
        "api_secret": config.api_secret,
        "transport": transport,
        "retry": RetryPolicy(max_attempts=2, connect_timeout=5, attempt_timeout=10, deadline=20),
    }
    params.update(kwargs)
    return client_at(base_url, **params)


@pytest.fixture
def ca_bundle_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No environment variable may point Python's SSL at another trust store during these tests."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    yield


# -- the tests -----------------------------------------------------------------------------------------------------


async def test_untrusted_certificate_is_refused_as_a_safe_connect_error(
    tmp_path: Path, transport: str, make_request: RequestFactory, ca_bundle_env: None
) -> None:
    sleeps = SleepRecorder()
    async with serve_tls(tmp_path, "127.0.0.1", "localhost") as emu:
        async with client_for(emu, emu.url(), transport, sleep=sleeps) as client:
            with anyio.fail_after(15), pytest.raises(ConnectError) as info:
                await client.perform_netverify(make_request("untrusted"))
        assert emu.requests == 0 and emu.scans_created == 0  # nothing got through the handshake
    error = info.value
    assert "TLS certificate verification failed" in str(error), str(error)
    assert error.safe_to_retry
    assert error.attempts == 2 and len(sleeps.waits) == 1  # retried within the policy, then given up


async def test_trusted_ca_bundle_lets_a_submission_through(
    tmp_path: Path, transport: str, make_request: RequestFactory
) -> None:
    async with serve_tls(tmp_path, "127.0.0.1", "localhost") as emu:
        for host in ("127.0.0.1", "localhost"):
            async with client_for(emu, emu.url(host), transport, ca_bundle=emu.ca_pem) as client:
                with anyio.fail_after(15):
                    receipt = await client.perform_netverify(make_request(f"tls-{host}"))
                    status = await client.scan_status(receipt.scan_reference)
            assert isinstance(receipt, ScanReceipt)
            assert status.scan_reference == receipt.scan_reference
        assert emu.scans_created == 2


async def test_certificate_for_another_host_is_refused(
    tmp_path: Path, transport: str, make_request: RequestFactory
) -> None:
    sleeps = SleepRecorder()
    # trusted CA, but the certificate names only "api.example.test", not the address we connect to
    async with serve_tls(tmp_path, "api.example.test") as emu:
        for host in ("127.0.0.1", "localhost"):
            async with client_for(
                emu, emu.url(host), transport, ca_bundle=emu.ca_pem, sleep=sleeps
            ) as client:
                with anyio.fail_after(15), pytest.raises(ConnectError) as info:
                    await client.perform_netverify(make_request("wrong-host"))
            assert "TLS certificate verification failed" in str(info.value), str(info.value)
            assert host in str(info.value) or "mismatch" in str(info.value).lower()
            assert info.value.safe_to_retry
        assert emu.requests == 0 and emu.scans_created == 0


async def test_plain_http_server_behind_an_https_url_is_a_connect_error(
    transport: str, make_request: RequestFactory
) -> None:
    from netverify_async.emulator import run_emulator

    sleeps = SleepRecorder()
    async with run_emulator(processing_delay=0.0) as emu:
        https_url = emu.base_url.replace("http://", "https://")
        client = emulator_client(
            emu, sleeps, base_url=https_url, transport=transport, retry=RetryPolicy(max_attempts=2, connect_timeout=5)
        )
        async with client:
            with anyio.fail_after(15), pytest.raises(ConnectError) as info:
                await client.perform_netverify(make_request("no-tls"))
        assert emu.stats.scans_created == 0
    assert "TLS" in str(info.value), str(info.value)
    assert info.value.safe_to_retry and info.value.attempts == 2
