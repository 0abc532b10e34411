"""Wall time of ``import netverify_async`` against its core dependencies alone, in fresh interpreters.

Each sample is one new ``python -c "..."`` process, timed from outside (start to exit), so interpreter
start-up is part of every number; a bare ``python -c pass`` row shows how much. The runs of the three commands
are interleaved so that background load on the machine affects them alike. Goal: the package costs at most
1.5x the baseline ``import httpx, attrs, cattrs, tenacity, anyio``.

Usage: ``python benchmarks/import_time.py [--runs 15]``; prints a markdown table. Exit status 1 if the goal is
missed, or if importing the package loaded a module that should load lazily (pycountry, PIL, aiohttp).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

GOAL_RATIO = 1.5
LAZY_MODULES = ("pycountry", "PIL", "aiohttp")

COMMANDS = {
    "python -c pass": "pass",
    "baseline: httpx, attrs, cattrs, tenacity, anyio": "import httpx, attrs, cattrs, tenacity, anyio",
    "netverify_async": "import netverify_async",
}


def _time_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _eagerly_loaded() -> list[str]:
    probe = "import sys, json, netverify_async; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    loaded = set(json.loads(out))
    return [name for name in LAZY_MODULES if name in loaded]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per command (default 15)")
    args = parser.parse_args()

    for code in COMMANDS.values():  # warm the OS file cache and .pyc files before measuring
        _time_once(code)
    samples: dict[str, list[float]] = {label: [] for label in COMMANDS}
    for _ in range(args.runs):
        for label, code in COMMANDS.items():
            samples[label].append(_time_once(code))

    medians = {label: statistics.median(values) for label, values in samples.items()}
    startup = medians["python -c pass"]
    baseline_label = "baseline: httpx, attrs, cattrs, tenacity, anyio"
    baseline = medians[baseline_label]
    package = medians["netverify_async"]

    print(f"Import wall time, median of {args.runs} fresh processes each (Python {sys.version.split()[0]})\n")
    print("| command | median ms | min ms | minus start-up ms | ratio to baseline |")
    print("|---|---:|---:|---:|---:|")
    for label, values in samples.items():
        median = medians[label]
        print(
            f"| {label} | {median * 1000:.1f} | {min(values) * 1000:.1f} | {(median - startup) * 1000:.1f} "
            f"| {median / baseline:.2f}x |"
        )
    net_base = max(baseline - startup, 1e-9)
    print(
        f"\nnetverify_async / baseline: {package / baseline:.2f}x total, "
        f"{(package - startup) / net_base:.2f}x excluding interpreter start-up (goal <= {GOAL_RATIO}x total)"
    )
    eager = _eagerly_loaded()
    print(f"lazy modules loaded by `import netverify_async`: {', '.join(eager) if eager else 'none'}")
    return 0 if package / baseline <= GOAL_RATIO and not eager else 1


if __name__ == "__main__":
    raise SystemExit(main())
