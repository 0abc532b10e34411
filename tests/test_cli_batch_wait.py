"""``netverify-async batch --wait``: a results file and a table of statuses; a re-run polls nothing."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from test_cli_batch import GOOD_ROWS, cli, csv_manifest, image_dir, json_lines  # noqa: F401  # image_dir: fixture

from netverify_async.emulator import run_emulator_in_thread


def test_wait_writes_a_csv_then_a_rerun_polls_nothing(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    results = tmp_path / "results.csv"
    with run_emulator_in_thread(processing_delay=0.2) as emu:
        args = ("batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none")
        first = cli(*args, "--wait", "--results", str(results))
        assert first.returncode == 0, first.stderr
        assert "Verification results" in first.stdout and "polled now" in first.stdout
        with results.open(newline="") as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["reference"] for r in rows) == [f"ref-{i}" for i in range(GOOD_ROWS)]
        assert all(r["scanReference"] and r["status"] and r["submittedAt"] and r["resultAt"] for r in rows)
        assert {r["source"] for r in rows} == {"polled"}
        assert (results.stat().st_mode & 0o777) == 0o600

        before = emu.stats.requests
        second = cli(*args, "--wait", "--results", str(results), "--json")
        assert second.returncode == 0, second.stderr
        assert emu.stats.requests == before  # nothing sent, nothing polled
        _, summary = json_lines(second.stdout)
        assert summary["results"]["polled"] == 0 and summary["results"]["fromJournal"] == GOOD_ROWS
        assert sum(summary["results"]["statuses"].values()) == GOOD_ROWS
        with results.open(newline="") as f:
            again = list(csv.DictReader(f))
        assert {r["source"] for r in again} == {"journal"}
        assert [r["status"] for r in again] == [r["status"] for r in rows]


def test_wait_writes_jsonl_by_extension_and_default_name(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    with run_emulator_in_thread(processing_delay=0.0) as emu:
        args = ("batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none", "--wait")
        out = cli(*args, "--results", str(tmp_path / "r.jsonl"))
        assert out.returncode == 0, out.stderr
        lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
        assert len(lines) == GOOD_ROWS and all(line["status"] for line in lines)
        default = cli(*args)
        assert default.returncode == 0, default.stderr
        assert Path(str(manifest) + ".results.csv").is_file()


def test_results_usage_errors(tmp_path: Path, image_dir: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    no_wait = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--results", "r.csv")
    assert no_wait.returncode == 2 and "--results needs --wait" in no_wait.stderr
    bad = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--wait", "--results", "r.txt")
    assert bad.returncode == 2 and ".csv or .jsonl" in bad.stderr
