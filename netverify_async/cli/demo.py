"""``netverify-async demo``: the whole pipeline against a local emulator, with synthetic documents.

1. The emulator starts in this process on a free loopback port, with a server-side rate limit equal to the
   client's, a short processing delay and a few injected faults (429 with ``Retry-After`` and 503), so retries
   show. A callback receiver starts on another loopback port; the emulator sends every callback there.
2. Synthetic ID documents (fake data marked SPECIMEN, some deliberately defective) are drawn in worker threads.
3. ``client.submit_many`` preflights them (the defective ones are refused, with reasons, and never sent) and
   sends the rest under the rate limit, each asking the emulator for a verification outcome (a mix of approved,
   fraud, unreadable, unsupported...). A live progress bar shows counts, rate and ETA.
4. The callbacks are awaited and parsed with :func:`~netverify_async.callbacks.parse_callback`.
5. A summary shows the outcomes by verification status, the preflight rejections, retries, 429s, unknown
   outcomes, the elapsed time and the rate achieved.

Only references, statuses and reasons are printed, never document data. Exit status 0 when everything went as
expected (every good document got a receipt and a callback with the outcome it asked for, every defective one
was refused by preflight, no scan was created twice), 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import attrs
import rich  # noqa: F401  # fail at import when the cli extra is missing, so the CLI can say so
import uvicorn  # noqa: F401  # the emulator extra, likewise

from .._errors import ConfigurationError, PreflightError
from ._common import cli_text, enum_value, print_json

if TYPE_CHECKING:
    from rich.console import Console

    from .._batch import BatchOutcome
    from .._models import NetverifyRequest
    from ..emulator import Outcome
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _size(text: str) -> int:
    value = _positive_int(text)
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
        description="Start a local emulator and a callback receiver, draw synthetic ID documents (fake data, "
        "a few deliberately defective), preflight them, submit the good ones under a rate limit with a "
        "live progress bar, wait for the callbacks and print a summary. Nothing leaves this machine.",
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
        type=_positive_int,
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
        help="how long to wait for the callbacks after the last submission (default 30)",
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

    # -- derived -------------------------------------------------------------------------------------------

    def count(self, status: str) -> int:
        return sum(o.status.value == status for o in self.outcomes)

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
        missing = [ref for ref in self.requested if by_ref.get(ref) is None or not by_ref[ref].ok]
        if missing:
            found.append(f"{len(missing)} good document(s) got no receipt")
        codes_by_ref = {r["reference"]: set(r["codes"]) for r in self.rejections()}
        wrong_rejections = [
            ref for ref, code in self.expected_rejections.items() if code not in codes_by_ref.get(ref, set())
        ]
        if wrong_rejections:
            found.append(f"{len(wrong_rejections)} defective document(s) were not refused as expected")
        receipts = set(self.receipts)
        arrived = receipts & set(self.received)
        if len(arrived) < len(receipts):
            found.append(f"{len(receipts) - len(arrived)} callback(s) did not arrive")
        mismatched = [ref for ref in arrived if self.received[ref] != self.requested.get(ref)]
        if mismatched:
            found.append(f"{len(mismatched)} callback(s) reported another outcome than requested")
        if self.unparseable_callbacks:
            found.append(f"{self.unparseable_callbacks} callback(s) could not be parsed")
        if self.duplicate_scans:
            found.append(f"{self.duplicate_scans} reference(s) created more than one scan")
        if self.outcome_unknown:
            found.append(f"{self.outcome_unknown} submission(s) ended with an unknown outcome")
        return found

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
                "expected": len(self.receipts),
                "received": len(set(self.receipts) & set(self.received)),
                "unparseable": self.unparseable_callbacks,
            },
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


async def _demo(args: argparse.Namespace, console: Console, interruption: Interruption) -> _Run:
    import anyio

    from .._client import NetverifyClient
    from .._errors import CallbackParseError
    from .._ratelimit import parse_rate
    from ..callbacks import parse_callback
    from ..emulator import run_callback_receiver, run_emulator
    from ..emulator._synthetic import generate_documents
    from ._progress import BatchProgressHook, make_progress

    bad = _default_bad(args.size) if args.bad is None else max(0, min(args.bad, args.size))
    run = _Run(size=args.size, rate=args.rate, concurrency=args.concurrency, seed=args.seed, defective=bad)
    started = time.perf_counter()
    quiet = args.json or not console.is_terminal

    def say(text: str) -> None:
        if args.json or interruption.output_closed:
            return
        try:  # words wrapped on a terminal; one line per message in a file or a pipe
            console.print(text, soft_wrap=not console.is_terminal)
        except BrokenPipeError:
            interruption.lost_output()

    good = args.size - bad
    async with (
        run_callback_receiver() as receiver,
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
        say(f"  emulator at {emulator.base_url}, callbacks to {receiver.url}")
        progress = make_progress(console)
        batch = None
        with progress, interruption.stoppable():
            run.phase = "drawing"
            drawing = progress.add_task("drawing", total=args.size)
            documents = await generate_documents(
                args.size, seed=args.seed, bad=bad, on_document=lambda _: progress.advance(drawing)
            )
            run.generation_s = time.perf_counter() - started
            requests = _requests(run, documents)
            del documents
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
                try:
                    batch = client.submit_many(requests, concurrency=args.concurrency, on_progress=hook)
                    del requests
                    async with batch:
                        async for outcome in batch:
                            run.outcomes.append(outcome)
                    hook.refresh()
                finally:
                    _submission_figures(run, client, batch)
            if quiet:
                say(
                    f"  submitted in {run.submission_s:.1f} s: {len(run.receipts)} receipts, "
                    f"{run.count('preflight_rejected')} refused by preflight; waiting for callbacks"
                )

            run.phase = "waiting for callbacks"
            expected = set(run.receipts)
            waiting = progress.add_task("callbacks", total=len(expected))
            wait_started = time.perf_counter()
            deadline = wait_started + PROCESSING_DELAY_S + args.callback_timeout
            seen = 0
            try:
                while True:
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
                    seen = len(accepted)
                    progress.update(waiting, completed=len(expected & set(run.received)))
                    if expected <= set(run.received):
                        break
                    if time.perf_counter() > deadline:
                        run.callbacks_timed_out = True
                        break
                    await anyio.sleep(0.05)
            finally:
                run.callbacks_s = time.perf_counter() - wait_started
            run.phase = "done"
        run.interrupted = interruption.reason
        stats = emulator.stats
        run.scans_created = stats.scans_created
        run.duplicate_scans = len(stats.duplicates)
        run.faults_injected = dict(stats.faults_injected)
    run.elapsed_s = time.perf_counter() - started
    return run


def _submission_figures(run: _Run, client: Any, batch: Any) -> None:
    """The client's and the batch's figures, also when the batch was stopped early."""
    stats = client.stats
    run.retries = stats.retries
    run.throttled = stats.throttled
    run.unavailable = stats.status_counts.get(503, 0)
    run.outcome_unknown = stats.outcome_unknown + run.count("unknown")
    if batch is None:
        return
    summary = batch.summary
    run.submission_s = summary.elapsed
    counted = {o.merchant_id_scan_reference for o in run.outcomes}
    # a stop ends the loop that reads outcomes: receipts already made but not read yet still count
    run.late_receipts = [ref for ref in summary.receipts if ref not in counted]
    run.stopped_in_flight = sum(ref not in counted for ref in summary.unknown)
    run.not_sent = len(summary.not_sent)


def _print_summary(run: _Run, console: Console) -> None:
    from rich.padding import Padding
    from rich.text import Text

    from ._progress import make_table

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
    arrived = len(set(run.receipts) & set(run.received))
    mismatched = sum(
        run.received[ref] != run.requested.get(ref) for ref in set(run.receipts) & set(run.received)
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
            + (f" ({run.stopped_in_flight} cut off by the stop)" if run.stopped_in_flight else ""),
        ),
        ("scans created / duplicates", f"{run.scans_created} / {run.duplicate_scans}"),
        (
            "callbacks",
            f"{arrived} of {receipts}" + (f" ({mismatched} not as requested)" if mismatched else ""),
        ),
        ("elapsed", f"{run.elapsed_s:.1f} s"),
        (
            "  drawing / submitting / callbacks",
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
            "after a 429 or a 503 with Retry-After the client waits as told, and after a 429 it also lowers "
            "its own rate, then climbs back: that is why the achieved rate stays below the limit",
            style="dim",
        )
        console.print(Padding(footer, (0, 0, 0, 2)) if not wrap else Text("  ") + footer, soft_wrap=wrap)
    problems = run.problems()
    if problems:
        for problem in problems:
            console.print(f"[bold red]problem:[/] {problem}", soft_wrap=wrap)
    elif run.requested:
        console.print(
            "[bold green]demo OK[/]: every good document got a receipt and the outcome it asked for",
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
