"""The client behind a real nginx reverse proxy: nginx's own 429s, 504s and 502s (see ``tests/_nginx.py``).

What a proxy adds is answers the API never gives itself, with HTML bodies and no ``Retry-After``:

- 429 from ``limit_req``: the adaptive limiter (``rate_limit="adaptive"``) must settle below the proxy's rate;
- 504 when the upstream is slow: for a submission the upstream may well have created the scan, so it is an
  unknown outcome; a GET is retried;
- 502 when the upstream refuses connections: here nothing reached the API, so resending would be safe, but a
  502 looks the same when the upstream failed *after* reading the request, and the client cannot tell the two
  apart. It reports the submission as an unknown outcome (conservative: no duplicate is ever risked) and
  retries GETs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from _nginx import nginx_proxy
from _support import RequestFactory, SleepRecorder, client_at, free_port

from netverify_async import (
    AdaptiveLimiter,
    FailureKind,
    NetverifyClient,
    NetverifyError,
    RetryEvent,
    RetryPolicy,
    ScanReceipt,
    ServerError,
    SubmissionOutcomeUnknown,
)
from netverify_async._constants import PERFORM_NETVERIFY_PATH
from netverify_async.emulator import run_emulator

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

#: Seconds the emulator takes for a "slow" answer: past nginx's proxy_read_timeout (1 s), not much more.
SLOW = 1.3
#: nginx's limit_req rate for the adaptive test. 20/s rather than 10/s only halves the run time (about 8 s
#: instead of 15 s for 120 submissions); the limiter behaves the same way at both rates.
PROXY_RATE = "20r/s"


def port_of(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def client_for(base_url: str, sleeps: SleepRecorder | None, **kwargs: Any) -> NetverifyClient:
    params: dict[str, Any] = {
        "api_token": "emulator-api-token",
        "api_secret": "emulator-api-secret",
        "preflight": False,  # the images are valid; keep the CPU for the proxy and the emulator
        "sleep": sleeps,
        "retry": RetryPolicy(max_attempts=3, attempt_timeout=10, deadline=20),
    }
    params.update(kwargs)
    return client_at(base_url, **params)


async def test_504_on_a_submission_is_an_unknown_outcome_without_a_duplicate(
    tmp_path: Path, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    async with run_emulator(processing_delay=0.0) as emu:
        emu.set_faults(sequence=["slow"], slow_seconds=SLOW)
        with nginx_proxy(tmp_path, upstream_port=port_of(emu.base_url)) as proxy:
            async with client_for(proxy.base_url, sleeps) as client:
                with anyio.fail_after(10), pytest.raises(SubmissionOutcomeUnknown) as info:
                    await client.perform_netverify(make_request("via-nginx"))
            log = proxy.access_log(at_least=1)
        scans = emu.stats.scans_by_merchant_reference.get("via-nginx", ())
    cause = info.value.__cause__
    assert isinstance(cause, ServerError) and cause.status_code == 504 and cause.body is None
    assert [(e.status, e.uri) for e in log] == [(504, PERFORM_NETVERIFY_PATH)]  # sent once, never resent
    assert len(scans) == 1  # the scan exists: "unknown" was the right answer, and there is no duplicate
    assert sleeps.waits == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_504_on_a_get_is_retried(
    tmp_path: Path, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    events: list[RetryEvent] = []
    async with run_emulator(processing_delay=0.0) as emu:
        with nginx_proxy(tmp_path, upstream_port=port_of(emu.base_url)) as proxy:
            async with client_for(proxy.base_url, sleeps, on_retry=events.append) as client:
                with anyio.fail_after(10):
                    receipt = await client.perform_netverify(make_request("get-504"))
                    emu.set_faults(sequence=["slow"], slow_seconds=SLOW, apply_to={"retrieval"})
                    status = await client.scan_status(receipt.scan_reference)
            log = proxy.access_log(at_least=3)
    assert status.scan_reference == receipt.scan_reference
    assert [e.status for e in log] == [200, 504, 200]
    assert [(e.status_code, e.kind) for e in events] == [(504, FailureKind.AMBIGUOUS)]


async def test_502_with_the_upstream_down(
    tmp_path: Path, make_request: RequestFactory, sleeps: SleepRecorder
) -> None:
    with nginx_proxy(tmp_path, upstream_port=free_port()) as proxy:  # nobody listens upstream
        async with client_for(proxy.base_url, sleeps) as client:
            with anyio.fail_after(10):
                with pytest.raises(SubmissionOutcomeUnknown) as info:
                    await client.perform_netverify(make_request("upstream-down"))
                with pytest.raises(ServerError) as get_info:
                    await client.scan_status("scan-while-down")
        log = proxy.access_log(at_least=4)
    cause = info.value.__cause__
    assert isinstance(cause, ServerError) and cause.status_code == 502 and not cause.safe_to_retry
    assert get_info.value.status_code == 502 and get_info.value.attempts == 3
    assert [e.status for e in log] == [502] * 4  # the submission once, the GET three times
    assert log[0].uri == PERFORM_NETVERIFY_PATH and log[0].upstream_status == "502"  # nginx could not connect


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_adaptive_limiter_settles_under_the_proxy_rate(
    tmp_path: Path, make_request: RequestFactory
) -> None:
    total, concurrency = 120, 8
    outcomes: dict[str, object] = {}
    policy = RetryPolicy(max_attempts=30, backoff_base=0.05, backoff_max=0.2, budget_capacity=0, deadline=60)
    async with run_emulator(processing_delay=0.0) as emu:
        with nginx_proxy(tmp_path, upstream_port=port_of(emu.base_url), rate=PROXY_RATE) as proxy:
            # started twice as fast as the proxy allows (a configured guess that is too high), it must settle
            limiter = AdaptiveLimiter(initial_rate=40, max_concurrency=concurrency)
            client = client_for(
                proxy.base_url, None, rate_limit=limiter, max_concurrency=concurrency, retry=policy
            )
            assert client.submit_limiter is limiter
            async with client:
                gate = anyio.CapacityLimiter(concurrency)

                async def submit(index: int) -> None:
                    reference = f"adaptive-{index}"
                    async with gate:
                        try:
                            outcomes[reference] = await client.perform_netverify(make_request(reference))
                        except NetverifyError as exc:
                            outcomes[reference] = exc

                with anyio.fail_after(90):
                    async with anyio.create_task_group() as tg:
                        for index in range(total):
                            tg.start_soon(submit, index)
            log = [e for e in proxy.access_log(at_least=total) if e.uri == PERFORM_NETVERIFY_PATH]
        stats = emu.stats
    receipts = [o for o in outcomes.values() if isinstance(o, ScanReceipt)]
    assert len(receipts) == total, {k: repr(v) for k, v in outcomes.items() if not isinstance(v, ScanReceipt)}
    assert not stats.duplicates and stats.scans_created == total  # 429s are refusals: nothing created twice
    assert limiter.current_rate is not None and limiter.current_rate < 40  # the proxy's 429s lowered the rate
    # a refusal early in the first burst says nothing of a per-second rate: the limiter must not collapse to
    # a few requests per second (it did: 2.1/s against this 20r/s proxy, for a minute)
    assert limiter.known_good_rate is not None and limiter.known_good_rate >= 10, limiter.known_good_rate
    throttled = [e.status == 429 for e in log]
    assert sum(throttled) > 0, "the proxy never throttled: the test shows nothing"
    third = len(throttled) // 3
    first, last = throttled[:third], throttled[-third:]
    share_first, share_last = sum(first) / len(first), sum(last) / len(last)
    assert share_last < share_first, (share_first, share_last, len(log))


def test_a_missing_nginx_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    import _nginx

    monkeypatch.setattr(_nginx.shutil, "which", lambda name: None)
    monkeypatch.setattr(_nginx.os, "access", lambda path, mode: False)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        _nginx.find_nginx()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        _nginx.find_nginx()
