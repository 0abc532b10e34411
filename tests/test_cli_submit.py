"""``netverify-async submit`` and ``status`` against the emulator, run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import make_jpeg

SECRET = "cli-sentinel-secret-42"


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0, api_secret=SECRET) as emu:
        yield emu.base_url


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("img")
    (folder / "front.jpg").write_bytes(make_jpeg())
    (folder / "tiny.jpg").write_bytes(make_jpeg(120, 90))
    (folder / "front.png.jpg").write_bytes(b"not an image at all")
    return folder


def cli(*args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NETVERIFY_API_SECRET": secret, "NETVERIFY_API_TOKEN": "emulator-api-token"}
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_submit_prints_the_receipt_and_waits_for_the_result(emulator_url: str, images: Path) -> None:
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        "--reference", "cli-1", "--emulator", emulator_url, "--wait", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["merchantIdScanReference"] == "cli-1"
    assert data["verificationStatus"] == "APPROVED_VERIFIED"
    status = cli("status", data["scanReference"], "--emulator", emulator_url)
    assert status.returncode == 0, status.stderr
    assert "DONE" in status.stdout and "APPROVED_VERIFIED" in status.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--country", "ZZZ", "--id-type", "PASSPORT"], "country"),
        (["--country", "AUT", "--id-type", "PASSPORT", "--front-tiny"], "too_small"),
        (["--country", "AUT", "--id-type", "PASSPORT", "--front-missing"], "no such file"),
        (["--country", "AUT", "--id-type", "PASSPORT", "--front-garbage"], "unsupported_format"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_non_zero_exit(
    emulator_url: str, images: Path, args: list[str], expected: str
) -> None:
    front = images / "front.jpg"
    if "--front-tiny" in args:
        front = images / "tiny.jpg"
    if "--front-missing" in args:
        front = images / "missing.jpg"
    if "--front-garbage" in args:
        front = images / "front.png.jpg"
    args = [a for a in args if not a.startswith("--front-")]
    result = cli("submit", "--front", str(front), *args, "--emulator", emulator_url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert expected in result.stderr


def test_wrong_secret_is_reported_without_echoing_it(emulator_url: str, images: Path) -> None:
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        "--emulator", emulator_url, secret="wrong-sentinel-secret",
    )  # fmt: skip
    assert result.returncode == 1
    assert "ForbiddenError" in result.stderr
    assert "wrong-sentinel-secret" not in result.stderr + result.stdout


def test_unknown_scan_status_exits_non_zero(emulator_url: str) -> None:
    result = cli("status", "00000000-0000-0000-0000-000000000000", "--emulator", emulator_url)
    assert result.returncode == 1
    assert "NotFoundError" in result.stderr and "Traceback" not in result.stderr


def test_there_is_no_flag_for_the_secret() -> None:
    result = cli("submit", "--help")
    assert result.returncode == 0
    assert "secret" not in result.stdout.replace("NETVERIFY_API_SECRET", "")
