"""Follow-ups of the newcomer review in the command line: every output speaks the command line's words
(``--fix`` in ``preflight --json`` too), a batch's JSON lines report every invalid row in one shape, and a demo
stopped early counts the receipts the batch got but the demo had not read yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL, cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu


def test_preflight_json_names_the_fix_flag(tmp_path: Path) -> None:
    from netverify_async.emulator import sample_image

    (tmp_path / "scan.webp").write_bytes(sample_image(800, 600, "WEBP"))
    result = cli("preflight", "--json", "scan.webp", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    [line] = [json.loads(text) for text in result.stdout.splitlines()]
    [error] = line["errors"]
    assert error["code"] == "unsupported_format"
    assert "--fix converts it to JPEG" in error["message"]
    assert "fix=True" not in result.stdout


def test_batch_json_reports_every_invalid_row_in_one_shape(emulator: Any, tmp_path: Path) -> None:
    from netverify_async.emulator import sample_image

    (tmp_path / "good.jpg").write_bytes(sample_image(800, 600))
    rows = [
        "reference,front,country,id_type",
        "ok-1,good.jpg,AUT,PASSPORT",  # row 2
        "bad-2,missing.jpg,AUT,PASSPORT",  # row 3: invalid in the manifest
        "ok-1,good.jpg,AUT,PASSPORT",  # row 4: a repeated reference, found by the batch
    ]
    manifest = tmp_path / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    args = (str(manifest), "--emulator", emulator.base_url, "--rate-limit", "none")
    result = cli("batch", *args, "--json")
    assert result.returncode == 1, result.stderr
    items = {o["row"]: o for o in map(json.loads, result.stdout.splitlines()) if o["type"] == "item"}
    assert items[3]["error"].startswith("row 3: front: no such file")
    repeated = items[4]
    assert repeated["status"] == "invalid"
    # column names and codes as for a row the manifest reader refused; no wire names, no "1 validation error"
    assert repeated["error"].startswith("row 4: reference: must be unique within a batch")
    assert repeated["error"].endswith("[duplicate_reference]")
    assert "merchantIdScanReference" not in repeated["error"]
    assert "validation error" not in repeated["error"]

    # the table has a row column: the reason does not say the row again
    (tmp_path / "m.csv.journal.sqlite3").unlink()
    table = cli("batch", *args)
    reasons = [line for line in table.stdout.splitlines() if line.startswith(("|   3 ", "|   4 "))]
    assert reasons and not any("row 3:" in line or "row 4:" in line for line in reasons), table.stdout


def _outcome(reference: str, status: str) -> Any:
    return SimpleNamespace(merchant_id_scan_reference=reference, status=SimpleNamespace(value=status))


def test_a_stopped_demo_counts_receipts_it_had_not_read_yet() -> None:
    from netverify_async.cli.demo import _Run, _submission_figures

    run = _Run(size=4, rate="10/s", concurrency=2, seed=7)
    run.outcomes = [_outcome("demo-1", "receipt")]
    stats = SimpleNamespace(retries=0, throttled=0, status_counts={}, outcome_unknown=0)
    client = SimpleNamespace(stats=stats)
    summary = SimpleNamespace(
        elapsed=1.0,
        receipts=("demo-1", "demo-2", "demo-3"),  # two receipts came after the stop ended the demo's loop
        unknown=("demo-4",),  # cut off in flight
        not_sent=(),
    )
    _submission_figures(run, client, SimpleNamespace(summary=summary))
    assert sorted(run.receipts) == ["demo-1", "demo-2", "demo-3"]
    assert run.stopped_in_flight == 1
    assert run.sent == 4  # every scan the emulator may hold is accounted for


def test_an_authentication_refusal_names_the_settings_a_shell_user_sets(
    emulator: Any, tmp_path: Path
) -> None:
    from netverify_async.emulator import sample_image

    (tmp_path / "front.jpg").write_bytes(sample_image(800, 600))
    submit = ("submit", "--front", str(tmp_path / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    env.update(
        NETVERIFY_BASE_URL=emulator.base_url,
        NETVERIFY_API_TOKEN=emulator.api_token,
        NETVERIFY_API_SECRET="not-the-secret",
        NETVERIFY_USER_AGENT="Example Corp SampleApp/1.0",
    )
    refused = subprocess.run(
        [sys.executable, "-m", "netverify_async", *submit],
        capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "check NETVERIFY_API_TOKEN and NETVERIFY_API_SECRET" in refused.stderr, refused.stderr
    assert "NETVERIFY_USER_AGENT or --user-agent" in refused.stderr
    assert "api_token" not in refused.stderr and "user_agent" not in refused.stderr
