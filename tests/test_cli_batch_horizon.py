"""``netverify-async batch --resend-unresolved-after DURATION``: the explicit horizon for unknown outcomes.

The command runs as a real subprocess against the emulator served over loopback HTTP in this process. Unknown
outcomes are made with a 504 answered before any scan is created; the callback receiver is simulated by
recording callbacks in the journal with ``SqliteJournal.record_callback`` (what ``callback_router(journal=...)``
does for each callback it accepts).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from netverify_async import JournalState, SqliteJournal
from netverify_async.callbacks import parse_callback
from netverify_async.cli.batch import parse_duration
from netverify_async.emulator._synthetic import generate_documents_sync

ROWS = 5


@pytest.fixture
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for doc in generate_documents_sync(ROWS, seed=21, bad=0):
        for image in doc.images.values():
            (folder / image.name).write_bytes(image.data)
    return folder


def manifest_of(folder: Path, image_dir: Path, refs: range) -> Path:
    link = folder / "img"
    if not link.exists():
        link.symlink_to(image_dir, target_is_directory=True)
    path = folder / "m.csv"
    rows = [f"ref-{i},img/doc-{i:04d}-front.jpg,,,AUT,PASSPORT," for i in refs]
    path.write_text("reference,front,back,face,country,id_type,customer_id\n" + "\n".join(rows) + "\n")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def json_lines(text: str) -> tuple[dict[str, str], dict[str, Any]]:
    objects = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert objects and objects[-1]["type"] == "summary"
    return {o["reference"]: o for o in objects[:-1]}, objects[-1]


def scans_per_reference(emu: Any) -> dict[str, int]:
    return {ref: len(scans) for ref, scans in emu.stats.scans_by_merchant_reference.items()}


def record_callback(journal_path: Path, merchant_ref: str, scan_ref: str) -> None:
    """What the callback receiver does with a callback for ``merchant_ref``."""
    form = urllib.parse.urlencode(
        {
            "jumioIdScanReference": scan_ref,
            "merchantIdScanReference": merchant_ref,
            "verificationStatus": "APPROVED_VERIFIED",
            "idScanStatus": "SUCCESS",
        }
    )

    async def main() -> None:
        async with SqliteJournal(journal_path) as journal:
            await journal.record_callback(parse_callback(form))

    anyio.run(main)


def states(journal_path: Path) -> dict[str, JournalState]:
    async def main() -> dict[str, JournalState]:
        async with SqliteJournal(journal_path) as journal:
            return await journal.states()

    return anyio.run(main)


def test_the_horizon_resends_exactly_the_unknowns_a_later_callback_vouches_for(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    base = ("--emulator", emulator.base_url, "--rate-limit", "none", "--json", "--concurrency", "1")
    journal_path = tmp_path / "j.sqlite3"
    journal = ("--journal", str(journal_path))

    # run 1: the first upload is answered 504 before any scan exists (unknown); the others get receipts
    emulator.set_faults(sequence=("504",), error_phase="before")
    manifest = manifest_of(tmp_path, image_dir, range(4))
    first = cli("batch", str(manifest), *journal, *base)
    assert first.returncode == 1, first.stderr
    items, _ = json_lines(first.stdout)
    [lost] = [ref for ref, item in items.items() if item["status"] == "unknown"]
    done = sorted(ref for ref, item in items.items() if item["status"] == "receipt")
    assert len(done) == 3
    # a callback for another item reaches the journal after `lost` was sent: the receiver works
    record_callback(journal_path, done[0], items[done[0]]["scanReference"])

    # run 2: a new row, ref-4, is answered 504 too, after that callback: nothing vouches for it
    emulator.set_faults(sequence=("504",), error_phase="before")
    manifest = manifest_of(tmp_path, image_dir, range(5))
    second = cli("batch", str(manifest), *journal, *base)
    items2, _ = json_lines(second.stdout)
    assert items2[lost]["status"] == "skipped_unknown"
    assert items2["ref-4"]["status"] == "unknown"
    assert scans_per_reference(emulator) == dict.fromkeys(done, 1)

    # a horizon not reached yet declares nothing
    requests = emulator.stats.requests
    early = cli("batch", str(manifest), *journal, *base, "--resend-unresolved-after", "1h")
    assert early.returncode == 1, early.stderr
    items_early, summary_early = json_lines(early.stdout)
    assert summary_early["declaredNoScan"] == [] and summary_early["sent"] == 0
    assert {items_early[r]["status"] for r in (lost, "ref-4")} == {"skipped_unknown"}
    assert "no unknown outcome is older than 1h" in early.stderr
    assert emulator.stats.requests == requests

    time.sleep(1.1)  # both unknowns are now past a 1s horizon
    third = cli("batch", str(manifest), *journal, *base, "--resend-unresolved-after", "1s")
    assert third.returncode == 1, third.stderr  # ref-4 is still unknown
    items3, summary3 = json_lines(third.stdout)
    assert summary3["declaredNoScan"] == [lost]
    assert summary3["unresolvedNotDeclared"] == ["ref-4"]
    assert items3[lost]["status"] == "receipt"
    assert items3["ref-4"]["status"] == "skipped_unknown"
    assert f"declared no scan {lost}" in " ".join(third.stderr.split())
    assert summary3["sent"] == 1
    assert scans_per_reference(emulator) == {f"ref-{i}": 1 for i in range(4)}
    assert states(journal_path)[lost] is JournalState.RECEIPT


def test_without_a_callback_since_the_unknowns_were_sent_nothing_is_sent_and_the_exit_status_is_2(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    emulator.set_faults(sequence=("504",), error_phase="before")
    manifest = manifest_of(tmp_path, image_dir, range(2))
    args = (
        "batch",
        str(manifest),
        "--emulator",
        emulator.base_url,
        "--rate-limit",
        "none",
        "--concurrency",
        "1",
    )
    first = cli(*args, "--json")
    assert first.returncode == 1
    items, _ = json_lines(first.stdout)
    assert sorted(i["status"] for i in items.values()) == ["receipt", "unknown"]
    time.sleep(1.1)
    requests = emulator.stats.requests

    refused = cli(*args, "--resend-unresolved-after", "1s")
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "no callback reached the journal since they were sent" in message
    assert "never recorded one" in message
    assert "callback_router(journal=...)" in message
    assert refused.stdout == ""
    assert emulator.stats.requests == requests  # nothing sent
    journal_path = Path(str(manifest) + ".journal.sqlite3")
    unknown_ref = next(r for r, i in items.items() if i["status"] == "unknown")
    assert states(journal_path)[unknown_ref] is JournalState.UNKNOWN


def test_a_callback_older_than_the_unknown_send_does_not_vouch_for_it(
    emulator: Any, image_dir: Path, tmp_path: Path
) -> None:
    manifest = manifest_of(tmp_path, image_dir, range(1))
    base = ("--emulator", emulator.base_url, "--rate-limit", "none", "--json")
    first = cli("batch", str(manifest), *base)
    items, _ = json_lines(first.stdout)
    journal_path = Path(str(manifest) + ".journal.sqlite3")
    record_callback(journal_path, "ref-0", items["ref-0"]["scanReference"])  # before ref-1 was sent

    emulator.set_faults(sequence=("504",), error_phase="before")
    manifest = manifest_of(tmp_path, image_dir, range(2))
    second = cli("batch", str(manifest), *base)
    assert json_lines(second.stdout)[0]["ref-1"]["status"] == "unknown"
    time.sleep(1.1)
    refused = cli("batch", str(manifest), *base, "--resend-unresolved-after", "1s")
    assert refused.returncode == 2, refused.stdout
    assert "the last one was recorded at" in " ".join(refused.stderr.split())
    assert scans_per_reference(emulator) == {"ref-0": 1}


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), (" 2h ", 7200)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "1.5h", "-1h", "0s", "2 h", "2H", "1h30m"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_duration(text)


def test_a_bad_duration_on_the_command_line_exits_2(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("reference,front,country,id_type\n")
    done = cli("batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--resend-unresolved-after", "2x")
    assert done.returncode == 2
    assert "--resend-unresolved-after" in done.stderr and "90s, 30m, 2h, 1d" in done.stderr


def test_the_horizon_and_resend_unknown_exclude_each_other(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("reference,front,country,id_type\n")
    done = cli(
        "batch", str(manifest), "--emulator", "http://127.0.0.1:9", "--resend-unknown",
        "--resend-unresolved-after", "2h",
    )  # fmt: skip
    assert done.returncode == 2
    assert "not allowed with" in done.stderr
