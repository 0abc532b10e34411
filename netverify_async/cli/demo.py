"""``netverify-async demo``: the whole pipeline against a local emulator, with synthetic documents.

1. The emulator starts in this process on a free loopback port, with a server-side rate limit equal to the
   client's, a short processing delay and a few injected faults (429 with ``Retry-After`` and 503), so retries
   show. A journal (:class:`~netverify_async.SqliteJournal`, in a temporary folder) records the batch, and a
   callback receiver on another loopback port records every callback the emulator sends in that journal.
2. Synthetic ID documents (fake data marked SPECIMEN, some deliberately defective) are drawn in worker threads.
3. ``client.submit_many`` preflights them (the defective ones are refused, with reasons, and never sent) and
   sends the rest under the rate limit, each asking the emulator for a verification outcome (a mix of approved,
   fraud, unreadable, unsupported...). A live progress bar shows counts, rate and ETA.
4. One good document (chosen by the seed) meets an *ambiguous* fault: the emulator creates its scan, then
   closes the connection without an answer. The client does not resend it (that could create a second, billed
   scan), so the batch reports its outcome as unknown; its callback then arrives, and the journal settles it
   (``unknown`` -> ``receipt``, with the scan reference the callback names). The demo says so.
5. The demo waits for the verification result of every scan: from the callbacks first, then, after a short
   wait, by polling the retrieval API for any still missing (:func:`~netverify_async.wait_for_results`, which
   reads the journal first), with a progress line; the wait is bounded by ``--callback-timeout``.
6. A per-document table shows each reference with its scan reference, verification status and reject reason
   (or the preflight refusal), followed by the outcomes by verification status, the preflight rejections,
   retries, 429s, unknown outcomes, the elapsed time and the rate achieved.

Only references, statuses and reasons are printed, never document data. Exit status 0 when everything went as
expected (every good document got a scan and its verification result with the outcome it asked for, the
unknown outcome was settled by its callback, every defective one was refused by preflight, no scan was created
twice), 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import rich  # noqa: F401  # fail at import when the cli extra is missing, so the CLI can say so
import uvicorn  # noqa: F401  # the emulator extra, likewise

from .._errors import ConfigurationError, PreflightError
from ._common import cli_text, enum_value, positive_int, print_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from rich.progress import Progress

    from .._batch import BatchOutcome
    from .._client import NetverifyClient
    from .._journal import SqliteJournal
    from .._models import NetverifyRequest
    from .._results_wait import VerificationResult
    from ..emulator import CallbackReceiver, Outcome, RunningEmulator
    from ..emulator._synthetic import SyntheticDocument
    from ._interrupt import Interruption

__all__ = ["add_parser", "run"]

DEFAULT_SIZE = 40
MAX_SIZE = 1000
DEFAULT_RATE = "10/s"
DEFAULT_CONCURRENCY = 8
DEFAULT_SEED = 7
#: Seconds a scan stays PENDING in the emulator before its callback is sent.
PROCESSING_DELAY_S = 0.4
#: Share of submissions answered 429 (with Retry-After) and 503 once, before they succeed on a retry.
FAULT_SHARE = {"429": 0.03, "503": 0.03}
#: The outcomes requested, with their weights.
OUTCOME_MIX: tuple[tuple[str, int], ...] = (
    ("approved", 50),
    ("fraud", 14),
    ("unreadable", 12),
    ("unsupported-type", 8),
    ("unsupported-country", 8),
    ("no-id", 8),
)
USER_AGENT = "Local Emulator NetverifyDemo/0.1.0"
#: The ambiguous fault aimed at one good document: the scan is created, then the connection is closed unanswered.
AMBIGUOUS_FAULT = "drop"
#: Seconds (after the processing delay) the demo waits for callbacks alone before it polls the retrieval API
#: for the results still missing (at most ``--callback-timeout``). The wait ends as soon as every callback is in,
#: so a generous grace costs nothing when callbacks work, and a busy machine does not turn late callbacks into polls.
CALLBACK_GRACE_S = 10.0
#: Most rows of the per-document results table; a larger run shows the unusual ones first, and counts.
MAX_RESULT_ROWS = 40
#: Columns the results table needs to show whole scan references without wrapping.
RESULTS_TABLE_COLUMNS = 134
#: How a result was learnt, as the results table says it.
VIA_CALLBACK = "callback"
VIA_POLL = "polled"
VIA_SETTLED = "unknown->callback"
VIA_PREFLIGHT = "preflight"


def _size(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SIZE:
        raise argparse.ArgumentTypeError(f"at most {MAX_SIZE} (the demo keeps every image in memory)")
    return value


def _rate(text: str) -> str:
    from .._ratelimit import parse_rate

    try:
        parse_rate(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the whole pipeline against a local emulator with synthetic documents",
        description="Start a local emulator and a callback receiver feeding a journal, draw synthetic ID "
        "documents (fake data, a few deliberately defective), preflight them, submit the good ones under a rate "
        "limit with a live progress bar (one answer is lost on purpose, and its callback settles it), wait for "
        "the verification result of every document and print them. Nothing leaves this machine.",
    )
    parser.add_argument(
        "--size",
        type=_size,
        default=DEFAULT_SIZE,
        metavar="N",
        help=f"documents to generate (default {DEFAULT_SIZE})",
    )
    parser.add_argument(
        "--rate",
        type=_rate,
        default=DEFAULT_RATE,
        metavar="SPEC",
        help=f"submission rate limit of both the client and the emulator, e.g. '10/s' or '5/5s' "
        f"(default {DEFAULT_RATE})",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"uploads in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        metavar="S",
        help=f"seed of the documents, outcomes and faults; same seed, same run (default {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--bad",
        type=int,
        default=None,
        metavar="N",
        help="defective documents among them (default: a quarter, at most 4)",
    )
    parser.add_argument(
        "--callback-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the verification results after the last submission: callbacks first, "
        "then the retrieval API is polled for the missing ones (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=run)
    return parser


@attrs.define
class _Run:
    """Everything the summary needs, gathered while the demo runs (references and statuses only)."""

    size: int
    rate: str
    concurrency: int
    seed: int
    defective: int = 0
    #: merchant reference -> verification status it asked for (good documents only)
    requested: dict[str, str] = attrs.Factory(dict)
    #: merchant reference -> preflight error code the defect should provoke
    expected_rejections: dict[str, str] = attrs.Factory(dict)
    outcomes: list[BatchOutcome] = attrs.Factory(list)
    #: merchant reference -> verification status received in its callback
    received: dict[str, str] = attrs.Factory(dict)
    unparseable_callbacks: int = 0
    stray_callbacks: int = 0
    retries: int = 0
    throttled: int = 0
    unavailable: int = 0
    outcome_unknown: int = 0
    scans_created: int = 0
    duplicate_scans: int = 0
    faults_injected: dict[str, int] = attrs.Factory(dict)
    generation_s: float = 0.0
    submission_s: float = 0.0
    callbacks_s: float = 0.0
    elapsed_s: float = 0.0
    callbacks_timed_out: bool = False
    #: what the demo was doing (drawing, submitting, callbacks); after a stop, where it stopped
    phase: str = "starting"
    #: None, or why the demo stopped early ("interrupted", "output closed")
    interrupted: str | None = None
    #: uploads cut off by the stop (their outcome is unknown) and documents not sent because of it
    stopped_in_flight: int = 0
    not_sent: int = 0
    #: receipts the batch got that the demo's loop had not read yet when a stop ended it (the scans exist)
    late_receipts: list[str] = attrs.Factory(list)
    #: the good document whose answer is lost on purpose (None when there is no good document)
    ambiguous: str | None = None
    #: merchant reference -> scan reference, for unknown outcomes the journal settled from a callback
    settled: dict[str, str] = attrs.Factory(dict)
    #: merchant reference -> the verification result learnt for it (callback via the journal, or polled)
    results: dict[str, VerificationResult] = attrs.Factory(dict)
    #: references whose result was learnt by polling the retrieval API
    polled: set[str] = attrs.Factory(set)
    #: references the journal flags with more than one scan
    journal_duplicates: list[str] = attrs.Factory(list)
    results_timed_out: bool = False

    # -- derived -------------------------------------------------------------------------------------------

    def count(self, status: str) -> int:
        return sum(o.status.value == status for o in self.outcomes)

    @property
    def unknown(self) -> list[str]:
        """References whose upload ended with an unknown outcome (a scan may exist)."""
        return [o.merchant_id_scan_reference or "" for o in self.outcomes if o.status.value == "unknown"]

    @property
    def scans(self) -> list[str]:
        """References with a known scan: a receipt, or an unknown outcome settled by its callback."""
        return self.receipts + [ref for ref in self.unknown if ref in self.settled]

    @property
    def receipts(self) -> list[str]:
        read = [o.merchant_id_scan_reference or "" for o in self.outcomes if o.status.value == "receipt"]
        return read + self.late_receipts

    def rejections(self) -> list[dict[str, Any]]:
        """Preflight rejections: reference, role, error codes and messages."""
        found = []
        for o in self.outcomes:
            if o.status.value != "preflight_rejected":
                continue
            error = o.error
            report = getattr(error, "report", None)
            issues = list(getattr(report, "errors", ()) or ())
            found.append(
                {
                    "reference": o.merchant_id_scan_reference,
                    "image": getattr(error, "role", None) if isinstance(error, PreflightError) else None,
                    "codes": [issue.code for issue in issues],
                    "reasons": [cli_text(issue.message) for issue in issues] or [cli_text(str(error))],
                }
            )
        return sorted(found, key=lambda item: str(item["reference"]))

    def outcome_rows(self) -> list[tuple[str, int, int]]:
        """(verification status, requested, received) for every status seen."""
        requested = Counter(self.requested.values())
        received = Counter(self.received.values())
        statuses = sorted(set(requested) | set(received), key=lambda s: (-requested.get(s, 0), s))
        return [(s, requested.get(s, 0), received.get(s, 0)) for s in statuses]

    def problems(self) -> list[str]:
        """What did not go as the demo expects; empty when all is well."""
        found: list[str] = []
        if self.interrupted is not None:
            found.append(f"{self.interrupted} while {self.phase}: the demo did not finish")
            if self.duplicate_scans:
                found.append(f"{self.duplicate_scans} reference(s) created more than one scan")
            return found
        by_ref = {o.merchant_id_scan_reference: o for o in self.outcomes}
        missing = [
            ref
            for ref in self.requested
            if ref not in self.settled and (by_ref.get(ref) is None or not by_ref[ref].ok)
        ]
        if missing:
            found.append(f"{len(missing)} good document(s) got no scan (no receipt, no settling callback)")
        codes_by_ref = {r["reference"]: set(r["codes"]) for r in self.rejections()}
        wrong_rejections = [
            ref for ref, code in self.expected_rejections.items() if code not in codes_by_ref.get(ref, set())
        ]
        if wrong_rejections:
            found.append(f"{len(wrong_rejections)} defective document(s) were not refused as expected")
        scans = set(self.scans)
        arrived = scans & set(self.received)
        if len(arrived) < len(scans):
            found.append(f"{len(scans) - len(arrived)} callback(s) did not arrive")
        mismatched = [ref for ref in arrived if self.received[ref] != self.requested.get(ref)]
        if mismatched:
            found.append(f"{len(mismatched)} callback(s) reported another outcome than requested")
        no_result = [ref for ref in self.requested if self.result_status(ref) is None]
        if no_result:
            found.append(f"{len(no_result)} good document(s) have no verification result")
        wrong_results = [
            ref for ref in self.requested if self.result_status(ref) not in (None, self.requested[ref])
        ]
        if wrong_results:
            found.append(f"{len(wrong_results)} verification result(s) differ from the outcome requested")
        if self.unparseable_callbacks:
            found.append(f"{self.unparseable_callbacks} callback(s) could not be parsed")
        if self.duplicate_scans or self.journal_duplicates:
            count = max(self.duplicate_scans, len(self.journal_duplicates))
            found.append(f"{count} reference(s) created more than one scan")
        unsettled = [ref for ref in self.unknown if ref not in self.settled]
        if unsettled:
            found.append(f"{len(unsettled)} unknown outcome(s) were not settled by a callback")
        if self.ambiguous is not None and self.ambiguous not in self.unknown:
            found.append(
                f"the lost answer of {self.ambiguous} did not end as an unknown outcome "
                f"({self.status_of(self.ambiguous)})"
            )
        return found

    def status_of(self, reference: str) -> str:
        """The batch outcome of a reference (``receipt``, ``unknown``...), or ``not read``."""
        found = next((o for o in self.outcomes if o.merchant_id_scan_reference == reference), None)
        return "not read" if found is None else str(found.status.value)

    def result_status(self, reference: str) -> str | None:
        """The verification status learnt for a reference, or None."""
        result = self.results.get(reference)
        return None if result is None else result.verification_status

    def via(self, reference: str) -> str:
        """How the result of a reference was learnt (see ``VIA_*``)."""
        if reference in self.settled:
            return VIA_SETTLED
        return VIA_POLL if reference in self.polled else VIA_CALLBACK

    def result_rows(self) -> list[dict[str, Any]]:
        """One row per document, in reference order: its scan, status and reason, or its preflight refusal."""
        rows: list[dict[str, Any]] = []
        refused = {str(r["reference"]): r for r in self.rejections()}
        references = sorted(set(self.requested) | set(self.expected_rejections) | set(refused))
        for ref in references:
            if ref in refused:
                rows.append(
                    {
                        "reference": ref,
                        "scanReference": None,
                        "status": None,
                        "rejectReason": None,
                        "preflight": refused[ref]["codes"],
                        "via": VIA_PREFLIGHT,
                        "outcome": self.status_of(ref),
                    }
                )
                continue
            result = self.results.get(ref)
            reason = None
            if result is not None and (result.reject_reason_code or result.reject_reason_description):
                reason = " ".join(
                    part for part in (result.reject_reason_code, result.reject_reason_description) if part
                )
            rows.append(
                {
                    "reference": ref,
                    "scanReference": result.scan_reference if result is not None else self.settled.get(ref),
                    "status": None if result is None else result.verification_status,
                    "rejectReason": reason,
                    "preflight": None,
                    "via": self.via(ref) if result is not None else None,
                    "outcome": self.status_of(ref),
                }
            )
        return rows

    @property
    def sent(self) -> int:
        """Good documents whose upload started (an answer came, or it was cut off by a stop)."""
        uploaded = sum(o.status.value in ("receipt", "failed", "unknown") for o in self.outcomes)
        return uploaded + len(self.late_receipts) + self.stopped_in_flight

    @property
    def achieved_rate(self) -> float:
        return len(self.receipts) / self.submission_s if self.submission_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems(),
            "problems": self.problems(),
            "documents": self.size,
            "defective": self.defective,
            "sent": self.sent,
            "receipts": len(self.receipts),
            "preflightRejected": self.rejections(),
            "outcomes": {
                status: {"requested": req, "received": got} for status, req, got in self.outcome_rows()
            },
            "callbacks": {
                "expected": len(self.scans),
                "received": len(set(self.scans) & set(self.received)),
                "unparseable": self.unparseable_callbacks,
            },
            "results": self.result_rows(),
            "resultsFromCallbacks": len(set(self.results) - self.polled),
            "resultsPolled": len(self.polled),
            "resultsTimedOut": self.results_timed_out,
            "ambiguousFault": self.ambiguous,
            "reconciled": [
                {
                    "reference": ref,
                    "from": "unknown",
                    "to": "receipt",
                    "by": "callback",
                    "scanReference": scan,
                }
                for ref, scan in sorted(self.settled.items())
            ],
            "retries": self.retries,
            "throttled": self.throttled,
            "serviceUnavailable": self.unavailable,
            "faultsInjected": dict(sorted(self.faults_injected.items())),
            "outcomeUnknown": self.outcome_unknown,
            "scansCreated": self.scans_created,
            "duplicateScans": self.duplicate_scans,
            "rateLimit": self.rate,
            "concurrency": self.concurrency,
            "seed": self.seed,
            "elapsedSeconds": round(self.elapsed_s, 3),
            "generationSeconds": round(self.generation_s, 3),
            "submissionSeconds": round(self.submission_s, 3),
            "callbackWaitSeconds": round(self.callbacks_s, 3),
            "achievedRate": round(self.achieved_rate, 3),
            "interrupted": self.interrupted,
            "stoppedIn": self.phase if self.interrupted is not None else None,
            "stoppedInFlight": self.stopped_in_flight,
            "notSent": self.not_sent,
        }


def _default_bad(size: int) -> int:
    return min(4, size // 4)


def _pick_outcomes(count: int, seed: int) -> list[Outcome]:
    """A shuffled mix following :data:`OUTCOME_MIX` (largest remainders, so small runs still get a mix)."""
    from ..emulator import Outcome

    total = sum(weight for _, weight in OUTCOME_MIX)
    shares = [(Outcome.parse(name), count * weight / total) for name, weight in OUTCOME_MIX]
    picked = [outcome for outcome, share in shares for _ in range(int(share))]
    by_remainder = sorted(shares, key=lambda item: item[1] - int(item[1]), reverse=True)
    picked += [outcome for outcome, _ in by_remainder[: count - len(picked)]]
    random.Random(f"netverify-demo-outcomes:{seed}").shuffle(picked)
    return picked


def _fault_sequence(count: int, seed: int) -> tuple[str, ...]:
    """One action per submission in order: mostly ``ok``, a few ``429`` and ``503`` (each at least once)."""
    actions = ["ok"] * count
    rng = random.Random(f"netverify-demo-faults:{seed}")
    positions = list(range(1, count))  # never the very first request: the bar should start moving at once
    rng.shuffle(positions)
    for action, share in FAULT_SHARE.items():
        for _ in range(max(1 if count >= 4 else 0, round(count * share))):
            if positions:
                actions[positions.pop()] = action
    return tuple(actions)


def _requests(run: _Run, documents: list[SyntheticDocument]) -> list[NetverifyRequest]:
    from .._models import NetverifyRequest

    good = [doc for doc in documents if doc.defect is None]
    outcomes = iter(_pick_outcomes(len(good), run.seed))
    requests = []
    for doc in documents:
        reference = f"demo-{run.seed}-{doc.index:04d}"
        customer_id = f"demo-customer-{doc.index:04d}"
        if doc.defect is None:
            outcome = next(outcomes)
            run.requested[reference] = outcome.verification_status
            customer_id += f"#{outcome.value}"  # the emulator's way of asking for an outcome
        else:
            expected = doc.expected_error
            assert expected is not None
            run.expected_rejections[reference] = expected
        requests.append(
            NetverifyRequest(
                merchant_id_scan_reference=reference,
                frontside_image=doc.front.to_image(),
                backside_image=doc.back.to_image() if doc.back is not None else None,
                face_image=doc.face.to_image() if doc.face is not None else None,
                country=doc.country,
                id_type=doc.id_type,
                customer_id=customer_id,
            )
        )
    return requests


def _pick_ambiguous(run: _Run) -> str | None:
    """The good document whose answer the emulator loses (deterministic by seed); None without good ones."""
    good = sorted(run.requested)
    return random.Random(f"netverify-demo-ambiguous:{run.seed}").choice(good) if good else None


async def _demo(args: argparse.Namespace, console: Console, interruption: Interruption) -> _Run:
    from .._journal import SqliteJournal
    from ..emulator import run_callback_receiver, run_emulator

    bad = _default_bad(args.size) if args.bad is None else max(0, min(args.bad, args.size))
    run = _Run(size=args.size, rate=args.rate, concurrency=args.concurrency, seed=args.seed, defective=bad)
    started = time.perf_counter()

    def say(text: str) -> None:
        if args.json or interruption.output_closed:
            return
        try:  # words wrapped on a terminal; one line per message in a file or a pipe
            console.print(text, soft_wrap=not console.is_terminal)
        except BrokenPipeError:
            interruption.lost_output()

    good = args.size - bad
    with tempfile.TemporaryDirectory(prefix="netverify-demo-") as folder:
        journal = SqliteJournal(Path(folder) / "demo.journal")
        async with (
            journal,
            run_callback_receiver(journal=journal) as receiver,
            run_emulator(
                processing_delay=PROCESSING_DELAY_S,
                allow_http_callbacks=True,
                callback_url_override=receiver.url,
                callback_backoff=0.2,
                rate_limit=args.rate,
                retry_after=True,
                sequence=_fault_sequence(good, args.seed),
                latency=(0.005, 0.03),
                seed=args.seed,
            ) as emulator,
        ):
            say(
                f"[bold]netverify-async demo[/]: {args.size} synthetic documents ({bad} defective), "
                f"rate limit {args.rate}, concurrency {args.concurrency}, seed {args.seed}"
            )
            say(f"  emulator at {emulator.base_url}, callbacks to {receiver.url} (recorded in a journal)")
            try:
                await _run_phases(args, run, journal, emulator, receiver, console, say, interruption, started)
            finally:
                run.interrupted = interruption.reason
                stats = emulator.stats
                run.scans_created = stats.scans_created
                run.duplicate_scans = len(stats.duplicates)
                run.faults_injected = dict(stats.faults_injected)
    run.elapsed_s = time.perf_counter() - started
    return run


async def _run_phases(
    args: argparse.Namespace,
    run: _Run,
    journal: SqliteJournal,
    emulator: RunningEmulator,
    receiver: CallbackReceiver,
    console: Console,
    say: Callable[[str], None],
    interruption: Interruption,
    started: float,
) -> None:
    """Draw, submit (with the journal), wait for the results; a stop ends whichever phase is running."""
    from .._client import NetverifyClient
    from .._ratelimit import parse_rate
    from ..emulator._synthetic import generate_documents
    from ._progress import BatchProgressHook, make_progress

    quiet = args.json or not console.is_terminal
    progress = make_progress(console)
    with progress, interruption.stoppable():
        run.phase = "drawing"
        drawing = progress.add_task("drawing", total=args.size)
        documents = await generate_documents(
            args.size, seed=args.seed, bad=run.defective, on_document=lambda _: progress.advance(drawing)
        )
        run.generation_s = time.perf_counter() - started
        requests = _requests(run, documents)
        del documents
        run.ambiguous = _pick_ambiguous(run)
        if run.ambiguous is not None:
            emulator.set_faults(by_reference={run.ambiguous: AMBIGUOUS_FAULT})
            say(
                f"  the answer to {run.ambiguous} will be lost on purpose (the scan is created, then the "
                "connection closed): its outcome stays unknown until its callback comes"
            )
        if quiet:
            say(f"  drew {args.size} documents in {run.generation_s:.1f} s; submitting")

        run.phase = "submitting"
        limit = min(w.rate for w in parse_rate(args.rate))
        submitting = progress.add_task("submitting", total=len(requests), rate_cap=limit)
        hook = BatchProgressHook(progress, submitting)
        client = NetverifyClient(
            api_token=emulator.api_token,
            api_secret=emulator.api_secret,
            user_agent=USER_AGENT,
            base_url=emulator.base_url,
            rate_limit=args.rate,
            retrieval_rate_limit=None,
            max_concurrency=args.concurrency,
        )
        async with client:
            batch = None
            try:
                batch = client.submit_many(
                    requests, concurrency=args.concurrency, journal=journal, on_progress=hook
                )
                del requests
                async with batch:
                    async for outcome in batch:
                        run.outcomes.append(outcome)
                hook.refresh()
            finally:
                _submission_figures(run, client, batch)
            if quiet:
                unknown = f", {len(run.unknown)} with an unknown outcome" if run.unknown else ""
                say(
                    f"  submitted in {run.submission_s:.1f} s: {len(run.receipts)} receipts{unknown}, "
                    f"{run.count('preflight_rejected')} refused by preflight; waiting for the results"
                )
            run.phase = "waiting for results"
            await _wait_for_results(args, run, client, journal, receiver, progress, say)
        run.phase = "done"


async def _wait_for_results(
    args: argparse.Namespace,
    run: _Run,
    client: NetverifyClient,
    journal: SqliteJournal,
    receiver: CallbackReceiver,
    progress: Progress,
    say: Callable[[str], None],
) -> None:
    """Every scan's verification result: callbacks (recorded in the journal by the receiver) first; after
    :data:`CALLBACK_GRACE_S`, :func:`~netverify_async.wait_for_results` takes the journal's results and polls
    the retrieval API for the rest. Unknown outcomes are watched until a callback settles them."""
    import anyio

    from .._errors import CallbackParseError
    from .._results_wait import wait_for_results
    from ..callbacks import parse_callback

    expected = set(run.receipts) | set(run.unknown)
    waiting = progress.add_task("results", total=len(expected))
    wait_started = time.perf_counter()
    grace = wait_started + PROCESSING_DELAY_S + min(CALLBACK_GRACE_S, args.callback_timeout)
    deadline = wait_started + PROCESSING_DELAY_S + args.callback_timeout
    seen = 0

    def show() -> None:
        done = set(run.received) | set(run.results)
        progress.update(waiting, completed=len(expected & done))

    async def read_callbacks() -> None:
        nonlocal seen
        accepted = receiver.accepted
        for delivery in accepted[seen:]:
            try:
                callback = parse_callback(delivery.form)
            except CallbackParseError:
                run.unparseable_callbacks += 1
                continue
            reference = callback.merchant_id_scan_reference
            if reference not in expected:
                run.stray_callbacks += 1
                continue
            run.received[reference] = enum_value(callback.verification_status)
            if reference in run.unknown and reference not in run.settled:
                await settle(reference)
        seen = len(accepted)
        show()

    async def settle(reference: str) -> None:
        from .._journal import JournalState

        entry = await journal.get(reference)
        if entry is None or entry.state is not JournalState.RECEIPT or entry.reconciled_at is None:
            return
        assert entry.scan_reference is not None
        run.settled[reference] = entry.scan_reference
        say(f"  [bold]{reference}[/]: unknown -> received by callback (scan {entry.scan_reference})")

    async def callbacks_until(moment: float) -> None:
        while True:
            await read_callbacks()
            if expected <= set(run.received) or time.perf_counter() > moment:
                return
            await anyio.sleep(0.05)

    try:
        await callbacks_until(grace)
        missing = expected - set(run.received) - set(run.unknown)
        if missing:
            say(f"  {len(missing)} callback(s) not here yet: polling the retrieval API for their results")
        with anyio.move_on_after(max(0.0, deadline - time.perf_counter())) as scope:
            async with wait_for_results(client, journal) as results:
                async for result in results:
                    if result.verification_status is None:
                        continue
                    run.results[result.merchant_id_scan_reference] = result
                    if result.source == "polled":
                        run.polled.add(result.merchant_id_scan_reference)
                    show()
        run.results_timed_out = scope.cancelled_caught
        await callbacks_until(deadline)  # late callbacks (and the settling of unknown outcomes), if any
        run.results_timed_out = run.results_timed_out or not expected <= set(run.results) | set(run.unknown)
        run.journal_duplicates = sorted(
            entry.merchant_id_scan_reference for entry in await journal.entries() if entry.duplicate_scan
        )
    finally:
        run.callbacks_s = time.perf_counter() - wait_started
    polled = f", {len(run.polled)} polled" if run.polled else ""
    say(
        f"  results: {len(run.results)} of {len(expected)} scans in {run.callbacks_s:.1f} s "
        f"({len(set(run.results) - run.polled)} from callbacks via the journal{polled})"
    )


def _submission_figures(run: _Run, client: Any, batch: Any) -> None:
    """The client's and the batch's figures, also when the batch was stopped early."""
    stats = client.stats
    run.retries = stats.retries
    run.throttled = stats.throttled
    run.unavailable = stats.status_counts.get(503, 0)
    # the client counts the unknown outcomes it raised, the batch reports them (and the uploads a stop cut off)
    run.outcome_unknown = max(stats.outcome_unknown, run.count("unknown"))
    if batch is None:
        return
    summary = batch.summary
    run.submission_s = summary.elapsed
    counted = {o.merchant_id_scan_reference for o in run.outcomes}
    # a stop ends the loop that reads outcomes: receipts already made but not read yet still count
    run.late_receipts = [ref for ref in summary.receipts if ref not in counted]
    run.stopped_in_flight = sum(ref not in counted for ref in summary.unknown)
    run.not_sent = len(summary.not_sent)


def _shown_rows(run: _Run) -> tuple[list[dict[str, Any]], int]:
    """The rows of the results table (all of them up to :data:`MAX_RESULT_ROWS`; beyond, the unusual ones
    first: settled, without a result, refused by preflight, not approved), and how many were left out."""
    rows = run.result_rows()
    if len(rows) <= MAX_RESULT_ROWS:
        return rows, 0

    def rank(row: dict[str, Any]) -> int:
        if row["via"] == VIA_SETTLED:
            return 0
        if row["via"] is None:
            return 1
        if row["via"] == VIA_PREFLIGHT:
            return 2
        return 3 if row["status"] != "APPROVED_VERIFIED" else 4

    chosen = sorted(rows, key=lambda row: (rank(row), row["reference"]))[:MAX_RESULT_ROWS]
    return sorted(chosen, key=lambda row: row["reference"]), len(rows) - len(chosen)


def _print_results(run: _Run, console: Console) -> None:
    """The per-document table: reference, scan reference, verification status, reason, how it was learnt."""
    from rich.text import Text

    from ._progress import make_table

    rows, left_out = _shown_rows(run)
    if not rows:
        return
    # Off a terminal the table is drawn wide enough for whole scan references on one line (a log reads better
    # unwrapped). A narrower terminal shows their first 8 characters (--json has them whole), and instead of
    # the "learnt from" column a mark on the reference of an unknown outcome settled by its callback.
    wide = not console.is_terminal or console.width >= RESULTS_TABLE_COLUMNS
    table = make_table(console, "Verification results, per document")
    table.add_column("reference", no_wrap=True)
    table.add_column("scan reference", no_wrap=True)
    table.add_column("verification status", no_wrap=wide, overflow="fold")
    table.add_column("reason", overflow="fold")
    if wide:
        table.add_column("learnt from", overflow="fold")
    for row in rows:
        if row["via"] == VIA_PREFLIGHT:
            status = Text("refused by preflight", style="yellow")
            reason = Text(", ".join(row["preflight"]) or "-")
        elif row["status"] is None:
            status = Text("no result", style="bold red")
            reason = Text(f"outcome {row['outcome']}")
        else:
            style = "green" if row["status"] == "APPROVED_VERIFIED" else "yellow"
            status = Text(row["status"], style=style)
            reason = Text(row["rejectReason"] or "-")
        scan = row["scanReference"] or "-"
        settled = row["via"] == VIA_SETTLED
        if wide:
            via = Text(row["via"] or "-", style="bold" if settled else "")
            table.add_row(Text(row["reference"]), Text(scan), status, reason, via)
        else:
            scan = scan[:8] + "…" if len(scan) > 9 else scan
            reference = Text(row["reference"] + (" *" if settled else ""), style="bold" if settled else "")
            table.add_row(reference, Text(scan), status, reason)
    if not wide and any(row["via"] == VIA_SETTLED for row in rows):
        table.caption = "* an unknown outcome settled by its callback"
        table.caption_justify = "left"
    if left_out:
        shown = (
            f"{len(rows)} of {len(rows) + left_out} documents shown (the unusual ones first); "
            "the counts by status follow, --json lists every document"
        )
        table.caption = shown if table.caption is None else f"{table.caption}; {shown}"
        table.caption_justify = "left"
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, RESULTS_TABLE_COLUMNS)
    try:
        console.print(table)
    finally:
        console.width = width


def _print_summary(run: _Run, console: Console) -> None:
    from rich.padding import Padding
    from rich.text import Text

    from ._progress import make_table

    _print_results(run, console)

    outcomes = make_table(console, "Verification outcomes (from callbacks)")
    outcomes.add_column("verification status")
    outcomes.add_column("requested", justify="right")
    outcomes.add_column("received", justify="right")
    rows = run.outcome_rows()
    for status, requested, received in rows:
        style = "green" if status.startswith("APPROVED") else "yellow"
        outcomes.add_row(Text(status, style=style), str(requested), str(received))
    outcomes.add_section()
    outcomes.add_row("total", str(sum(r for _, r, _ in rows)), str(sum(g for _, _, g in rows)), style="bold")
    console.print(outcomes)

    rejections = run.rejections()
    if rejections:
        table = make_table(console, "Preflight rejections (never sent)")
        table.add_column("reference", no_wrap=True)
        table.add_column("image")
        table.add_column("reason", overflow="fold")
        for item in rejections:
            reasons = [f"{c}: {m}" for c, m in zip(item["codes"], item["reasons"], strict=False)]
            table.add_row(
                Text(str(item["reference"])), str(item["image"] or "-"), Text("\n".join(reasons) or "-")
            )
        console.print(table)

    figures = make_table(console, "Run", show_header=False)
    figures.add_column("what")
    figures.add_column("value", justify="right")
    receipts = len(run.receipts)
    arrived = len(set(run.scans) & set(run.received))
    mismatched = sum(
        run.received[ref] != run.requested.get(ref) for ref in set(run.scans) & set(run.received)
    )
    for what, value in (
        ("documents", f"{run.size} ({run.defective} defective)"),
        ("sent / receipts", f"{run.sent} / {receipts}"),
        ("preflight rejections", str(run.count("preflight_rejected"))),
        ("retries", str(run.retries)),
        ("429 answers (rate limited)", f"{run.throttled} ({run.faults_injected.get('429', 0)} injected)"),
        ("503 answers", f"{run.unavailable} ({run.faults_injected.get('503', 0)} injected)"),
        (
            "outcome unknown",
            f"{run.outcome_unknown + run.stopped_in_flight}"
            + (f" ({len(run.settled)} settled by callback)" if run.settled else "")
            + (f" ({run.stopped_in_flight} cut off by the stop)" if run.stopped_in_flight else ""),
        ),
        ("answers lost on purpose", f"{run.faults_injected.get(AMBIGUOUS_FAULT, 0)}"),
        ("scans created / duplicates", f"{run.scans_created} / {run.duplicate_scans}"),
        (
            "callbacks",
            f"{arrived} of {len(run.scans)}" + (f" ({mismatched} not as requested)" if mismatched else ""),
        ),
        (
            "verification results",
            f"{len(run.results)} of {len(run.scans)}"
            + (f" ({len(run.polled)} polled)" if run.polled else ""),
        ),
        ("elapsed", f"{run.elapsed_s:.1f} s"),
        (
            "  drawing / submitting / results",
            f"{run.generation_s:.1f} / {run.submission_s:.1f} / {run.callbacks_s:.1f} s",
        ),
        (
            "achieved rate",
            f"{run.achieved_rate:.2f} receipts/s (limit {run.rate})" if receipts else f"- (limit {run.rate})",
        ),
    ):
        figures.add_row(what, value)
    if run.interrupted is not None:
        figures.add_row("stopped", f"{run.interrupted} while {run.phase}")
        if run.not_sent:
            figures.add_row("  not sent because of the stop", str(run.not_sent))
    console.print(figures)
    wrap = not console.is_terminal  # words wrapped on a terminal; one line per message in a file or a pipe
    if run.throttled or run.unavailable:
        footer = Text(
            "after a 429 or a 503 with Retry-After every new upload waits as told (an isolated 429 does not "
            "lower the client's rate; repeated ones would): that is why the achieved rate stays below the limit",
            style="dim",
        )
        console.print(Padding(footer, (0, 0, 0, 2)) if not wrap else Text("  ") + footer, soft_wrap=wrap)
    for reference, scan in sorted(run.settled.items()):
        console.print(
            f"[bold]reconciled[/]: {reference} unknown -> received by callback, scan {scan} "
            f"({run.result_status(reference) or 'no result'})",
            soft_wrap=wrap,
        )
    problems = run.problems()
    if problems:
        for problem in problems:
            console.print(f"[bold red]problem:[/] {problem}", soft_wrap=wrap)
    elif run.requested:
        settled = (
            f", the unknown outcome of {', '.join(sorted(run.settled))} was settled by its callback"
            if run.settled
            else ""
        )
        console.print(
            f"[bold green]demo OK[/]: every good document got a scan and its verification result, with the "
            f"outcome it asked for{settled}; no scan was created twice",
            soft_wrap=wrap,
        )
    else:
        console.print(
            "[bold green]demo OK[/]: every defective document was refused by preflight (there were no good "
            "documents to send; lower --bad or raise --size)",
            soft_wrap=wrap,
        )


def run(args: argparse.Namespace) -> int:
    """Run the demo; return 0 when everything went as expected (130 after Ctrl-C, 141 after a closed pipe)."""
    import anyio

    from ._interrupt import run_interruptible
    from ._progress import make_console

    console = make_console(stderr=args.json)

    async def body(interruption: Interruption) -> _Run:
        return await _demo(args, console, interruption)

    result, interruption = anyio.run(
        lambda: run_interruptible(body, note="stopping the demo... (Ctrl-C again to quit at once)")
    )
    if args.json and not interruption.output_closed:
        print_json(result.to_dict())
    else:
        _print_summary(result, make_console(stderr=interruption.output_closed))
    return interruption.exit_status or (0 if not result.problems() else 1)
