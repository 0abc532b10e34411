"""examples/fastapi_app.py (the README's example) works: served by uvicorn, against the emulator, via its env."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import loopback_socket, serve, url_of
from _support import USER_AGENT, make_jpeg

from netverify_async.emulator import run_emulator

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(spec.name, None)
    spec.loader.exec_module(module)
    return module


def configure(monkeypatch: pytest.MonkeyPatch, emu: Any) -> None:
    monkeypatch.setenv("NETVERIFY_API_TOKEN", emu.api_token)
    monkeypatch.setenv("NETVERIFY_API_SECRET", emu.api_secret)
    monkeypatch.setenv("NETVERIFY_USER_AGENT", USER_AGENT)
    monkeypatch.setenv("NETVERIFY_BASE_URL", emu.base_url)
    monkeypatch.setenv("CALLBACK_ALLOWED_IPS", "127.0.0.1,::1")
    monkeypatch.delenv("NETVERIFY_CALLBACK_URL", raising=False)


async def wait_until_finished(http: httpx.AsyncClient, scan_reference: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            answer = await http.get(f"/verify/{scan_reference}")
            assert answer.status_code == 200, answer.text
            if answer.json()["state"] == "FINISHED":
                return dict(answer.json())
            await anyio.sleep(0.05)


async def test_upload_is_submitted_and_the_callback_result_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = loopback_socket()
    async with run_emulator(
        processing_delay=0.1,
        default_outcome="fraud",
        allow_http_callbacks=True,
        callback_url_override=url_of(sock) + "/netverify/callback",
    ) as emu:
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app, sock) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post(
                "/verify",
                files={"photo": ("passport.jpg", make_jpeg(), "image/jpeg")},
                data={"country": "AUT", "id_type": "PASSPORT"},
            )
            assert answer.status_code == 202, answer.text
            scan_reference = answer.json()["scan_reference"]
            [record] = await emu.wait_for_callbacks(1, timeout=30)
            assert record.result == "delivered"
            with anyio.fail_after(30):  # stored by the callback handler, which runs after the answer
                while scan_reference not in example.RESULTS:
                    await anyio.sleep(0.01)
            result = await wait_until_finished(http, scan_reference)
    assert result == {
        "state": "FINISHED",
        "merchant_reference": answer.json()["merchant_reference"],
        "verification_status": "DENIED_FRAUD",
        "approved": False,
        "reject_reasons": ["100", "1001", "1004"],
    }


async def test_without_a_callback_the_result_is_fetched_by_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0.1) as emu:  # no callback URL anywhere
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post("/verify", files={"photo": ("id.jpg", make_jpeg(), "image/jpeg")})
            assert answer.status_code == 202, answer.text
            result = await wait_until_finished(http, answer.json()["scan_reference"])
            unknown = await http.get("/verify/00000000-0000-0000-0000-000000000000")
    assert emu.callbacks == []
    assert result["verification_status"] == "APPROVED_VERIFIED"
    assert result["approved"] is True
    assert unknown.status_code == 404


async def test_an_image_jumio_would_refuse_gets_422_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0) as emu:
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            tiny = await http.post("/verify", files={"photo": ("id.jpg", make_jpeg(200, 150), "image/jpeg")})
            text = await http.post("/verify", files={"photo": ("id.jpg", b"not an image", "image/jpeg")})
    assert tiny.status_code == 422
    assert [d["code"] for d in tiny.json()["detail"]] == ["too_small"]
    assert text.status_code == 422
    assert emu.stats.scans_created == 0


async def test_example_refuses_callbacks_from_elsewhere_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0) as emu:
        configure(monkeypatch, emu)
        monkeypatch.delenv("CALLBACK_ALLOWED_IPS")
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post(
                "/netverify/callback",
                content="jumioIdScanReference=abc&verificationStatus=APPROVED_VERIFIED",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    assert answer.status_code == 403
    assert example.RESULTS == {}


# ----------------------------------------------------------------------------------------------------------
# Every typed error of the library gets its status code, and a log line (the example served by uvicorn as
# the README runs it: a separate process, configured by its environment)
# ----------------------------------------------------------------------------------------------------------

ROOT = EXAMPLE.parent.parent
WRONG_SECRET = "wrong-sentinel-secret-7"


@contextlib.contextmanager
def example_process(base_url: str, secret: str) -> Iterator[tuple[str, list[str]]]:
    """``uvicorn examples.fastapi_app:app`` in a subprocess on a socket made here; yields its URL and, once
    the block ends, the lines it wrote to stderr (its log)."""
    sock = loopback_socket()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETVERIFY_", "CALLBACK_"))}
    env.update(
        NETVERIFY_API_TOKEN="emulator-api-token",
        NETVERIFY_API_SECRET=secret,
        NETVERIFY_USER_AGENT=USER_AGENT,
        NETVERIFY_BASE_URL=base_url,
        CALLBACK_ALLOWED_IPS="127.0.0.1,::1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_app:app", "--fd", str(sock.fileno())],
        cwd=ROOT,
        env=env,
        pass_fds=(sock.fileno(),),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = url_of(sock)
    log: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/openapi.json", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the example did not start: {proc.communicate(timeout=5)[1]}")
            time.sleep(0.05)
        yield url, log
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        sock.close()
        log.extend(err.splitlines())


def post_photo(url: str, photo: bytes, **data: str) -> httpx.Response:
    return httpx.post(
        url + "/verify",
        files={"photo": ("id.jpg", photo, "image/jpeg")},
        data={"country": "AUT", "id_type": "PASSPORT", **data},
        timeout=60,
        trust_env=False,
    )


def closed_port() -> int:
    sock = loopback_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def test_a_wrong_secret_is_a_logged_502_on_every_route() -> None:
    from netverify_async.emulator import run_emulator_in_thread

    with (
        run_emulator_in_thread(processing_delay=0) as emu,
        example_process(emu.base_url, WRONG_SECRET) as (url, log),
    ):
        posted = post_photo(url, make_jpeg())
        fetched = httpx.get(url + "/verify/00000000-0000-0000-0000-000000000000", timeout=60, trust_env=False)
    assert posted.status_code == 502, posted.text
    assert fetched.status_code == 502, fetched.text
    assert "refused this service's request" in posted.json()["detail"]
    text = "\n".join(log)
    assert "Traceback" not in text
    # the operator learns which call failed, why (the server's own reason) and the tracking id to quote
    assert "POST /verify -> 502: ForbiddenError" in text
    assert "GET /verify/00000000-0000-0000-0000-000000000000 -> 502: ForbiddenError" in text
    assert "invalid Basic authentication" in text
    assert "tracking id" in text
    assert WRONG_SECRET not in text + posted.text + fetched.text
    assert emu.stats.scans_created == 0


def test_an_unreachable_api_is_a_503_with_retry_after() -> None:
    with example_process(f"http://127.0.0.1:{closed_port()}", "emulator-api-secret") as (url, log):
        posted = post_photo(url, make_jpeg())
        fetched = httpx.get(url + "/verify/abc-123", timeout=60, trust_env=False)
    for answer in (posted, fetched):
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert "try again later" in answer.json()["detail"]
    text = "\n".join(log)
    assert "Traceback" not in text
    assert "POST /verify -> 503: ConnectError" in text
    assert "could not connect to http://127.0.0.1:" in text  # where, in the log only


def test_bad_uploads_are_422_naming_the_form_field() -> None:
    from netverify_async.emulator import run_emulator_in_thread, sample_image

    with (
        run_emulator_in_thread(processing_delay=0) as emu,
        example_process(emu.base_url, "emulator-api-secret") as (url, _log),
    ):
        empty = post_photo(url, b"")
        webp = post_photo(url, sample_image(800, 600, "WEBP"))
        country = post_photo(url, make_jpeg(), country="ZZZ")
    assert (empty.status_code, webp.status_code, country.status_code) == (422, 422, 422)
    assert {d["field"] for d in empty.json()["detail"]} == {"photo"}
    assert [(d["field"], d["code"]) for d in webp.json()["detail"]] == [("photo", "unsupported_format")]
    assert "fix=True" not in webp.text  # the library's own option means nothing to the service's users
    assert {d["field"] for d in country.json()["detail"]} == {"country"}
    assert emu.stats.scans_created == 0


def test_every_library_error_has_a_status_and_a_log_level() -> None:
    """The mapping in one table: nothing falls through to a 500 with a traceback."""
    import logging

    from netverify_async import (
        AuthenticationError,
        BadRequestError,
        ConnectError,
        DeadlineExceeded,
        FailureKind,
        ForbiddenError,
        NotFoundError,
        PoolTimeoutError,
        RateLimitedError,
        RateLimiterError,
        ReadError,
        ResponseError,
        RetryBudgetExhausted,
        ServerError,
        SubmissionOutcomeUnknown,
    )

    example = load_example()
    cases: list[tuple[Exception, int]] = [
        (ForbiddenError("x", status_code=403), 502),
        (AuthenticationError("x", status_code=401), 502),
        (BadRequestError("x", status_code=400), 422),
        (NotFoundError("x", status_code=404), 404),
        (RateLimitedError("x", status_code=429, retry_after=7.2), 503),
        (ServerError("x", status_code=503, retry_after=1, kind=FailureKind.REFUSED), 503),
        (ServerError("x", status_code=500), 502),
        (ConnectError("x"), 503),
        (PoolTimeoutError("x"), 503),
        (RateLimiterError("x"), 503),
        (DeadlineExceeded("x"), 503),
        (DeadlineExceeded("x", kind=FailureKind.AMBIGUOUS), 502),
        (RetryBudgetExhausted("x", kind=FailureKind.NOT_SENT), 503),
        (ReadError("x"), 504),
        (ResponseError("x"), 502),
        (SubmissionOutcomeUnknown("ref-1", "lost"), 502),
    ]
    for error, expected in cases:
        status, _detail, headers, level = example.describe_failure(error)
        assert status == expected, (error, status)
        assert level >= logging.INFO
        if status == 503:
            assert int(headers["Retry-After"]) >= 1
    assert example.describe_failure(cases[4][0])[2] == {"Retry-After": "7"}
    assert example.describe_failure(cases[-1][0])[1]["merchant_reference"] == "ref-1"
