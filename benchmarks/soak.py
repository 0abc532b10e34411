"""Soak run: many submissions through ``client.submit_many`` against a faulty, rate-limited emulator.

The emulator runs as a separate process (``python -m netverify_async.emulator --port 0 --rate-limit 150/s
--retry-after --error-phase after``). 5 % of the submission attempts get an injected fault, drawn with a fixed
seed and handed to the emulator as its fault sequence (``POST /__emulator/faults``); by default:

- ``503`` with ``Retry-After: 1``, before processing, 0.1 % (no scan; the client pauses and retries),
- ``429`` with ``Retry-After: 1``, before processing, 0.1 % (no scan; the client pauses and retries),
- ``500`` *after* processing, 2.4 % (the scan exists but the answer is an error: the outcome is unknown),
- ``drop``, 2.4 %: the connection closes after the scan was created, without an answer (outcome unknown).

Every answer with ``Retry-After`` stops all new uploads for a second, and the client's default limiter also
lowers its rate after each 429, so a larger share of 429/503 makes the run much longer (``--faults``; with 0.5 %
each, about 34 items/s instead of 100 on two cores). The default limit, 150/s, is below the ~200-230 items/s one
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

Run: ``python benchmarks/soak.py [--n 20000] [--rate 150] [--faults 503=0.001,...] [--limiter spec|window]``
(a quick run: ``--n 2000``). Prints markdown tables; exits 1 when a goal is missed. Not part of CI.
"""

from __future__ import annotations

import argparse
import array
import asyncio
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
from typing import Any

from _common import (
    EMULATOR_SECRET,
    EMULATOR_TOKEN,
    USER_AGENT,
    emulator_process,
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


async def soak(args: argparse.Namespace) -> int:
    from netverify_async._batch import OutcomeStatus
    from netverify_async._client import NetverifyClient
    from netverify_async._journal import JournalState, SqliteJournal

    faults = parse_faults(args.faults)
    image = small_jpeg()
    bad_image = small_jpeg(250, 180)  # the longest side must be above 300 px
    n = args.n
    prefix = f"soak-{os.getpid()}"
    began = time.perf_counter()
    load_before = machine_load()
    with (
        emulator_process(
            "--rate-limit", f"{args.rate}/s", "--retry-after", "--error-phase", "after", "--seed", "1"
        ) as emu,
        tempfile.TemporaryDirectory(prefix="netverify-soak-") as tmp,
    ):
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
        journal_path = os.path.join(tmp, "journal.sqlite3")
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
            journal_counts = await journal.counts()
        fds_end = open_fds()
        await asyncio.sleep(0)  # let just-finished tasks leave the loop's task set
        leftover_tasks = len(asyncio.all_tasks()) - 1
        rss_after_close = rss_mb()
        stats = admin(emu.base_url, "stats")

    # -- the invariant -----------------------------------------------------------------------------------------
    scans: dict[str, list[str]] = stats["scansByMerchantReference"]
    missing = sum(1 for count in seen if count == 0)
    repeated = sum(1 for count in seen if count > 1)
    other = sum(1 for c in classes if c == _OTHER)
    receipt_without_scan = receipt_mismatch = receipt_with_duplicate = 0
    error_with_scan = unknown_with_scan = unknown_without_scan = unknown_duplicate = 0
    for index, cls in enumerate(classes):
        held = scans.get(f"{prefix}-{index:06d}", [])
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
    foreign = sum(1 for ref in scans if not ref.startswith(prefix + "-"))
    class_counts = Counter(classes)
    journal_expect = {
        JournalState.RECEIPT: class_counts[_RECEIPT],
        JournalState.FAILED: class_counts[_ERROR],
        JournalState.UNKNOWN: class_counts[_UNKNOWN],
        JournalState.SENT: 0,
        JournalState.PENDING: 0,
    }
    journal_ok = all(journal_counts.get(state, 0) == count for state, count in journal_expect.items())
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
    )

    # -- the report ---------------------------------------------------------------------------------------------
    status_counts = stats["statusCounts"]
    flat = abs(rss_end - rss_middle) / rss_middle if rss_middle else 0.0
    injected = {k: v for k, v in sorted(stats["faultsInjected"].items())}
    mix = ", ".join(f"{action} {rate:.1%}" for action, rate in faults.items())
    print(f"## Soak: {n} submissions through submit_many against a faulty emulator\n")
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
            "match outcomes",
            "PASS" if journal_ok else "FAIL",
        ],
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
    return 0 if invariant_ok and leftover_tasks == 0 and fds_start == fds_end and flat <= 0.10 else 1


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
    args = parser.parse_args()
    if args.n < 2:
        parser.error("--n must be at least 2")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
