"""The client against a hostile server: oversized, endless, dripping, malformed and redirecting answers.

Every case must end within its deadline (each call runs inside ``anyio.fail_after``) and raise only the
library's typed errors; anything else (a ``ValueError``, a hang, unbounded memory) fails the test. Runs on
asyncio with both transports and on trio, against a raw loopback server (``tests/_hostile.py``).
"""

from __future__ import annotations

import functools
import gc
import tracemalloc
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from _hostile import (
    RECEIPT_BODY,
    HostileServer,
    drip,
    endless_headers,
    gzip_bomb,
    huge_body,
    respond,
    serve_hostile,
    truncated,
)
from _support import ONE_MODE_PER_LOOP, RequestFactory, SleepRecorder, client_at, in_modes, outcome_of

from netverify_async import (
    DeadlineExceeded,
    FailureKind,
    NetverifyClient,
    RateLimitedError,
    ReadError,
    ResponseError,
    RetryPolicy,
    ScanReceipt,
    ServerError,
    SubmissionOutcomeUnknown,
)
from netverify_async._client import DEFAULT_MAX_RESPONSE_BYTES
from netverify_async._constants import PERFORM_NETVERIFY_PATH

pytestmark = pytest.mark.anyio

T = TypeVar("T")

#: Enough for cases where the transport plays no part beyond delivering bytes: one run per event loop.
ONE_PER_LOOP = in_modes(*ONE_MODE_PER_LOOP)


#: The call's result or the library error it raised, within 8 s (well inside the policy's 10 s deadline).
typed_outcome = functools.partial(outcome_of, within=8.0)


def client_for(
    server: HostileServer, transport: str, sleeps: SleepRecorder, **kwargs: Any
) -> NetverifyClient:
    params: dict[str, Any] = {
        "retrieval_rate_limit": None,
        "preflight": False,  # the image is valid; these tests are about answers
        "transport": transport,
        "sleep": sleeps,
        "retry": RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=10),
    }
    params.update(kwargs)
    return client_at(server.base_url, **params)


def assert_unknown(outcome: object, reference: str) -> SubmissionOutcomeUnknown:
    assert isinstance(outcome, SubmissionOutcomeUnknown), repr(outcome)
    assert outcome.merchant_id_scan_reference == reference
    return outcome


# -- control: the harness itself works --------------------------------------------------------------------------


async def test_control_a_well_formed_answer_gives_a_receipt(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve_hostile(respond(200, RECEIPT_BODY)) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("control")))
    assert isinstance(outcome, ScanReceipt)
    assert server.requests[0].headers["authorization"].startswith("Basic ")


# -- sizes: oversized and endless answers ------------------------------------------------------------------------


@pytest.mark.parametrize("total", [50 * 1024 * 1024, None], ids=["50MB-content-length", "endless-chunked"])
async def test_oversized_answer_is_cut_at_max_response_bytes(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory, total: int | None
) -> None:
    request = make_request("huge")
    async with serve_hostile(huge_body(total)) as server:
        async with client_for(server, transport, sleeps) as client:
            gc.collect()
            tracemalloc.start()
            try:
                outcome = await typed_outcome(client.perform_netverify(request))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    unknown = assert_unknown(outcome, "huge")  # a 200 came back: the scan may exist
    assert isinstance(unknown.__cause__, ResponseError)
    assert unknown.__cause__.status_code == 200
    assert "max_response_bytes" in str(unknown.__cause__)
    assert server.connections == 1  # not resent
    assert peak < 8 * DEFAULT_MAX_RESPONSE_BYTES, f"peak traced memory {peak} bytes"
    assert server.bytes_sent < 40 * 1024 * 1024  # the client hung up long before the end


async def test_oversized_answer_to_a_get_is_not_retried(transport: str, sleeps: SleepRecorder) -> None:
    async with serve_hostile(huge_body(None)) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.scan_status("scan-1"))
    assert type(outcome) is ResponseError and outcome.status_code == 200
    assert server.connections == 1  # a bad answer is permanent: retrying would read another flood
    assert sleeps.waits == []


async def test_oversized_refusal_is_a_response_error_not_an_unknown_outcome(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve_hostile(huge_body(None, status=400)) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("refused-huge")))
    assert type(outcome) is ResponseError and outcome.status_code == 400
    assert server.connections == 1


async def test_endless_headers_end_in_a_typed_error(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve_hostile(endless_headers()) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("headers")))
    assert_unknown(outcome, "headers")
    assert server.connections == 1
    assert server.bytes_sent < 10 * 1024 * 1024


async def test_gzip_bomb_is_never_decompressed(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve_hostile(gzip_bomb()) as server:
        async with client_for(server, transport, sleeps) as client:
            gc.collect()
            tracemalloc.start()
            try:
                outcome = await typed_outcome(client.perform_netverify(make_request("bomb")))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    assert_unknown(outcome, "bomb")
    assert peak < 8 * DEFAULT_MAX_RESPONSE_BYTES, f"peak traced memory {peak} bytes"


async def test_client_asks_for_uncompressed_answers(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    # A compressing proxy honours Accept-Encoding. The client reads raw bytes (never inflating what a server
    # sends, see the bomb above), so it must not advertise gzip, or every success would be unreadable.
    async with serve_hostile(gzip_bomb(honour_accept_encoding=True)) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("gz")))
    assert isinstance(outcome, ScanReceipt), repr(outcome)
    assert "gzip" not in server.requests[0].headers.get("accept-encoding", "")


# -- unreadable success answers -----------------------------------------------------------------------------------

UNREADABLE_200 = {
    "plain-text": (b"OK", "text/plain"),
    "html-page": (b"<html><body>Thanks!</body></html>", "text/html"),
    "json-body-declared-html": (RECEIPT_BODY, "text/html"),
    "no-content-type": (RECEIPT_BODY, None),
    "truncated-json": (RECEIPT_BODY[: len(RECEIPT_BODY) // 2], "application/json"),
    "json-array": (b'["jumioIdScanReference"]', "application/json"),
    "wrong-types": (b'{"timestamp": 17, "jumioIdScanReference": ["a"]}', "application/json"),
    "empty": (b"", "application/json"),
    "not-utf8": (b'{"timestamp": "\xff\xfe"}', "application/json"),
    "deep-nesting": (b"[" * 200_000, "application/json"),
    "giant-integer": (b'{"jumioIdScanReference": ' + b"7" * 6000 + b"}", "application/json"),
}


@ONE_PER_LOOP
@pytest.mark.parametrize("case", sorted(UNREADABLE_200))
async def test_unreadable_success_answer_is_an_unknown_outcome(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory, case: str
) -> None:
    body, content_type = UNREADABLE_200[case]
    async with serve_hostile(respond(200, body, content_type=content_type)) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("unreadable")))
            assert client.stats.outcome_unknown == 1
    assert_unknown(outcome, "unreadable")  # the server said yes; which scan it made is unknown
    assert server.connections == 1


async def test_connection_closed_mid_body_is_an_unknown_outcome(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async with serve_hostile(truncated(RECEIPT_BODY[:20], declared=len(RECEIPT_BODY))) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("cut")))
    unknown = assert_unknown(outcome, "cut")
    assert isinstance(unknown.__cause__, ReadError)
    assert server.connections == 1


async def test_garbage_status_line_is_a_typed_error(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory
) -> None:
    async def garbage(server: HostileServer, request: Any, stream: Any) -> None:
        await stream.send(b"HELLO THERE\r\n\r\n")

    async with serve_hostile(garbage) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("garbage")))
    assert_unknown(outcome, "garbage")
    assert server.connections == 1


# -- slow answers ---------------------------------------------------------------------------------------------------

DRIP_POLICY = RetryPolicy(attempt_timeout=1, deadline=3)


@pytest.mark.virtual_time  # the drip and the timeouts on the same virtual clock: exact times
@pytest.mark.parametrize("phase", ["head", "body"])
async def test_dripping_answer_to_a_submission_ends_at_the_attempt_timeout(
    mode: tuple[str, str], transport: str, sleeps: SleepRecorder, make_request: RequestFactory, phase: str
) -> None:
    async with serve_hostile(drip(phase=phase)) as server:
        async with client_for(server, transport, sleeps, retry=DRIP_POLICY) as client:
            started = anyio.current_time()
            outcome = await typed_outcome(client.perform_netverify(make_request("drip")))
            took = anyio.current_time() - started
    unknown = assert_unknown(outcome, "drip")
    assert isinstance(unknown.__cause__, ReadError)
    assert took == pytest.approx(DRIP_POLICY.attempt_timeout)  # not a moment longer, although bytes kept coming
    assert server.connections == 1
    assert server.bytes_sent >= 9  # it really was dripping (one byte every 0.1 s) while the client waited


@pytest.mark.virtual_time
@in_modes(("asyncio", "aiohttp"))
async def test_dripping_answer_to_a_get_is_retried_until_the_deadline(
    transport: str, sleeps: SleepRecorder
) -> None:
    # each attempt ends at its 1 s timeout; after the first, 2 s of the 3 s deadline leave room for one more
    # attempt (1 s), after the second only 1 s is left: no room for a third
    async with serve_hostile(drip(phase="body")) as server:
        async with client_for(server, transport, sleeps, retry=DRIP_POLICY) as client:
            started = anyio.current_time()
            outcome = await typed_outcome(client.scan_status("scan-2"))
            took = anyio.current_time() - started
    assert isinstance(outcome, DeadlineExceeded), repr(outcome)
    assert server.connections == 2
    assert took == pytest.approx(2 * DRIP_POLICY.attempt_timeout)  # the recorder skipped the wait in between


# -- redirects are never followed -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize(
    ("mode", "own_http_client"),
    [(("asyncio", "aiohttp"), False), (("trio", "httpx"), False), (("asyncio", "httpx"), True)],
    ids=["asyncio-aiohttp", "trio-httpx", "asyncio-caller-client-that-follows"],
)
async def test_redirect_is_refused_and_the_target_receives_nothing(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory, status: int, own_http_client: bool
) -> None:
    async with serve_hostile(respond(200, RECEIPT_BODY)) as target:
        location = f"{target.base_url}{PERFORM_NETVERIFY_PATH}"
        behaviour = respond(status, b"", content_type=None, headers=[("Location", location)])
        async with serve_hostile(behaviour) as origin:
            extra: dict[str, Any] = {}
            if own_http_client:
                # a caller's client configured to follow redirects must not change that
                extra["http_client"] = httpx.AsyncClient(follow_redirects=True)
            try:
                async with client_for(origin, transport, sleeps, **extra) as client:
                    submitted = await typed_outcome(client.perform_netverify(make_request("redir")))
                    fetched = await typed_outcome(client.scan_status("scan-3"))
            finally:
                if own_http_client:
                    await extra["http_client"].aclose()
    # a redirect after a complete body is no certain refusal: the submission may exist, the GET simply failed
    unknown = assert_unknown(submitted, "redir")
    assert isinstance(unknown.__cause__, ResponseError) and "redirect" in str(unknown.__cause__)
    assert type(fetched) is ResponseError, repr(fetched)
    assert fetched.status_code == status and "redirect" in str(fetched)
    assert fetched.kind is FailureKind.PERMANENT
    assert target.connections == 0 and target.requests == []  # no request, so no Authorization header either
    assert origin.connections == 2 and sleeps.waits == []  # one each, never retried


# -- error statuses with bodies that are not Jumio's --------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_500_with_an_html_body(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory, content_type: str
) -> None:
    page = b"<html><head><title>500 Internal Server Error</title></head><body>oops</body></html>"
    async with serve_hostile(respond(500, page, content_type=content_type)) as server:
        async with client_for(server, transport, sleeps) as client:
            submitted = await typed_outcome(client.perform_netverify(make_request("html500")))
            assert server.connections == 1  # ambiguous on a submission: not resent
            fetched = await typed_outcome(client.scan_status("scan-4"))
    unknown = assert_unknown(submitted, "html500")
    for error in (unknown.__cause__, fetched):
        assert isinstance(error, ServerError), repr(error)
        assert error.status_code == 500 and error.body is None
    assert server.connections == 1 + 3  # the GET was retried up to max_attempts


GARBAGE_RETRY_AFTER = [
    "soon",
    "-5",
    "nan",
    "inf",
    "1e400",
    "9" * 400,
    "\xb2",  # latin-1 superscript two: str.isdigit() says yes, float() says no
    "Wed, 32 Foo 2024 99:99:99 GMT",
    "",
]


@ONE_PER_LOOP
@pytest.mark.parametrize("value", GARBAGE_RETRY_AFTER, ids=lambda v: repr(v[:12]))
async def test_429_with_a_garbage_retry_after(
    transport: str, sleeps: SleepRecorder, make_request: RequestFactory, value: str
) -> None:
    body = b'{"title":"Too Many Requests"}'
    async with serve_hostile(respond(429, body, headers=[("Retry-After", value)])) as server:
        async with client_for(server, transport, sleeps) as client:
            outcome = await typed_outcome(client.perform_netverify(make_request("r429")))
    assert isinstance(outcome, RateLimitedError), repr(outcome)
    assert outcome.safe_to_retry and outcome.status_code == 429
    assert 1 <= server.connections <= 3
    policy = RetryPolicy()
    assert all(0 <= wait <= policy.max_retry_after for wait in sleeps.waits), sleeps.waits
