"""``netverify-async batch`` when every item would fail the same way, as real subprocesses.

- Bad credentials: the batch stops after a few refusals instead of collecting one 403 per row, and the rows it
  did not send stay pending, so the same command with the right secret sends them.
- Ctrl-C during an outage (nothing listening): no row is "unknown", and the next run sends every row.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ROWS = 20
USER_AGENT = "Example Corp BatchTests/1.0"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from netverify_async.emulator._synthetic import generate_documents_sync

    folder = tmp_path_factory.mktemp("img")
    paths = []
    for doc in generate_documents_sync(3, seed=5, bad=0):
        path = folder / doc.front.name
        path.write_bytes(doc.front.data)
        paths.append(path)
    return paths


@pytest.fixture
def emulator() -> Iterator[Any]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu


def manifest(folder: Path, images: list[Path]) -> Path:
    lines = ["reference,front,country,id_type"]
    lines += [f"row-{i:02d},{images[i % len(images)]},AUT,PASSPORT" for i in range(ROWS)]
    path = folder / "m.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal_states(path: Path) -> dict[str, int]:
    """Rows by state ({} while the batch is still creating the file)."""
    try:
        with sqlite3.connect(str(path) + ".journal.sqlite3") as con:
            return dict(con.execute("select state, count(*) from items group by state").fetchall())
    except sqlite3.OperationalError:
        return {}


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    env.update(settings)
    return env


def batch(path: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", "batch", str(path), "--json", "--rate-limit", "none", *flags],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_bad_credentials_stop_the_batch_early_and_the_rest_is_sent_by_the_next_run(
    emulator: Any, images: list[Path], tmp_path: Path
) -> None:
    path = manifest(tmp_path, images)
    settings = {"NETVERIFY_BASE_URL": emulator.base_url, "NETVERIFY_USER_AGENT": USER_AGENT}
    wrong = environment(NETVERIFY_API_TOKEN=emulator.api_token, NETVERIFY_API_SECRET="wrong-secret", **settings)
    first = batch(path, wrong, "--concurrency", "2")
    assert first.returncode != 0
    assert "Traceback" not in first.stdout + first.stderr
    assert "authentication refusals in a row" in first.stdout + first.stderr
    assert "invalid Basic authentication" in first.stdout + first.stderr  # the server's own reason
    assert "wrong-secret" not in first.stdout + first.stderr
    # stopped after the third refusal (plus what was already in flight), not one 403 per row
    assert emulator.stats.requests <= 3 + 2
    assert "unknown" not in journal_states(path)

    right = environment(NETVERIFY_API_TOKEN=emulator.api_token, NETVERIFY_API_SECRET=emulator.api_secret, **settings)
    second = batch(path, right)
    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout.strip().splitlines()[-1])
    assert summary["complete"] is True
    assert journal_states(path) == {"receipt": ROWS}


def test_ctrl_c_during_an_outage_leaves_nothing_unknown_and_the_next_run_sends_every_row(
    emulator: Any, images: list[Path], tmp_path: Path
) -> None:
    with socket.socket() as probe:  # a port with nothing listening: every connection is refused
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    path = manifest(tmp_path, images)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netverify_async", "batch", str(path), "--emulator", down, "--rate-limit", "none"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=environment(),
    )  # fmt: skip
    journal = Path(str(path) + ".journal.sqlite3")
    deadline = time.monotonic() + 60
    while not (journal.exists() and journal_states(path).get("sent", 0) >= 1):  # uploads are being retried
        assert time.monotonic() < deadline and proc.poll() is None, "the batch never started an upload"
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    states = journal_states(path)
    assert "unknown" not in states and "sent" not in states, states  # no body ever left: no scan can exist

    rerun = batch(path, environment(), "--emulator", emulator.base_url)
    assert rerun.returncode == 0, rerun.stderr
    assert journal_states(path) == {"receipt": ROWS}
    assert emulator.stats.scans_created == ROWS
