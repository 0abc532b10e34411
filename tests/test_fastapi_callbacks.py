"""callback_router: the callback endpoint of a real FastAPI app served by uvicorn on loopback.

Handlers run after the answer, so "the handler ran N times" is read after the server has shut down: uvicorn's
graceful shutdown waits for every request in progress, background tasks included.
"""

from __future__ import annotations

import functools
import logging
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import FORM, serve
from _support import SAMPLE_APPROVED, SAMPLE_FRAUD
from fastapi import FastAPI

from netverify_async import (
    CallbackReconciliation,
    ConfigurationError,
    JournalError,
    JournalState,
    SqliteJournal,
)
from netverify_async._constants import CALLBACK_MAX_BODY_BYTES
from netverify_async.callbacks import (
    CallbackOriginVerifier,
    NetverifyCallback,
    RejectReason,
    VerificationStatus,
)
from netverify_async.fastapi import callback_router

pytestmark = pytest.mark.anyio

PATH = "/netverify/callback"
LOOPBACK = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
JUMIO_US = "34.202.241.227"  # first address of the guide's US list


class Recorder:
    """A callback handler that keeps what it was given."""

    def __init__(self) -> None:
        self.calls: list[NetverifyCallback] = []

    async def __call__(self, callback: NetverifyCallback) -> None:
        self.calls.append(callback)


def app_with(handler: Any, **options: Any) -> FastAPI:
    options.setdefault("verifier", LOOPBACK)
    app = FastAPI()
    app.include_router(callback_router(handler, **options))
    return app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def post_all(url: str, *bodies: str | bytes, **kwargs: Any) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
        return [await http.post(PATH, content=body, headers=FORM, **kwargs) for body in bodies]


@pytest.mark.parametrize(
    ("sample", "status"),
    [
        (SAMPLE_APPROVED, VerificationStatus.APPROVED_VERIFIED),
        (SAMPLE_FRAUD, VerificationStatus.DENIED_FRAUD),
    ],
    ids=["approved", "fraud"],
)
async def test_guide_samples_are_answered_200_and_handed_over_typed(
    recorder: Recorder, sample: str, status: VerificationStatus
) -> None:
    async with serve(app_with(recorder)) as url:
        [response] = await post_all(url, sample)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}
    [callback] = recorder.calls
    assert isinstance(callback, NetverifyCallback)
    assert callback.jumio_id_scan_reference == "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
    assert callback.verification_status is status
    if status is VerificationStatus.DENIED_FRAUD:
        assert isinstance(callback.reject_reason, RejectReason)
        assert callback.reject_reason_codes == ("100", "1001", "1004")
    else:
        assert callback.is_approved


async def test_answer_is_sent_before_the_handler_runs() -> None:
    release = anyio.Event()
    finished: list[str] = []

    async def slow_handler(callback: NetverifyCallback) -> None:
        await release.wait()
        finished.append(callback.jumio_id_scan_reference)

    async with serve(app_with(slow_handler)) as url:
        with anyio.fail_after(20):  # would hang if the answer waited for the handler
            [response] = await post_all(url, SAMPLE_APPROVED)
        assert response.status_code == 200
        assert finished == []
        release.set()
    assert finished == ["xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"]


async def test_identical_redeliveries_run_the_handler_once(recorder: Recorder) -> None:
    async with serve(app_with(recorder)) as url:
        responses = await post_all(url, SAMPLE_APPROVED, SAMPLE_APPROVED, SAMPLE_APPROVED.encode())
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json()["status"] for r in responses] == ["accepted", "duplicate", "duplicate"]
    assert len(recorder.calls) == 1


async def test_a_redelivery_with_another_body_is_not_an_exact_duplicate(recorder: Recorder) -> None:
    later = SAMPLE_APPROVED + "&callbackDate=2024-05-01T10%3A00%3A00.000Z"
    async with serve(app_with(recorder)) as url:
        responses = await post_all(url, SAMPLE_APPROVED, later, later)
    assert [r.json()["status"] for r in responses] == ["accepted", "accepted", "duplicate"]
    assert [c.jumio_id_scan_reference for c in recorder.calls] == ["xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"] * 2


def numbered(n: int) -> str:
    return SAMPLE_FRAUD.replace("YOURSCANREFERENCE", f"order-{n}")


async def test_duplicate_memory_is_bounded_and_least_recently_seen_goes_first(recorder: Recorder) -> None:
    app = app_with(recorder, dedupe_size=2)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:

        async def send(n: int) -> str:
            response = await http.post(PATH, content=numbered(n), headers=FORM)
            assert response.status_code == 200
            return str(response.json()["status"])

        assert [await send(n) for n in (1, 2)] == ["accepted", "accepted"]
        assert await send(1) == "duplicate"  # 1 is now the most recently seen
        assert await send(3) == "accepted"  # forgets 2
        assert [await send(n) for n in (1, 3, 2)] == ["duplicate", "duplicate", "accepted"]
    assert [c.merchant_id_scan_reference for c in recorder.calls] == [
        "order-1",
        "order-2",
        "order-3",
        "order-2",
    ]


async def test_dedupe_size_zero_remembers_nothing(recorder: Recorder) -> None:
    async with serve(app_with(recorder, dedupe_size=0)) as url:
        responses = await post_all(url, SAMPLE_FRAUD, SAMPLE_FRAUD)
    assert [r.json()["status"] for r in responses] == ["accepted", "accepted"]
    assert len(recorder.calls) == 2


NOT_CALLBACKS = {
    "empty": b"",
    "json": b'{"jumioIdScanReference": "abc", "verificationStatus": "APPROVED_VERIFIED"}',
    "no-reference": b"verificationStatus=APPROVED_VERIFIED&idType=PASSPORT",
    "binary": b"\xff\xd8\xff\xe0 not text",
    "authentication-callback": (
        b"callBackType=NETVERIFY_AUTHENTICATION&transactionReference=abc&transactionResult=PASSED"
    ),
}


async def test_bodies_that_are_not_callbacks_get_a_400_with_a_reason(recorder: Recorder) -> None:
    async with serve(app_with(recorder)) as url:
        responses = dict(zip(NOT_CALLBACKS, await post_all(url, *NOT_CALLBACKS.values()), strict=True))
    for case, response in responses.items():
        assert response.status_code == 400, case
        assert response.headers["content-type"] == "application/json", case
        assert response.json()["detail"], case
    assert "JSON" in responses["json"].json()["detail"]
    assert "Authentication" in responses["authentication-callback"].json()["detail"]
    assert recorder.calls == []


async def test_a_400_body_is_not_remembered_as_a_duplicate(recorder: Recorder) -> None:
    async with serve(app_with(recorder)) as url:
        responses = await post_all(url, b"{}", b"{}")
    assert [r.status_code for r in responses] == [400, 400]


async def test_sender_not_on_the_allowlist_gets_403_and_the_handler_is_not_run(recorder: Recorder) -> None:
    app = app_with(recorder, verifier=CallbackOriginVerifier())  # Jumio's addresses, not loopback
    async with serve(app) as url:
        responses = await post_all(url, SAMPLE_APPROVED, SAMPLE_APPROVED)
    assert [r.status_code for r in responses] == [403, 403]
    assert "allowlist" in responses[0].json()["detail"]
    assert "127.0.0.1" not in responses[0].text
    assert recorder.calls == []


async def test_the_default_verifier_is_jumios_list(recorder: Recorder) -> None:
    app = FastAPI()
    app.include_router(callback_router(recorder))
    async with serve(app) as url:
        [response] = await post_all(url, SAMPLE_APPROVED)
    assert response.status_code == 403


async def test_verifier_none_accepts_any_sender(recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="netverify_async.fastapi"):
        app = app_with(recorder, verifier=None)
    assert "any address" in caplog.text
    async with serve(app) as url:
        [response] = await post_all(url, SAMPLE_APPROVED)
    assert response.status_code == 200
    assert len(recorder.calls) == 1


async def forwarded(app: FastAPI, *headers: str) -> int:
    """POST the approved sample from loopback with the given X-Forwarded-For headers (repeated, in order)."""
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        response = await http.post(
            PATH,
            content=SAMPLE_APPROVED,
            headers=[("content-type", FORM["Content-Type"]), *(("x-forwarded-for", h) for h in headers)],
        )
    return response.status_code


async def test_forwarded_for_counts_only_when_the_peer_is_a_trusted_proxy(recorder: Recorder) -> None:
    behind_proxy = CallbackOriginVerifier([JUMIO_US], trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    no_proxy = CallbackOriginVerifier([JUMIO_US])

    assert await forwarded(app_with(recorder, verifier=behind_proxy), JUMIO_US) == 200
    assert await forwarded(app_with(recorder, verifier=behind_proxy)) == 403  # the proxy itself is not Jumio
    assert await forwarded(app_with(recorder, verifier=behind_proxy), "203.0.113.9") == 403
    # Without trusted proxies the header is ignored: anybody could send it.
    assert await forwarded(app_with(recorder, verifier=no_proxy), JUMIO_US) == 403
    assert len(recorder.calls) == 1


async def test_repeated_forwarded_for_headers_are_read_as_one_list_in_order(recorder: Recorder) -> None:
    verifier = CallbackOriginVerifier([JUMIO_US], trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    # Jumio -> proxy 10.0.0.7 -> us: the right-most hop that is not ours is Jumio.
    assert (
        await forwarded(app_with(recorder, verifier=verifier), "203.0.113.9", f"{JUMIO_US}, 10.0.0.7") == 200
    )
    # A client that starts the header with Jumio's address: the right-most foreign hop is the client.
    assert await forwarded(app_with(recorder, verifier=verifier), JUMIO_US, "203.0.113.9") == 403
    assert len(recorder.calls) == 1


async def test_handler_exception_is_logged_without_its_message_and_the_answer_is_still_200(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing_handler(callback: NetverifyCallback) -> None:
        raise LookupError(f"no customer named {callback.id_first_name} {callback.id_last_name}")

    with caplog.at_level(logging.INFO, logger="netverify_async.fastapi"):
        async with serve(app_with(failing_handler)) as url:
            first = await post_all(url, SAMPLE_APPROVED)
    assert [r.status_code for r in first] == [200]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "LookupError" in message
    assert "failing_handler" in message
    assert "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" in message
    assert "LASTNAME" not in caplog.text
    assert "FIRSTNAME" not in caplog.text


async def test_failed_handler_runs_again_on_an_identical_redelivery() -> None:
    attempts: list[str] = []

    async def flaky_handler(callback: NetverifyCallback) -> None:
        attempts.append(callback.jumio_id_scan_reference)
        if len(attempts) == 1:
            raise RuntimeError("database unavailable")

    app = app_with(flaky_handler)
    async with serve(app) as url:
        [first] = await post_all(url, SAMPLE_FRAUD)
    # Same app (same duplicate memory), served again: the handler of the first delivery has finished.
    async with serve(app) as url:
        second, third = await post_all(url, SAMPLE_FRAUD, SAMPLE_FRAUD)
    assert [first.json(), second.json(), third.json()] == [
        {"status": "accepted"},
        {"status": "accepted"},
        {"status": "duplicate"},
    ]
    assert len(attempts) == 2


async def test_body_over_the_cap_gets_413(recorder: Recorder) -> None:
    oversized = SAMPLE_APPROVED + "&pad=" + "x" * CALLBACK_MAX_BODY_BYTES
    async with serve(app_with(recorder)) as url:
        too_big, fine = await post_all(url, oversized, SAMPLE_APPROVED)
    assert too_big.status_code == 413
    assert str(CALLBACK_MAX_BODY_BYTES) in too_big.json()["detail"]
    assert fine.status_code == 200  # the connection is still usable
    assert len(recorder.calls) == 1


async def test_streamed_body_without_length_is_cut_at_the_cap(recorder: Recorder) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield SAMPLE_APPROVED.encode()
        for _ in range(8):
            yield b"&pad=" + b"y" * 500

    async with serve(app_with(recorder, max_body_bytes=2048)) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            response = await http.post(PATH, content=chunks(), headers=FORM)
            assert "content-length" not in response.request.headers
            small = await http.post(PATH, content=SAMPLE_FRAUD, headers=FORM)
    assert response.status_code == 413
    assert small.status_code == 200
    assert [c.verification_status for c in recorder.calls] == [VerificationStatus.DENIED_FRAUD]


async def test_a_body_exactly_at_the_cap_is_read(recorder: Recorder) -> None:
    body = SAMPLE_FRAUD.encode()
    async with serve(app_with(recorder, max_body_bytes=len(body))) as url:
        [at_cap] = await post_all(url, body)
        [over] = await post_all(url, body + b"&")
    assert (at_cap.status_code, over.status_code) == (200, 413)


async def test_only_post_is_routed(recorder: Recorder) -> None:
    async with serve(app_with(recorder)) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        response = await http.get(PATH + "?" + urllib.parse.quote(SAMPLE_APPROVED))
    assert response.status_code == 405
    assert recorder.calls == []


async def test_custom_path_and_route_name(recorder: Recorder) -> None:
    app = app_with(recorder, path="/hooks/jumio", name="jumio_hook")
    assert app.url_path_for("jumio_hook") == "/hooks/jumio"
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post("/hooks/jumio", content=SAMPLE_APPROVED, headers=FORM)
    assert response.status_code == 200
    assert len(recorder.calls) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"path": "netverify/callback"}, "path"),
        ({"dedupe_size": -1}, "dedupe_size"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
        ({"max_body_bytes": CALLBACK_MAX_BODY_BYTES + 1}, "max_body_bytes"),
        ({"verifier": ["127.0.0.1"]}, "verifier"),
    ],
)
async def test_bad_settings_are_refused_naming_the_setting(
    recorder: Recorder, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field):
        callback_router(recorder, **options)


def sync_handler(callback: NetverifyCallback) -> None:
    pass


@pytest.mark.parametrize("handler", ["not a function", sync_handler], ids=["not-callable", "sync"])
async def test_handler_must_be_an_async_callable(handler: Any) -> None:
    with pytest.raises(ConfigurationError, match="handler: must be an async function"):
        callback_router(handler)


async def test_async_callable_objects_and_partials_are_handlers() -> None:
    async def handler_with_sink(sink: list[str], callback: NetverifyCallback) -> None:
        sink.append(callback.jumio_id_scan_reference)

    sink: list[str] = []
    app = app_with(functools.partial(handler_with_sink, sink))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.post(PATH, content=SAMPLE_FRAUD, headers=FORM)
    assert response.status_code == 200
    assert sink == ["xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"]
    callback_router(Recorder())  # an object with an async __call__


# ---------------------------------------------------------------------------------------------------------
# Feeding a journal

APPROVED_REF = "YOURIDSCANREFERENCE"  # the merchant reference of SAMPLE_APPROVED
SAMPLE_SCAN = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    async with SqliteJournal(tmp_path / "uploads.journal") as opened:
        await opened.mark_sent(APPROVED_REF)
        await opened.mark_unknown([APPROVED_REF], "RemoteProtocolError")
        yield opened


async def test_a_journal_alone_is_fed_and_the_answer_waits_for_it(journal: SqliteJournal) -> None:
    app = FastAPI()
    app.include_router(callback_router(journal=journal, verifier=LOOPBACK))
    async with serve(app) as url:
        [response] = await post_all(url, SAMPLE_APPROVED)
        entry = await journal.get(APPROVED_REF)  # stored before the 200, not in a background task
    assert response.status_code == 200 and response.json() == {"status": "accepted"}
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert entry.scan_reference == SAMPLE_SCAN and entry.reconciled_at is not None
    assert entry.result is not None and entry.result.approved


async def test_a_journal_and_a_handler_both_get_the_callback(
    journal: SqliteJournal, recorder: Recorder
) -> None:
    async with serve(app_with(recorder, journal=journal)) as url:
        responses = await post_all(url, SAMPLE_APPROVED, SAMPLE_APPROVED, SAMPLE_FRAUD)
    assert [r.json()["status"] for r in responses] == ["accepted", "duplicate", "accepted"]
    assert (
        len(recorder.calls) == 2
    )  # the fraud sample is for a reference not in the journal: still handed over
    entry = await journal.get(APPROVED_REF)
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert await journal.get("YOURSCANREFERENCE") is None


class FlakyJournal:
    """A journal whose first ``failures`` records fail (a locked or full disk), then work."""

    def __init__(self, inner: SqliteJournal, failures: int) -> None:
        self.inner = inner
        self.failures = failures

    async def record_callback(self, callback: NetverifyCallback) -> CallbackReconciliation:
        if self.failures:
            self.failures -= 1
            raise JournalError("database is locked")
        return await self.inner.record_callback(callback)


async def test_a_callback_the_journal_cannot_store_is_answered_503_and_the_redelivery_is_stored(
    journal: SqliteJournal, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyJournal(journal, failures=1)
    with caplog.at_level(logging.INFO, logger="netverify_async.fastapi"):
        async with serve(app_with(recorder, journal=flaky)) as url:
            failed, redelivered = await post_all(url, SAMPLE_APPROVED, SAMPLE_APPROVED)
    assert failed.status_code == 503 and "send it again" in failed.json()["detail"]
    assert redelivered.status_code == 200 and redelivered.json() == {"status": "accepted"}
    assert len(recorder.calls) == 1  # the handler runs only for the callback that was stored
    entry = await journal.get(APPROVED_REF)
    assert entry is not None and entry.state is JournalState.RECEIPT
    assert "JournalError" in caplog.text and "journal settled" in caplog.text
    assert APPROVED_REF not in caplog.text and "FIRSTNAME" not in caplog.text  # no merchant reference, no PII


async def test_a_second_scan_is_logged_as_a_warning(
    journal: SqliteJournal, caplog: pytest.LogCaptureFixture
) -> None:
    await journal.mark_reconciled(APPROVED_REF, "another-scan-of-the-same-reference")
    app = FastAPI()
    app.include_router(callback_router(journal=journal, verifier=LOOPBACK))
    with caplog.at_level(logging.INFO, logger="netverify_async.fastapi"):
        async with serve(app) as url:
            [response] = await post_all(url, SAMPLE_APPROVED)
    assert response.status_code == 200
    entry = await journal.get(APPROVED_REF)
    assert entry is not None and entry.duplicate_scan
    assert entry.scan_references == ("another-scan-of-the-same-reference", SAMPLE_SCAN)
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "duplicate_scan" in warning.getMessage()


class BatchOnlyJournal:
    """A custom journal with the batch's methods only (Journal), not record_callback."""

    async def start_run(self) -> None: ...


class SyncRecordJournal:
    def record_callback(self, callback: NetverifyCallback) -> None: ...


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give a handler, a journal"),
        ({"journal": BatchOnlyJournal()}, "BatchOnlyJournal cannot learn from callbacks"),
        ({"journal": SyncRecordJournal()}, "async record_callback"),
        ({"journal": "uploads.journal"}, "SqliteJournal"),
    ],
    ids=["neither", "no-record-callback", "sync-record-callback", "a-path"],
)
async def test_journal_settings_are_checked_when_the_router_is_built(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        callback_router(**options)
