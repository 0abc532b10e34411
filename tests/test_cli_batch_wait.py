"""``netverify-async batch --wait``: a results file and a table of statuses; a re-run polls nothing."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_cli_batch import GOOD_ROWS, cli, csv_manifest, image_dir, json_lines  # noqa: F401  # image_dir: fixture

from netverify_async.emulator import run_emulator_in_thread

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


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


def test_a_results_csv_cannot_smuggle_formulas_into_a_spreadsheet(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    # merchant references are the user's own text: these are valid ones that a spreadsheet would evaluate
    references = ["=1+2", "+SUM(A1)", "-2", "@cmd", "plain-ref"]
    rows = [
        f"{ref},img/doc-{i % GOOD_ROWS:04d}-front.jpg,,,AUT,PASSPORT," for i, ref in enumerate(references)
    ]
    manifest = csv_manifest(tmp_path, image_dir, rows)
    with run_emulator_in_thread(processing_delay=0.0) as emu:
        args = ("batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none", "--wait")
        written = cli(*args, "--results", str(tmp_path / "r.csv"))
        assert written.returncode == 0, written.stderr
        as_jsonl = cli(*args, "--results", str(tmp_path / "r.jsonl"))
        assert as_jsonl.returncode == 0, as_jsonl.stderr
    with (tmp_path / "r.csv").open(newline="") as f:
        cells = sorted(row["reference"] for row in csv.DictReader(f))
    assert cells == sorted(["'=1+2", "'+SUM(A1)", "'-2", "'@cmd", "plain-ref"])
    # JSON Lines is no spreadsheet format: the values stay as they are
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert sorted(line["reference"] for line in lines) == sorted(references)


def on_a_terminal(*args: str, width: int = 120) -> tuple[int, str]:
    """Run the command on a pseudo-terminal (so that live progress is drawn); its exit status and output."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES") and not k.startswith("NETVERIFY_")
    }
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [sys.executable, "-m", "netverify_async", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=90)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_wait_shows_its_progress_on_a_terminal(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    with run_emulator_in_thread(processing_delay=0.5) as emu:
        status, raw = on_a_terminal(
            "batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none", "--wait"
        )
    assert status == 0, raw
    text = ANSI.sub("", raw)
    assert "waiting for results" in text
    counts = re.findall(r"waiting for results\s+\S*\s*(\d+)/(\d+)", text)
    assert counts and all(total == str(GOOD_ROWS) for _, total in counts), counts
    assert ("4", "4") in counts  # the last drawing shows every result
    assert "Verification results" in text


def test_wait_draws_nothing_off_a_terminal(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    with run_emulator_in_thread(processing_delay=0.0) as emu:
        out = cli("batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none", "--wait")
    assert out.returncode == 0, out.stderr
    assert "waiting for results" not in out.stdout + out.stderr and "\x1b[" not in out.stdout


# ---------------------------------------------------------------------------------------------------------
# --callback-grace: a receiver feeding the journal first, polling as the fallback


async def _batch_with_receiver(
    manifest: Path, journal: Path, *extra: str, fail_first: int, processing_delay: float
) -> tuple[Any, dict[str, Any]]:
    """Run ``batch --wait --json`` against an emulator that sends every callback to a loopback receiver
    recording it in ``journal`` (or refusing it); the receiver, and the command's summary."""
    import anyio.to_thread

    from netverify_async import SqliteJournal
    from netverify_async.emulator import run_callback_receiver, run_emulator

    async with (
        SqliteJournal(journal) as receiving,
        run_callback_receiver(fail_first=fail_first, journal=receiving) as receiver,
        run_emulator(
            processing_delay=processing_delay,
            allow_http_callbacks=True,
            callback_url_override=receiver.url,
            callback_retries=0,
        ) as emu,
    ):
        args = ("batch", str(manifest), "--emulator", emu.base_url, "--rate-limit", "none", "--json")
        out = await anyio.to_thread.run_sync(
            lambda: cli(
                *args, "--journal", str(journal), "--wait", *extra, "--results", str(manifest) + ".csv"
            )
        )
        assert out.returncode == 0, out.stderr
        _, summary = json_lines(out.stdout)
    return receiver, summary


@pytest.mark.anyio
async def test_callback_grace_takes_the_callbacks_and_polls_nothing(image_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    receiver, summary = await _batch_with_receiver(
        manifest, tmp_path / "j.sqlite3", "--callback-grace", "5m", fail_first=0, processing_delay=0.5
    )
    assert len(receiver.accepted) >= GOOD_ROWS
    waited = summary["results"]
    assert waited["polled"] == 0 and waited["fromJournal"] == GOOD_ROWS and waited["complete"]
    assert 0 <= waited["fromCallbacks"] <= GOOD_ROWS
    with Path(str(manifest) + ".csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == GOOD_ROWS and {r["source"] for r in rows} == {"journal"}
    assert all(r["status"] and r["resultAt"] for r in rows)


@pytest.mark.anyio
async def test_callback_grace_polls_after_it_when_callbacks_are_refused(
    image_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    manifest = csv_manifest(tmp_path, image_dir)
    receiver, summary = await _batch_with_receiver(
        manifest, tmp_path / "j.sqlite3", "--callback-grace", "1s", fail_first=10**6, processing_delay=0.0
    )
    assert not receiver.accepted
    waited = summary["results"]
    assert waited["polled"] == GOOD_ROWS and waited["fromJournal"] == 0 and waited["fromCallbacks"] == 0
    assert waited["complete"]


def test_callback_grace_usage_errors(tmp_path: Path, image_dir: Path) -> None:  # noqa: F811
    manifest = csv_manifest(tmp_path, image_dir)
    no_wait = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--callback-grace", "10m")
    assert no_wait.returncode == 2 and "--callback-grace needs --wait" in no_wait.stderr
    bad = cli(
        "batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--wait", "--callback-grace", "soon"
    )
    assert bad.returncode == 2 and "--callback-grace" in bad.stderr
