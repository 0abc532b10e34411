"""The send path's central promise, held against raw-socket servers that misbehave (``tests/_misbehaving.py``).

- A submission reaches the server as a complete body at most once, unless the caller opted in with
  ``RetryPolicy(retry_ambiguous=True)`` (a refusal such as 429 may be followed by one more body).
- Every receipt, and every retrieval answer, is the one the server made for *that* request.
- Every failure after which the scan may exist ends in ``SubmissionOutcomeUnknown``.
- A journaled batch re-run never resends an item whose outcome may exist.

Each test counts the complete bodies the server received and compares scan references. The submission tests
run on (asyncio, httpx), (asyncio, aiohttp) and (trio, httpx); some also with a caller's ``httpx.AsyncClient``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from _misbehaving import (
    MisbehavingServer,
    Reply,
    answer,
    answer_by_reference,
    answer_with_stray,
    cut_off,
    keep_alive_receipts,
    scan_for,
    serve,
    stale_keep_alive,
    unbufferable_size,
)
from _support import (
    CALLER_MODES,
    TRANSPORT_MODES,
    RequestFactory,
    SleepRecorder,
    client_at,
    client_in_mode,
    in_modes,
    make_jpeg,
    outcome_of,
)

from netverify_async import (
    APIError,
    FailureKind,
    Image,
    NetverifyClient,
    OutcomeStatus,
    RateLimiterError,
    RequestError,
    RetryEvent,
    RetryPolicy,
    ScanReceipt,
    SubmissionOutcomeUnknown,
)

pytestmark = pytest.mark.anyio

T = TypeVar("T")

#: The library's own transports, plus a caller-supplied ``httpx.AsyncClient`` on each loop.
WITH_CALLER_CLIENT = in_modes(*TRANSPORT_MODES, *CALLER_MODES)

#: Answers after which the submission may have been processed: the outcome is unknown. Below 100, 1xx (sent
#: alone, then the connection closes), a 2xx without a receipt, redirects, 4xx that prove no refusal, 5xx
#: (503 has its own tests) and beyond 599.
AMBIGUOUS_STATUSES = [
    0, 99, 101, 102, 204, 301, 302, 303, 304, 307, 308, 408, 409, 418, 422, 500, 502, 504, 599, 600, 999,
]  # fmt: skip
#: Answers that refuse the request for good: a typed APIError, never retried.
PERMANENT_STATUSES = [400, 401, 403, 404, 405, 406, 410, 411, 413, 414, 415, 421, 431]


SETTINGS: dict[str, Any] = {"api_token": "token", "api_secret": "secret-sentinel"}


@asynccontextmanager
async def client_for(
    server: MisbehavingServer | str, mode: tuple[str, str], sleeps: Any, **options: Any
) -> AsyncIterator[NetverifyClient]:
    """A client for ``server`` in ``mode`` (event loop, transport); ``caller``: a caller-supplied httpx client."""
    params: dict[str, Any] = {
        **SETTINGS,
        "retrieval_rate_limit": None,
        "retry": RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=20),
        "sleep": sleeps,
    }
    params.update(options)
    base_url = server if isinstance(server, str) else server.base_url
    async with client_in_mode(base_url, mode[1], **params) as client:
        yield client


def assert_receipt_for(outcome: object, reference: str) -> None:
    assert isinstance(outcome, ScanReceipt), repr(outcome)
    assert outcome.scan_reference == scan_for(reference), "the receipt names another request's scan"


def assert_unknown(outcome: object, reference: str) -> SubmissionOutcomeUnknown:
    assert isinstance(outcome, SubmissionOutcomeUnknown), repr(outcome)
    assert outcome.merchant_id_scan_reference == reference
    return outcome


def assert_kind(error: object, kind: FailureKind) -> None:
    assert isinstance(error, RequestError), repr(error)
    assert error.kind is kind, (error, error.kind)
    assert error.safe_to_retry is (kind is not FailureKind.AMBIGUOUS)


def retry_after(seconds: str) -> tuple[tuple[str, str], ...]:
    return (("Retry-After", seconds),)


# -- every answer belongs to its own request ------------------------------------------------------------------


@pytest.mark.parametrize("delay", [None, 0.05], ids=["stray-in-same-write", "stray-50ms-later"])
@pytest.mark.parametrize("concurrent", [False, True], ids=["sequential", "concurrent"])
async def test_every_receipt_names_the_scan_made_for_its_own_request_despite_stray_answers(
    mode: tuple[str, str],
    sleeps: SleepRecorder,
    make_request: RequestFactory,
    delay: float | None,
    concurrent: bool,
) -> None:
    refs = [f"stray-{i}" for i in range(6)]
    outcomes: dict[str, object] = {}
    async with serve(answer_with_stray(delay=delay, latency=0.03 if delay else 0.0)) as server:
        async with client_for(server, mode, sleeps, max_concurrency=3) as client:

            async def submit(ref: str) -> None:
                outcomes[ref] = await outcome_of(client.perform_netverify(make_request(ref)))

            if concurrent:
                async with anyio.create_task_group() as tg:
                    for ref in refs:
                        tg.start_soon(submit, ref)
            else:
                for ref in refs:
                    await submit(ref)
    for ref in refs:
        assert_receipt_for(outcomes[ref], ref)
    assert server.bodies_by_reference() == dict.fromkeys(refs, 1)


@pytest.mark.parametrize("delay", [None, 0.05], ids=["stray-in-same-write", "stray-50ms-later"])
async def test_every_scan_status_is_for_the_scan_asked_about_despite_stray_answers(
    mode: tuple[str, str], sleeps: SleepRecorder, delay: float | None
) -> None:
    scans = [scan_for(f"retrieval-{i}") for i in range(6)]
    async with serve(answer_with_stray(delay=delay, latency=0.03 if delay else 0.0)) as server:
        async with client_for(server, mode, sleeps) as client:
            answers = [await outcome_of(client.scan_status(scan)) for scan in scans]
    for scan, status in zip(scans, answers, strict=True):
        assert getattr(status, "scan_reference", status) == scan
    assert len(server.requests) == len(scans)


async def test_every_request_goes_out_on_a_fresh_connection_with_connection_close(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve(keep_alive_receipts()) as server:  # a server that would happily keep connections open
        async with client_for(server, mode, sleeps) as client:
            for ref in ("fresh-1", "fresh-2", "fresh-3"):
                assert_receipt_for(await outcome_of(client.perform_netverify(make_request(ref))), ref)
            await client.scan_status(scan_for("fresh-1"))
    assert len(server.requests) == 4
    assert server.connections == 4, "a connection was reused"
    assert [r.connection for r in server.requests] == [1, 2, 3, 4]
    assert all(r.headers.get("connection", "").lower() == "close" for r in server.requests)


async def test_a_server_closing_a_kept_alive_connection_does_not_make_the_next_submission_unknown(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve(stale_keep_alive(idle=0.2)) as server:
        async with client_for(server, mode, sleeps) as client:
            first = await outcome_of(client.perform_netverify(make_request("stale-1")))
            await anyio.sleep(0.02)
            second = await outcome_of(client.perform_netverify(make_request("stale-2")))
    assert_receipt_for(first, "stale-1")
    assert_receipt_for(second, "stale-2")
    assert server.bodies_by_reference() == {"stale-1": 1, "stale-2": 1}


# -- how each answer is classified ------------------------------------------------------------------------------


@WITH_CALLER_CLIENT
@pytest.mark.parametrize("status", AMBIGUOUS_STATUSES)
async def test_an_ambiguous_answer_ends_in_an_unknown_outcome_after_exactly_one_body(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, status: int
) -> None:
    async with serve(answer(Reply(status), 200)) as server:
        async with client_for(server, mode, sleeps) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("amb")))
    unknown = assert_unknown(outcome, "amb")
    if isinstance(unknown.__cause__, RequestError):
        assert_kind(unknown.__cause__, FailureKind.AMBIGUOUS)
    assert server.bodies("amb") == 1
    assert server.connections == 1


@WITH_CALLER_CLIENT
@pytest.mark.parametrize("status", PERMANENT_STATUSES)
async def test_a_refusal_is_a_permanent_api_error_after_exactly_one_body(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, status: int
) -> None:
    async with serve(answer(Reply(status), 200)) as server:
        async with client_for(server, mode, sleeps) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("perm")))
    assert isinstance(outcome, APIError), repr(outcome)
    assert outcome.status_code == status
    assert_kind(outcome, FailureKind.PERMANENT)
    assert server.bodies("perm") == 1
    assert sleeps.waits == []


@WITH_CALLER_CLIENT
async def test_a_429_then_an_answer_gives_the_receipt_after_two_bodies_and_honours_retry_after(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve(answer(Reply(429, retry_after("2")), 200)) as server:
        async with client_for(server, mode, sleeps) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("r429")))
    assert_receipt_for(outcome, "r429")
    assert server.bodies("r429") == 2  # allowed: the first was refused, so no scan came of it
    assert sleeps.waits and max(sleeps.waits) >= 2


@pytest.mark.parametrize("header", [(), retry_after("soon"), retry_after("")], ids=["none", "soon", "empty"])
async def test_a_503_without_a_valid_retry_after_is_an_unknown_outcome_after_one_body(
    mode: tuple[str, str],
    sleeps: SleepRecorder,
    make_request: RequestFactory,
    header: tuple[tuple[str, str], ...],
) -> None:
    # what a gateway answers after its upstream reset the connection: the upstream may have processed it
    async with serve(answer(Reply(503, header), 200)) as server:
        async with client_for(server, mode, sleeps) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("gw503")))
    assert_unknown(outcome, "gw503")
    assert server.bodies("gw503") == 1


async def test_a_503_with_retry_after_is_a_refusal_that_is_retried_after_the_wait(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    events: list[RetryEvent] = []
    async with serve(answer(Reply(503, retry_after("3")), 200)) as server:
        async with client_for(server, mode, sleeps, on_retry=events.append) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("busy")))
    assert_receipt_for(outcome, "busy")
    assert server.bodies("busy") == 2
    assert [e.kind for e in events] == [FailureKind.REFUSED]
    assert max(sleeps.waits) >= 3


@pytest.mark.parametrize(
    ("status", "kind"),
    [(502, FailureKind.AMBIGUOUS), (404, FailureKind.PERMANENT), (429, FailureKind.REFUSED)],
)
async def test_a_failed_retrieval_carries_its_failure_kind(
    mode: tuple[str, str], sleeps: SleepRecorder, status: int, kind: FailureKind
) -> None:
    async with serve(answer(Reply(status, retry_after("0") if status == 429 else ()))) as server:
        async with client_for(server, mode, sleeps) as client:
            outcome = await outcome_of(client.scan_status(scan_for("gone")))
    assert_kind(outcome, kind)
    assert len(server.requests) == (1 if kind is FailureKind.PERMANENT else 3)


# -- opting in to resending ambiguous failures --------------------------------------------------------------------

RESEND = RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=20, retry_ambiguous=True)


@pytest.mark.parametrize("status", [502, 408, 302])
async def test_with_retry_ambiguous_an_ambiguous_failure_is_resent_and_reported_as_ambiguous(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, status: int
) -> None:
    events: list[RetryEvent] = []
    async with serve(answer(status, 200)) as server:
        async with client_for(server, mode, sleeps, retry=RESEND, on_retry=events.append) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("opt-in")))
    assert_receipt_for(outcome, "opt-in")
    assert server.bodies("opt-in") == 2  # the duplicate the caller accepted
    assert [e.kind for e in events] == [FailureKind.AMBIGUOUS]


class _NullSlot:
    def record(self, status_code: int | None, retry_after: float | None = None) -> None:
        pass


class SecondSlotFails:
    """A rate limiter (the ``RateLimiter`` protocol) whose second ``slot()`` fails, as a shared limiter
    whose backend went away would."""

    def __init__(self) -> None:
        self.slots = 0

    def slot(self) -> Any:
        self.slots += 1
        return self._slot(self.slots)

    @asynccontextmanager
    async def _slot(self, number: int) -> AsyncIterator[_NullSlot]:
        if number == 2:
            raise RateLimiterError("rate limiter 'test': backend unavailable")
        yield _NullSlot()


async def test_after_an_ambiguous_attempt_a_rate_limiter_failure_still_ends_unknown(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    limiter = SecondSlotFails()
    async with serve(answer(502, 200)) as server:
        async with client_for(server, mode, sleeps, retry=RESEND, rate_limit=limiter) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("limiter")))
    assert_unknown(outcome, "limiter")
    assert limiter.slots == 2
    assert server.bodies("limiter") == 1


async def test_after_an_ambiguous_attempt_closing_the_client_during_backoff_still_ends_unknown(
    mode: tuple[str, str], make_request: RequestFactory
) -> None:
    holder: list[NetverifyClient] = []

    async def close_the_client(seconds: float) -> None:
        await holder[0].aclose()

    async with serve(answer(502, 200)) as server:
        async with client_for(server, mode, close_the_client, retry=RESEND) as client:
            holder.append(client)
            outcome = await outcome_of(client.perform_netverify(make_request("closing")))
    assert_unknown(outcome, "closing")
    assert server.bodies("closing") == 1


@pytest.mark.parametrize(
    "refusal", [Reply(429, retry_after("0")), Reply(503, retry_after("0"))], ids=["429", "503"]
)
async def test_after_an_ambiguous_attempt_refusals_until_attempts_run_out_still_end_unknown(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, refusal: Reply
) -> None:
    async with serve(answer(502, refusal)) as server:
        async with client_for(server, mode, sleeps, retry=RESEND) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("refused-late")))
    assert_unknown(outcome, "refused-late")  # not the RateLimitedError of the last attempt
    assert server.bodies("refused-late") == 3


# -- failures before the body was complete --------------------------------------------------------------------------

#: An image (with trailing padding) whose body is larger than what the kernels on both ends can buffer, so the
#: client cannot have finished writing it when the server cuts the connection.
BIG_IMAGE = make_jpeg() + bytes(unbufferable_size())


@pytest.mark.parametrize("after_body_bytes", [0, 256 * 1024], ids=["after-the-head", "mid-body"])
async def test_a_connection_cut_before_the_body_was_complete_is_retried_not_unknown(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, after_body_bytes: int
) -> None:
    if len(BIG_IMAGE) > 15_000_000:
        pytest.skip("this kernel buffers more than the largest image Jumio accepts")
    request = make_request("cut", frontside_image=Image.from_bytes(BIG_IMAGE))
    events: list[RetryEvent] = []
    behaviour = cut_off(after_body_bytes=after_body_bytes)
    async with serve(behaviour, receive_buffer=4096) as server:
        async with client_for(server, mode, sleeps, preflight=False, on_retry=events.append) as client:
            outcome = await outcome_of(client.perform_netverify(request), within=20)
    assert_receipt_for(outcome, "cut")
    assert server.incomplete == 1 and server.bodies("cut") == 1
    assert [e.kind for e in events] == [FailureKind.NOT_SENT]


async def test_a_refused_connection_is_a_not_sent_error_and_never_an_unknown_outcome(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve(answer(200)) as server:
        url = server.base_url
    async with client_for(url, mode, sleeps) as client:  # the port is closed now
        outcome = await outcome_of(client.perform_netverify(make_request("nobody")))
    assert_kind(outcome, FailureKind.NOT_SENT)
    assert len(sleeps.waits) == 2  # retried until the attempts ran out


# -- a caller's httpx client ------------------------------------------------------------------------------------------


@pytest.mark.both_loops
async def test_a_caller_client_on_httpx_mock_transport_gets_its_receipt(
    sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reference = json.loads(request.content)["merchantIdScanReference"]
        seen.append(reference)
        receipt = {"timestamp": "2024-05-01T09:30:00.000Z", "jumioIdScanReference": scan_for(reference)}
        return httpx.Response(200, json=receipt)  # built from content: its body has been read already

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with client_at("http://127.0.0.1:9", **SETTINGS, sleep=sleeps, http_client=http) as client:
            outcome = await outcome_of(client.perform_netverify(make_request("mocked")))
    assert_receipt_for(outcome, "mocked")
    assert seen == ["mocked"]


@pytest.mark.both_loops
async def test_a_caller_client_whose_response_hook_reads_the_body_gets_its_receipt(
    sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async def read_it(response: httpx.Response) -> None:
        await response.aread()

    async with serve(answer(200)) as server:
        async with httpx.AsyncClient(event_hooks={"response": [read_it]}) as http:
            async with client_at(server.base_url, **SETTINGS, sleep=sleeps, http_client=http) as client:
                outcome = await outcome_of(client.perform_netverify(make_request("hooked")))
    assert_receipt_for(outcome, "hooked")
    assert server.bodies("hooked") == 1


# -- batches with a journal ---------------------------------------------------------------------------------------------


async def test_a_journaled_batch_never_resends_an_item_whose_outcome_may_exist(
    mode: tuple[str, str], sleeps: SleepRecorder, make_request: RequestFactory, tmp_path: Path
) -> None:
    maybe_processed: dict[str, Reply | int] = {"batch-302": 302, "batch-408": 408, "batch-503": 503}
    refs = [*maybe_processed, "batch-ok"]
    journal = tmp_path / "batch.journal"

    async def run(client: NetverifyClient) -> dict[str | None, Any]:
        async with client.submit_many(
            [make_request(r) for r in refs], concurrency=2, journal=journal
        ) as batch:
            return {o.merchant_id_scan_reference: o async for o in batch}

    async with serve(answer_by_reference(maybe_processed)) as server:
        async with client_for(server, mode, sleeps) as client:
            with anyio.fail_after(20):
                first = await run(client)
                second = await run(client)
    for ref in maybe_processed:
        assert first[ref].status is OutcomeStatus.UNKNOWN, (ref, first[ref].status, first[ref].error)
        assert isinstance(first[ref].error, SubmissionOutcomeUnknown)
        assert second[ref].status is OutcomeStatus.SKIPPED_UNKNOWN, (ref, second[ref].status)
    assert first["batch-ok"].status is OutcomeStatus.RECEIPT
    assert_receipt_for(first["batch-ok"].receipt, "batch-ok")
    assert second["batch-ok"].status is OutcomeStatus.SKIPPED_ALREADY_DONE
    assert server.bodies_by_reference() == dict.fromkeys(refs, 1)
