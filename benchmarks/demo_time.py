"""Wall time of ``netverify-async demo`` (default size) from the command line, and what its results phase adds.

Each sample is one fresh ``python -m netverify_async demo --json`` process, timed from outside (start to exit).
The baseline, measured in the same run and interleaved with the demo so that background load affects both
alike, is the same command's start-up alone (``python -m netverify_async demo --help``: interpreter, imports
and argument parsing). The demo's own JSON summary splits the rest into drawing, submitting and waiting for
the verification results (callbacks through the journal, polling the missing ones); the results phase has a
floor of the emulator's processing delay (0.4 s), the time the last scan takes to get its result.

Goal: the whole demo stays under 15 s from the command line, every run ends ``ok`` (every good document has
its result, the lost answer was settled by its callback, no duplicate scan).

Usage: ``python benchmarks/demo_time.py [--runs 3]``; prints a markdown table. Exit status 1 if the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import machine_load, markdown_table

GOAL_SECONDS = 15.0
PROCESSING_DELAY_S = 0.4


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}


def _time_startup() -> float:
    start = time.perf_counter()
    command = [sys.executable, "-m", "netverify_async", "demo", "--help"]
    subprocess.run(command, check=True, capture_output=True, env=_environment())
    return time.perf_counter() - start


def _time_demo() -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "netverify_async", "demo", "--json"],
        capture_output=True,
        text=True,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    wall = time.perf_counter() - start
    summary: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {"ok": False}
    summary["exitStatus"] = done.returncode
    return wall, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="demo runs (default 3)")
    args = parser.parse_args()

    _time_startup()  # warm the OS file cache and .pyc files before measuring
    startups: list[float] = []
    walls: list[float] = []
    summaries: list[dict[str, Any]] = []
    for _ in range(args.runs):
        startups.append(_time_startup())
        wall, summary = _time_demo()
        walls.append(wall)
        summaries.append(summary)

    def median(key: str) -> float:
        return statistics.median(float(s.get(key, 0.0)) for s in summaries)

    startup = statistics.median(startups)
    rows = [
        ("baseline: start-up (demo --help)", f"{startup:.2f}", "-"),
        ("drawing the documents", f"{median('generationSeconds'):.2f}", "-"),
        ("submitting (preflight, rate limit, faults)", f"{median('submissionSeconds'):.2f}", "-"),
        (
            "waiting for every result",
            f"{median('callbackWaitSeconds'):.2f}",
            f"floor {PROCESSING_DELAY_S:.1f} s (processing delay)",
        ),
        ("demo, inside (elapsedSeconds)", f"{median('elapsedSeconds'):.2f}", "-"),
        ("demo, from the command line", f"{statistics.median(walls):.2f}", f"max {max(walls):.2f}"),
    ]
    print(f"{args.runs} runs, medians; {machine_load()}")
    print()
    print(markdown_table(("what", "seconds", "note"), rows, align="lrl"))
    print()
    results = [
        f"{len(s.get('results', []))} rows, {len(s.get('reconciled', []))} reconciled, "
        f"{s.get('resultsPolled', '?')} polled, ok={s.get('ok')}"
        for s in summaries
    ]
    print("runs: " + "; ".join(results))
    all_ok = all(s.get("ok") is True and s.get("exitStatus") == 0 for s in summaries)
    met = max(walls) < GOAL_SECONDS and all_ok
    verdict = "met" if met else "MISSED"
    print(
        f"Goal {verdict}: slowest run {max(walls):.1f} s (goal < {GOAL_SECONDS:.0f} s), every run ok: {all_ok}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
