"""Soak run: many submissions through ``client.submit_many`` against a faulty, rate-limited emulator.

The emulator runs as a separate process (``python -m netverify_async.emulator --port 0 --rate-limit 150/s
--retry-after --error-phase after``). 5 % of the submission attempts get an injected fault, drawn with a fixed
seed and handed to the emulator as its fault sequence (``POST /__emulator/faults``); by default:

- ``503`` with ``Retry-After: 1``, before processing, 0.1 % (no scan; the client pauses and retries),
- ``429`` with ``Retry-After: 1``, before processing, 0.1 % (no scan; the client pauses and retries),
- ``500`` *after* processing, 2.4 % (the scan exists but the answer is an error: the outcome is unknown),
- ``drop``, 2.4 %: the connection closes after the scan was created, without an answer (outcome unknown).

Every answer with ``Retry-After`` stops all new uploads for a second; the client's default limiter tells an
isolated 429 from an overload and does not lower its rate for it, so with 0.5 % of each (``--faults``) a run
keeps about the throughput of a plain sliding window (about 65 items/s on two cores). The default limit, 150/s, is below the ~200-230 items/s one
client process sustains on two cores with preflight on, so the limiter is what paces the run.

The client has ``rate_limit`` equal to the emulator's limit, preflight on, and a SQLite journal in a temporary
directory; the input is a lazy generator of small valid JPEGs (each item its own copy of the bytes) with
distinct merchant references; every 1000th image is too small for Jumio (``--bad-every``), so some items end in
a typed error (PreflightError; with ``--no-preflight``, the emulator's 400). The script reports:

- throughput, retries, the 429s counted by the client and by the emulator, the faults the emulator injected;
- RSS of this process at the start (client built, nothing sent), in the middle (half the outcomes in) and at
  the end (all outcomes in), plus samples every 10 %. *Flat* means the end is within 10 % of the middle. The
  batch keeps each item's merchant reference for its summary (about 150 bytes each, by design), and this script
  keeps one byte and one 8-byte hash per item, so a small linear part is expected;
- open file descriptors before the client and the journal were opened and after both were closed;
- asyncio tasks left over once everything is closed (goal 0: ``len(asyncio.all_tasks()) - 1``);
- the invariant: every input ends in exactly one outcome, which is a receipt, a typed error or outcome
  unknown; a receipt matches the one scan the emulator holds for that reference, an item reported failed has
  no scan, and no reference has two scans unless it was reported unknown (no reference may ever have two,
  as ambiguous failures are not resent). The journal's final states must agree with the outcomes.

With callbacks (``--callbacks on``, or ``both``, the default: one run without, then one with), a callback
receiver runs in its own process: ``callback_router(journal=...)`` of ``netverify_async.fastapi`` served by
uvicorn on loopback, on the batch's journal file (a second ``SqliteJournal`` on the same file, as a web app
next to a batch would). The emulator posts every scan's callback there (``--allow-http-callbacks
--callback-url-override``). After the batch, the script waits (at most ``--callback-wait`` seconds) until
every scan's callback has a fate at the emulator (delivered or failed), and then counts, from the journal:
items still ``sent``/``unknown`` (unresolved), items the batch reported unknown that a callback settled (their
scan reference must be the emulator's), and items flagged ``duplicate_scan``; and from the emulator, references
with two scans. Only an ambiguous failure *after* the scan was created gets a callback: one before it (no
scan) stays unresolved by design; the table counts those apart ("unknown without a scan"). Goal with
callbacks: 0 unresolved among the unknowns that have a scan, 0 duplicates, 0 ``duplicate_scan``.

Run: ``python benchmarks/soak.py [--n 20000] [--rate 150] [--faults 503=0.001,...] [--limiter spec|window]
[--callbacks off|on|both]`` (a quick run: ``--n 2000``). Prints markdown tables; exits 1 when a goal is missed.
Not part of CI.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _common import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    USER_AGENT,
    emulator_process,
    listening_process,
    machine_load,
    markdown_table,
)

#: The injected faults: action -> probability per submission attempt (5 % together by default).
DEFAULT_FAULTS = "503=0.001,429=0.001,500=0.024,drop=0.024"

# Outcome classes kept per item (one byte each).
_NONE, _RECEIPT, _ERROR, _UNKNOWN, _OTHER = 0, 1, 2, 3, 4
_CLASS_NAMES = {_RECEIPT: "receipt", _ERROR: "typed error", _UNKNOWN: "outcome unknown", _OTHER: "other"}


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux: /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def open_fds() -> int | None:
    """Open file descriptors of this process (None where /proc/self/fd does not exist)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def small_jpeg(width: int = 320, height: int = 240) -> bytes:
    """A real JPEG (320x240: about 5 kB, valid for preflight and for the emulator's checks)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), (200, 210, 190))
    draw = ImageDraw.Draw(img)
    draw.rectangle([12, 12, 110, 130], outline=(30, 30, 30), width=3)
    for y in range(150, height - 10, 16):
        draw.line([(12, y), (width - 20, y)], fill=(60, 60, 90), width=2)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=60)
    return out.getvalue()


def parse_faults(text: str) -> dict[str, float]:
    faults: dict[str, float] = {}
    for part in text.split(","):
        action, _, rate = part.strip().partition("=")
        if action not in ("503", "429", "500", "drop") or not rate:
            raise SystemExit(
                f"--faults: expected ACTION=RATE with ACTION in 503, 429, 500, drop; got {part!r}"
            )
        faults[action] = float(rate)
    return faults


def fault_sequence(faults: dict[str, float], length: int, seed: int) -> list[str]:
    """One action per submission attempt ("ok" or a fault), drawn with a fixed seed."""
    rng = random.Random(seed)
    edges: list[tuple[float, str]] = []
    total = 0.0
    for action, rate in faults.items():
        total += rate
        edges.append((total, action))
    sequence = []
    for _ in range(length):
        draw = rng.random()
        sequence.append(next((action for edge, action in edges if draw < edge), "ok"))
    return sequence


def admin(base_url: str, name: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"{base_url}/__emulator/{name}",
        data=data,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def requests(n: int, image: bytes, bad_image: bytes, bad_every: int, prefix: str) -> Iterator[Any]:
    """The lazy input: ``n`` requests, each with its own copy of the image bytes, as if read from files; every
    ``bad_every``-th one carries an image too small for Jumio (a typed error, nothing created)."""
    from netverify_async._models import Image, NetverifyRequest

    for index in range(n):
        data = bad_image if bad_every and index % bad_every == bad_every - 1 else image
        yield NetverifyRequest(
            merchant_id_scan_reference=f"{prefix}-{index:06d}",
            frontside_image=Image.from_bytes(bytes(bytearray(data)), "image/jpeg"),
            country="USA",
            id_type="PASSPORT",
        )


def make_rate_limit(args: argparse.Namespace) -> Any:
    """The client's ``rate_limit``: the spec itself (the client's default limiter for it), or a plain sliding
    window with the same margin that does not adapt to 429s."""
    spec = f"{args.rate}/s"
    if args.limiter == "spec":
        return spec
    from netverify_async._ratelimit import SlidingWindowLimiter

    return SlidingWindowLimiter(spec, margin=0.04, max_concurrency=args.concurrency)


def limiter_label(args: argparse.Namespace) -> str:
    if args.limiter == "spec":
        return f'rate_limit="{args.rate}/s" (the client\'s default: adaptive under that ceiling)'
    return f'rate_limit=SlidingWindowLimiter("{args.rate}/s", margin=0.04) (does not adapt)'


def classify(outcome: Any) -> int:
    from netverify_async._batch import OutcomeStatus
    from netverify_async._errors import NetverifyError, SubmissionOutcomeUnknown

    status = outcome.status
    if status is OutcomeStatus.RECEIPT and outcome.receipt is not None:
        return _RECEIPT
    if status is OutcomeStatus.UNKNOWN:
        return _UNKNOWN
    if status in (OutcomeStatus.FAILED, OutcomeStatus.PREFLIGHT_REJECTED, OutcomeStatus.INVALID):
        if isinstance(outcome.error, SubmissionOutcomeUnknown):
            return _UNKNOWN
        if isinstance(outcome.error, NetverifyError):
            return _ERROR
    return _OTHER


def serve_callbacks(journal_path: str) -> None:
    """The callback receiver (run in its own process by :func:`callback_receiver`): FastAPI's
    ``callback_router(journal=...)`` on a free loopback port, feeding the batch's journal file. Prints
    ``listening on URL`` once the socket is bound; stops on SIGTERM (uvicorn's graceful shutdown)."""
    import socket
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    import uvicorn
    from fastapi import FastAPI

    from netverify_async import SqliteJournal
    from netverify_async.callbacks import CallbackOriginVerifier
    from netverify_async.fastapi import callback_router

    journal = SqliteJournal(journal_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with journal:
            yield

    app = FastAPI(lifespan=lifespan)
    app.include_router(
        callback_router(journal=journal, verifier=CallbackOriginVerifier(allowed=["127.0.0.1", "::1"]))
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    print(f"listening on http://127.0.0.1:{port}/netverify/callback", flush=True)
    server.run(sockets=[sock])


@contextmanager
def callback_receiver(journal_path: str, start_timeout: float = 60.0) -> Iterator[str]:
    """Run :func:`serve_callbacks` as a child process (this script with ``--serve-callbacks``); yield its
    URL; stop it on exit."""
    cmd = [sys.executable, os.path.abspath(__file__), "--serve-callbacks", journal_path]
    with listening_process(
        cmd, "the callback receiver", start_timeout=start_timeout, stop_timeout=15, quiet=False
    ) as (_, url):
        yield url


def wait_for_callbacks(base_url: str, timeout: float) -> tuple[dict[str, Any], float]:
    """Poll the emulator until every scan's callback has a fate (delivered, failed, skipped, rejected), at
    most ``timeout`` seconds; return its last stats and the seconds waited."""
    t0 = time.perf_counter()
    while True:
        stats = admin(base_url, "stats")
        cb = stats["callbacks"]
        settled = cb["delivered"] + cb["failed"] + cb["skipped"] + cb["rejected"]
        waited = time.perf_counter() - t0
        if settled >= stats["scansCreated"] or waited >= timeout:
            return stats, waited
        time.sleep(0.5)


async def soak(args: argparse.Namespace, callbacks: bool) -> tuple[int, list[object]]:
    from netverify_async._batch import OutcomeStatus
    from netverify_async._client import NetverifyClient
    from netverify_async._journal import JournalState, SqliteJournal

    faults = parse_faults(args.faults)
    image = small_jpeg()
    bad_image = small_jpeg(250, 180)  # the longest side must be above 300 px
    n = args.n
    prefix = f"soak-{os.getpid()}-{'cb' if callbacks else 'nocb'}"
    began = time.perf_counter()
    load_before = machine_load()
    emulator_args = ["--rate-limit", f"{args.rate}/s", "--retry-after", "--error-phase", args.error_phase]
    emulator_args += ["--seed", "1", "--processing-delay", str(args.processing_delay)]
    with tempfile.TemporaryDirectory(prefix="netverify-soak-") as tmp, contextlib.ExitStack() as stack:
        journal_path = os.path.join(tmp, "journal.sqlite3")
        if callbacks:
            callback_url = stack.enter_context(callback_receiver(journal_path))
            emulator_args += ["--allow-http-callbacks", "--callback-url-override", callback_url]
        emu = stack.enter_context(emulator_process(*emulator_args))
        # about 1.05 attempts per item; the sequence is longer, and past its end nothing is injected
        sequence = fault_sequence(faults, int(n * 1.5) + 1000, args.seed)
        admin(emu.base_url, "faults", {"sequence": sequence})
        del sequence

        fds_start = open_fds()
        client = NetverifyClient(
            api_token=EMULATOR_TOKEN,
            api_secret=EMULATOR_SECRET,
            user_agent=USER_AGENT,
            base_url=emu.base_url,
            rate_limit=make_rate_limit(args),
            max_concurrency=args.concurrency,
            preflight=not args.no_preflight,
        )
        classes = bytearray(n)  # outcome class per input index
        seen = bytearray(n)  # outcomes per input index (must end at 1 each)
        scan_hash = array.array("q", bytes(8 * n))  # hash of the receipt's scan reference
        statuses: Counter[str] = Counter()
        error_types: Counter[str] = Counter()
        extra_outcomes = 0
        rss_samples: list[tuple[int, float]] = []
        rss_start = rss_mb()
        rss_middle = rss_end = 0.0
        t0 = time.perf_counter()
        done = 0
        async with client:
            async with client.submit_many(
                requests(n, image, bad_image, args.bad_every, prefix), journal=journal_path
            ) as batch:
                async for outcome in batch:
                    index = outcome.index
                    if 0 <= index < n and seen[index] < 255:
                        seen[index] += 1
                        classes[index] = classify(outcome)
                    else:
                        extra_outcomes += 1
                    statuses[outcome.status.value] += 1
                    if outcome.error is not None:
                        error_types[type(outcome.error).__name__] += 1
                    if outcome.status is OutcomeStatus.RECEIPT and outcome.receipt is not None:
                        scan_hash[index] = hash(outcome.receipt.scan_reference)
                    done += 1
                    if done == n // 2:
                        rss_middle = rss_mb()
                    if done % max(1, n // 10) == 0:
                        rss_samples.append((done, rss_mb()))
                    if args.progress and done % 1000 == 0:
                        print(
                            f"  {done} outcomes, {done / (time.perf_counter() - t0):.0f}/s", file=sys.stderr
                        )
            rss_end = rss_mb()
            summary = batch.summary
            elapsed = time.perf_counter() - t0
        async with SqliteJournal(journal_path) as journal:
            unknown_at_batch_end = len(await journal.unknown())  # callbacks may have settled some already
        waited = 0.0
        if callbacks:
            stats, waited = wait_for_callbacks(emu.base_url, args.callback_wait)
        async with SqliteJournal(journal_path) as journal:
            journal_counts = await journal.counts()
        fds_end = open_fds()
        await asyncio.sleep(0)  # let just-finished tasks leave the loop's task set
        leftover_tasks = len(asyncio.all_tasks()) - 1
        rss_after_close = rss_mb()
        stats = admin(emu.base_url, "stats")
        # the journal's view of every item (after the RSS readings: this list is the script's, not the batch's)
        async with SqliteJournal(journal_path) as journal:
            entries = {entry.merchant_id_scan_reference: entry for entry in await journal.entries()}

    # -- the invariant -----------------------------------------------------------------------------------------
    scans: dict[str, list[str]] = stats["scansByMerchantReference"]
    missing = sum(1 for count in seen if count == 0)
    repeated = sum(1 for count in seen if count > 1)
    other = sum(1 for c in classes if c == _OTHER)
    receipt_without_scan = receipt_mismatch = receipt_with_duplicate = 0
    error_with_scan = unknown_with_scan = unknown_without_scan = unknown_duplicate = 0
    # what became of the items the batch reported unknown (callbacks settle them in the journal)
    resolved = resolved_wrong_scan = unresolved_with_scan = unresolved_without_scan = 0
    for index, cls in enumerate(classes):
        ref = f"{prefix}-{index:06d}"
        held = scans.get(ref, [])
        if cls == _RECEIPT:
            if not held:
                receipt_without_scan += 1
            elif len(held) > 1:
                receipt_with_duplicate += 1
            elif hash(held[0]) != scan_hash[index]:
                receipt_mismatch += 1
        elif cls == _ERROR:
            if held:
                error_with_scan += 1
        elif cls == _UNKNOWN:
            if held:
                unknown_with_scan += 1
            else:
                unknown_without_scan += 1
            if len(held) > 1:
                unknown_duplicate += 1
            entry = entries.get(ref)
            if entry is not None and entry.state is JournalState.RECEIPT:
                if held and entry.scan_reference == held[0] and entry.reconciled_at is not None:
                    resolved += 1
                else:
                    resolved_wrong_scan += 1
            elif held:
                unresolved_with_scan += 1
            else:
                unresolved_without_scan += 1
    unresolved = unresolved_with_scan + unresolved_without_scan
    duplicate_scan_flags = sum(1 for entry in entries.values() if entry.duplicate_scan)
    del entries
    foreign = sum(1 for ref in scans if not ref.startswith(prefix + "-"))
    class_counts = Counter(classes)
    journal_expect = {
        JournalState.RECEIPT: class_counts[_RECEIPT] + resolved,
        JournalState.FAILED: class_counts[_ERROR],
        JournalState.PENDING: 0,
    }
    journal_ok = (
        all(journal_counts.get(state, 0) == count for state, count in journal_expect.items())
        and journal_counts.get(JournalState.UNKNOWN, 0) + journal_counts.get(JournalState.SENT, 0)
        == unresolved
        and resolved_wrong_scan == 0
        and (callbacks or (resolved == 0 and journal_counts.get(JournalState.SENT, 0) == 0))
    )
    callbacks_stats = stats["callbacks"]
    callbacks_ok = not callbacks or (
        unresolved_with_scan == 0 and duplicate_scan_flags == 0 and callbacks_stats["failed"] == 0
    )
    invariant_ok = (
        missing == 0
        and repeated == 0
        and extra_outcomes == 0
        and other == 0
        and receipt_without_scan == 0
        and receipt_mismatch == 0
        and receipt_with_duplicate == 0
        and error_with_scan == 0
        and unknown_duplicate == 0
        and foreign == 0
        and journal_ok
        and callbacks_ok
    )

    # -- the report ---------------------------------------------------------------------------------------------
    status_counts = stats["statusCounts"]
    flat = abs(rss_end - rss_middle) / rss_middle if rss_middle else 0.0
    injected = {k: v for k, v in sorted(stats["faultsInjected"].items())}
    mix = ", ".join(f"{action} {rate:.1%}" for action, rate in faults.items())
    mode = "with callbacks" if callbacks else "without callbacks"
    print(f"## Soak: {n} submissions through submit_many against a faulty emulator, {mode}\n")
    print(
        f"Emulator in its own process, limit {args.rate}/s with Retry-After; client {limiter_label(args)}, "
        f"max_concurrency={args.concurrency}, preflight {'off' if args.no_preflight else 'on'}, SQLite journal "
        f"in a temporary directory; faults per attempt: {mix} (seed {args.seed}); machine: {load_before}.\n"
    )
    rows: list[list[object]] = [
        ["submissions", n, "", ""],
        ["wall time", f"{elapsed:.1f} s", "", ""],
        ["outcomes per second", f"{n / elapsed:.1f}", "", ""],
        ["outcomes by status", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())), "", ""],
        ["error types", ", ".join(f"{k} {v}" for k, v in sorted(error_types.items())) or "-", "", ""],
        [
            "client: attempts / retries / 429s",
            f"{client.stats.attempts} / {client.stats.retries} / {client.stats.throttled}",
            "",
            "",
        ],
        [
            "emulator: answers by status (0 = dropped)",
            ", ".join(f"{k}: {v}" for k, v in status_counts.items()),
            "",
            "",
        ],
        ["emulator: faults injected", ", ".join(f"{k} {v}" for k, v in injected.items()), "", ""],
        [
            "RSS start / middle / end (MiB)",
            f"{rss_start:.1f} / {rss_middle:.1f} / {rss_end:.1f}",
            "end within 10 % of middle",
            f"{'PASS' if flat <= 0.10 else 'FAIL'} ({(rss_end - rss_middle) / rss_middle:+.1%})",
        ],
        ["RSS after closing the client (MiB)", f"{rss_after_close:.1f}", "", ""],
        [
            "open file descriptors start / end",
            f"{fds_start} / {fds_end}",
            "equal",
            "PASS" if fds_start == fds_end else "FAIL",
        ],
        ["asyncio tasks left over", leftover_tasks, "0", "PASS" if leftover_tasks == 0 else "FAIL"],
        [
            "inputs with exactly one outcome",
            f"{n - missing - repeated} of {n} (missing {missing}, repeated {repeated}, stray {extra_outcomes})",
            "all",
            "PASS" if missing == repeated == extra_outcomes == 0 else "FAIL",
        ],
        [
            "outcome classes",
            ", ".join(f"{_CLASS_NAMES[c]} {class_counts[c]}" for c in (_RECEIPT, _ERROR, _UNKNOWN, _OTHER)),
            "other 0",
            "PASS" if other == 0 else "FAIL",
        ],
        [
            "receipts: no scan / other scan / two scans",
            f"{receipt_without_scan} / {receipt_mismatch} / {receipt_with_duplicate}",
            "0 / 0 / 0",
            "PASS" if receipt_without_scan == receipt_mismatch == receipt_with_duplicate == 0 else "FAIL",
        ],
        ["typed errors with a scan", error_with_scan, "0", "PASS" if error_with_scan == 0 else "FAIL"],
        [
            "unknown: with a scan / without / with two",
            f"{unknown_with_scan} / {unknown_without_scan} / {unknown_duplicate}",
            "two: 0",
            "PASS" if unknown_duplicate == 0 else "FAIL",
        ],
        [
            "emulator duplicates (any reference)",
            len(stats["duplicates"]),
            "0",
            "PASS" if not stats["duplicates"] else "FAIL",
        ],
        [
            "journal states",
            ", ".join(f"{state.value} {count}" for state, count in journal_counts.items()),
            "match outcomes" + (" and callbacks" if callbacks else ""),
            "PASS" if journal_ok else "FAIL",
        ],
    ]
    if callbacks:
        rows += [
            [
                "callbacks: delivered / failed / attempts",
                f"{callbacks_stats['delivered']} / {callbacks_stats['failed']} / {callbacks_stats['attempts']}",
                "failed 0",
                "PASS" if callbacks_stats["failed"] == 0 else "FAIL",
            ],
            ["still unknown in the journal when the batch ended", unknown_at_batch_end, "", ""],
            ["waited for callbacks in flight after the batch", f"{waited:.1f} s", "", ""],
            [
                "batch's unknowns: resolved by callback / with the wrong scan",
                f"{resolved} / {resolved_wrong_scan}",
                "wrong 0",
                "PASS" if resolved_wrong_scan == 0 else "FAIL",
            ],
            [
                "unresolved: with a scan (after-processing fault) / without (no scan, no callback)",
                f"{unresolved_with_scan} / {unresolved_without_scan}",
                "with a scan: 0",
                "PASS" if unresolved_with_scan == 0 else "FAIL",
            ],
            [
                "journal items flagged duplicate_scan",
                duplicate_scan_flags,
                "0",
                "PASS" if duplicate_scan_flags == 0 else "FAIL",
            ],
        ]
    rows += [
        ["invariant overall", "", "", "PASS" if invariant_ok else "FAIL"],
        ["batch summary", f"{summary.status.value}, {len(summary.unknown)} unknown listed", "", ""],
    ]
    print(markdown_table(["measure", "value", "goal", "result"], rows, align="lrll"))
    print("\nRSS while the batch ran (MiB):\n")
    print(
        markdown_table(
            ["outcomes", *(str(done) for done, _ in rss_samples)],
            [["RSS", *(f"{mb:.1f}" for _, mb in rss_samples)]],
        )
    )
    print(f"\n(run took {time.perf_counter() - began:.0f} s; machine afterwards: {machine_load()})")
    ok = invariant_ok and leftover_tasks == 0 and fds_start == fds_end and flat <= 0.10
    comparison: list[object] = [
        mode,
        n,
        class_counts[_RECEIPT],
        class_counts[_UNKNOWN],
        unknown_at_batch_end,
        resolved,
        f"{unresolved} ({unresolved_with_scan} with a scan, {unresolved_without_scan} without)",
        len(stats["duplicates"]),
        duplicate_scan_flags,
        f"{n / elapsed:.1f}",
        "PASS" if ok else "FAIL",
    ]
    return (0 if ok else 1), comparison


COMPARISON_HEADERS = [
    "run",
    "items",
    "receipts",
    "unknown at the end of the batch",
    "of them still unknown in the journal then",
    "resolved by callback",
    "unresolved at the end",
    "duplicates (emulator)",
    "duplicate_scan flags",
    "items/s",
    "goals",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000, help="submissions (default 20000)")
    parser.add_argument(
        "--rate", type=int, default=150, help="emulator limit and client rate_limit per second (default 150)"
    )
    parser.add_argument(
        "--limiter",
        choices=("spec", "window"),
        default="spec",
        help="spec: rate_limit='RATE/s' as given to the client (default); window: a SlidingWindowLimiter",
    )
    parser.add_argument("--concurrency", type=int, default=32, help="client max_concurrency (default 32)")
    parser.add_argument(
        "--faults", default=DEFAULT_FAULTS, help=f"ACTION=RATE,... (default {DEFAULT_FAULTS})"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the fault sequence")
    parser.add_argument(
        "--bad-every",
        type=int,
        default=1000,
        help="every N-th item has an image too small for Jumio: a typed error (default 1000; 0: none)",
    )
    parser.add_argument("--no-preflight", action="store_true", help="skip the client's image checks")
    parser.add_argument(
        "--progress", action="store_true", help="print progress to stderr every 1000 outcomes"
    )
    parser.add_argument(
        "--callbacks",
        choices=("off", "on", "both"),
        default="both",
        help="run without a callback receiver, with one, or both one after the other (default both)",
    )
    parser.add_argument(
        "--callback-wait",
        type=float,
        default=60.0,
        help="seconds to wait after the batch for callbacks still in flight (default 60)",
    )
    parser.add_argument(
        "--error-phase",
        choices=("after", "before"),
        default="after",
        help="injected 500s after the scan was created (default) or before (no scan, so no callback)",
    )
    parser.add_argument(
        "--processing-delay",
        type=float,
        default=0.0,
        help="seconds before the emulator's scans are done and their callbacks sent (default 0)",
    )
    parser.add_argument("--serve-callbacks", metavar="JOURNAL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_callbacks:
        serve_callbacks(args.serve_callbacks)
        return
    if args.n < 2:
        parser.error("--n must be at least 2")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.callbacks]
    code = 0
    comparison = []
    for callbacks in modes:
        run_code, row = asyncio.run(soak(args, callbacks))
        code = max(code, run_code)
        comparison.append(row)
        print()
    print("## Callbacks: unknown outcomes at the end\n")
    print(
        markdown_table(COMPARISON_HEADERS, comparison, align="l" + "r" * (len(COMPARISON_HEADERS) - 2) + "l")
    )
    sys.exit(code)


if __name__ == "__main__":
    main()
