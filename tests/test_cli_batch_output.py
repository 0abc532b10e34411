"""What ``netverify-async batch`` prints for rows without a receipt: one shape for every kind of problem, and
the words of the command line (``--fix``), never the library's Python keywords."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    from netverify_async.emulator import sample_image

    (tmp_path / "good.jpg").write_bytes(sample_image(800, 600))
    (tmp_path / "scan.webp").write_bytes(sample_image(800, 600, "WEBP"))
    rows = [
        "reference,front,country,id_type",
        "ok-1,good.jpg,AUT,PASSPORT",  # row 2
        ",missing.jpg,AUT,PASSPORT",  # row 3: invalid, no reference
        "bad-2,missing.jpg,ZZZ,PASSPORT",  # row 4: invalid, with a reference
        "webp-3,scan.webp,AUT,PASSPORT",  # row 5: refused by preflight
        "ok-1,good.jpg,AUT,PASSPORT",  # row 6: a repeated reference (invalid, found by the batch)
    ]
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def batch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", "batch", *args],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_every_problem_line_has_the_same_shape(emulator: Any, manifest: Path) -> None:
    result = batch(str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none")
    assert result.returncode == 1, result.stderr
    lines = [
        line for line in result.stdout.splitlines() if re.match(r"^(invalid|preflight_rejected|failed) ", line)
    ]
    shape = re.compile(r"^(?P<status>[a-z_]+) row (?P<row>\d+)(?: (?P<ref>[^\s:]+))?: (?P<what>.+)$")
    parsed = {int(m["row"]): m for m in map(shape.match, lines) if m}
    assert sorted(parsed) == [3, 4, 5, 6], lines
    assert parsed[3]["status"] == "invalid" and parsed[3]["ref"] is None
    assert parsed[3]["what"].startswith("front: no such file")
    assert (parsed[4]["status"], parsed[4]["ref"]) == ("invalid", "bad-2")
    assert "country:" in parsed[4]["what"] and "front:" in parsed[4]["what"]
    assert (parsed[5]["status"], parsed[5]["ref"]) == ("preflight_rejected", "webp-3")
    assert (parsed[6]["status"], parsed[6]["ref"]) == ("invalid", "ok-1")
    # a repeated reference reads like the other invalid rows: column, rule, code
    assert parsed[6]["what"].startswith("reference: must be unique within a batch")
    assert "validation error" not in parsed[6]["what"]


def test_messages_name_the_fix_flag(emulator: Any, manifest: Path) -> None:
    text = batch(str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none")
    assert "--fix converts it to JPEG" in text.stdout
    assert "fix=True" not in text.stdout + text.stderr
    as_json = batch(str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    assert "fix=True" not in as_json.stdout
    [webp] = [o for o in map(json.loads, as_json.stdout.splitlines()) if o.get("reference") == "webp-3"]
    assert webp["status"] == "preflight_rejected"
    assert "--fix converts it to JPEG" in webp["error"]
    assert any("--fix" in issue["message"] for issue in webp["issues"])
    fixed = batch(str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none", "--fix", "--json")
    items = [o for o in map(json.loads, fixed.stdout.splitlines()) if o["type"] == "item"]
    assert [o["status"] for o in items if o["reference"] == "webp-3"] == ["receipt"]
