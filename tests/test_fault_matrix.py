"""Every emulator fault x {default policy, ``retry_ambiguous=True``}, each over a small concurrent batch.

For every run the same invariants are checked against the emulator's own records:

1. each input ends in exactly one outcome: a receipt, a typed error (``NetverifyError``) or
   ``SubmissionOutcomeUnknown``; nothing else escapes and nothing hangs (each run is inside ``fail_after``);
2. a receipt names a scan the emulator really created for that reference;
3. an error that says ``safe_to_retry`` comes with no scan at all for that reference;
4. no reference has more scans than 1 + the ambiguous failures that were retried for it (seen through the
   ``on_retry`` hook): with the default policy that means no duplicate at all; with ``retry_ambiguous`` a
   duplicate only ever follows an ambiguous failure, the documented price of the opt-in.

Faults are seeded, rates about 30%; waits between retries are recorded, not slept.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter
from typing import Any

import anyio
import attrs
import pytest
from _support import RequestFactory, SleepRecorder, emulator_client

from netverify_async import (
    FailureKind,
    NetverifyClient,
    NetverifyError,
    OutcomeStatus,
    RequestError,
    RetryEvent,
    RetryPolicy,
    ScanReceipt,
    SubmissionOutcomeUnknown,
)
from netverify_async.emulator import run_emulator

pytestmark = pytest.mark.anyio

ITEMS = 12
RATE = 0.3


def _sequence(action: str, seed: int, length: int = 3 * ITEMS) -> list[str]:
    rng = random.Random(seed)
    return [action if rng.random() < RATE else "ok" for _ in range(length)]


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


#: fault name -> emulator Faults fields
FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"latency": (0.0, 0.05)},
    "429": {"sequence": _sequence("429", _seed("429"))},
    "429-retry-after": {"sequence": _sequence("429", _seed("429ra")), "retry_after": True},
    **{
        f"{status}-{phase}": {"errors": {status: RATE}, "error_phase": phase}
        for status in (500, 502, 504)
        for phase in ("before", "after")
    },
    "503": {"errors": {503: RATE}},
    "drop": {"drop_rate": RATE},
    "slow": {"slow_rate": RATE, "slow_seconds": 1.0},
    "slow-drip": {"slow_rate": RATE, "slow_seconds": 1.0, "slow_mode": "drip"},
    # ambiguous failures and refusals in one run: a refusal after an ambiguous attempt must stay "unknown"
    "mixed": {"errors": {503: 0.2, 502: 0.2}, "error_phase": "after", "drop_rate": 0.15},
}

#: Faults that strike after the scan was created: the client cannot know whether it exists.
AFTER_PROCESSING = {"500-after", "502-after", "504-after", "drop", "slow", "slow-drip"}

POLICIES = {
    "default": RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=10),
    "retry-ambiguous": RetryPolicy(max_attempts=3, attempt_timeout=5, deadline=10, retry_ambiguous=True),
}
#: The attempt timeout of the runs with slow answers: well under the emulator's slow_seconds.
SLOW_ATTEMPT_TIMEOUT = 0.6


class Run:
    """What one matrix run produced: outcome per reference, retry events, waits."""

    def __init__(self) -> None:
        self.outcomes: dict[str, list[object]] = {}
        self.events: list[RetryEvent] = []
        self.sleeps = SleepRecorder()

    def record(self, reference: str, outcome: object) -> None:
        self.outcomes.setdefault(reference, []).append(outcome)

    def retried_ambiguous(self) -> Counter[str]:
        return Counter(
            e.merchant_id_scan_reference or "" for e in self.events if e.kind is FailureKind.AMBIGUOUS
        )


def check_invariants(run: Run, references: list[str], stats: Any, policy: RetryPolicy) -> None:
    # 1. exactly one typed outcome per input
    assert sorted(run.outcomes) == sorted(references)
    for reference, outcomes in run.outcomes.items():
        assert len(outcomes) == 1, (reference, outcomes)
        assert isinstance(outcomes[0], ScanReceipt | NetverifyError), (reference, repr(outcomes[0]))
    scans = stats.scans_by_merchant_reference
    ambiguous = run.retried_ambiguous()
    for reference, (outcome,) in run.outcomes.items():
        created = scans.get(reference, ())
        # 2. a receipt is real
        if isinstance(outcome, ScanReceipt):
            assert outcome.scan_reference in created, (reference, created)
        # 3. "safe to retry" is true
        if isinstance(outcome, RequestError) and outcome.safe_to_retry:
            assert created == (), (reference, repr(outcome), created)
        # 4. duplicates only after a retried ambiguous failure
        assert len(created) <= 1 + ambiguous[reference], (reference, created, ambiguous[reference])
    if not policy.retry_ambiguous:
        assert not ambiguous
        assert not stats.duplicates, stats.duplicates


def client_for(emu: Any, run: Run, policy: RetryPolicy) -> NetverifyClient:
    return emulator_client(
        emu,
        run.sleeps,
        preflight=False,  # valid images; the matrix is about the wire
        retry=policy,
        on_retry=run.events.append,
    )


@pytest.mark.parametrize("policy_name", sorted(POLICIES))
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_matrix(fault: str, policy_name: str, make_request: RequestFactory) -> None:
    policy = POLICIES[policy_name]
    if fault.startswith("slow"):
        policy = attrs.evolve(policy, attempt_timeout=SLOW_ATTEMPT_TIMEOUT)
    references = [f"{fault}-{i}" for i in range(ITEMS)]
    run = Run()
    faults = {"seed": _seed(fault + policy_name), **FAULTS[fault]}
    async with run_emulator(processing_delay=0.0, **faults) as emu:
        async with client_for(emu, run, policy) as client:

            async def submit(reference: str) -> None:
                try:
                    run.record(reference, await client.perform_netverify(make_request(reference)))
                except NetverifyError as exc:
                    run.record(reference, exc)

            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    for reference in references:
                        tg.start_soon(submit, reference)
        stats = emu.stats
    check_invariants(run, references, stats, policy)
    if fault != "latency":
        assert sum(stats.faults_injected.values()) > 0, "the fault never happened: this run shows nothing"
    else:
        assert all(isinstance(o, ScanReceipt) for (o,) in run.outcomes.values())
    if fault == "429-retry-after":
        waits = [e.delay for e in run.events if e.status_code == 429]
        assert waits and all(w >= 1.0 for w in waits), waits  # Retry-After honoured
    if fault in AFTER_PROCESSING:
        unknown = [o for (o,) in run.outcomes.values() if isinstance(o, SubmissionOutcomeUnknown)]
        if policy.retry_ambiguous:
            assert run.retried_ambiguous(), "no ambiguous failure was retried"
        else:
            assert unknown, "an after-processing fault must surface as an unknown outcome"


@pytest.mark.parametrize("fault", ["drop", "502-after", "mixed", "429"])
async def test_fault_matrix_through_submit_many(fault: str, make_request: RequestFactory) -> None:
    """The same invariants through the batch API, plus its own: FAILED means no scan, UNKNOWN means unknown."""
    policy = POLICIES["default"]
    references = [f"batch-{fault}-{i}" for i in range(ITEMS)]
    run = Run()
    faults = {"seed": _seed("batch" + fault), **FAULTS[fault]}
    async with run_emulator(processing_delay=0.0, **faults) as emu:
        async with client_for(emu, run, policy) as client:
            with anyio.fail_after(20):
                async with client.submit_many(
                    [make_request(r) for r in references], concurrency=ITEMS
                ) as batch:
                    async for item in batch:
                        assert item.merchant_id_scan_reference is not None
                        if item.status is OutcomeStatus.RECEIPT:
                            run.record(item.merchant_id_scan_reference, item.receipt)
                        else:
                            assert item.status in (OutcomeStatus.FAILED, OutcomeStatus.UNKNOWN), item
                            assert item.error is not None
                            if item.status is OutcomeStatus.UNKNOWN:
                                assert isinstance(item.error, SubmissionOutcomeUnknown), repr(item.error)
                            run.record(item.merchant_id_scan_reference, item.error)
        stats = emu.stats
    check_invariants(run, references, stats, policy)
    for reference, (outcome,) in run.outcomes.items():
        if isinstance(outcome, NetverifyError) and not isinstance(outcome, SubmissionOutcomeUnknown):
            assert stats.scans_by_merchant_reference.get(reference, ()) == (), (reference, repr(outcome))


@pytest.mark.parametrize("sequence", [["drop", "503", "503"], ["502", "429", "429"], ["504", "503", "429"]])
async def test_refusal_after_an_ambiguous_attempt_is_still_unknown(
    sequence: list[str], make_request: RequestFactory
) -> None:
    # With retry_ambiguous the first attempt may have created the scan; the refusals that follow (429, 503)
    # prove nothing about it, so the final answer must not be a "safe to retry" RateLimitedError/ServerError.
    run = Run()
    policy = POLICIES["retry-ambiguous"]
    async with run_emulator(processing_delay=0.0, sequence=sequence, error_phase="after") as emu:
        async with client_for(emu, run, policy) as client:
            with anyio.fail_after(10), pytest.raises(SubmissionOutcomeUnknown) as info:
                await client.perform_netverify(make_request("amb-then-refused"))
        scans = emu.stats.scans_by_merchant_reference["amb-then-refused"]
    assert len(scans) == 1  # the scan the first attempt created
    assert isinstance(info.value.__cause__, RequestError) and info.value.__cause__.safe_to_retry
    assert info.value.attempts == 3
    assert [e.kind for e in run.events] == [FailureKind.AMBIGUOUS, FailureKind.REFUSED]
