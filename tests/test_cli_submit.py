"""``netverify-async submit`` and ``status`` against the emulator, run as real subprocesses.

The environment of every run holds "production" credentials (sentinels): ``--emulator URL`` must use the
emulator's own and never send these anywhere; without ``--emulator`` they are what the client uses.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import make_jpeg

PRODUCTION_TOKEN = "prod-sentinel-token-42"
PRODUCTION_SECRET = "prod-sentinel-secret-42"
WRONG_SECRET = "wrong-sentinel-secret"


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:  # the emulator's default credentials
        yield emu.base_url


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from netverify_async.emulator import sample_image

    folder = tmp_path_factory.mktemp("img")
    (folder / "front.jpg").write_bytes(make_jpeg())
    (folder / "tiny.jpg").write_bytes(make_jpeg(120, 90))
    (folder / "front.png.jpg").write_bytes(b"not an image at all")
    (folder / "scan.webp").write_bytes(sample_image(800, 600, "WEBP"))
    return folder


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    environ.update(NETVERIFY_API_TOKEN=PRODUCTION_TOKEN, NETVERIFY_API_SECRET=PRODUCTION_SECRET)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "netverify_async", *args],
        capture_output=True,
        text=True,
        env=environ,
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


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records the Authorization header of each request and answers like performNetverify."""

    seen: list[str] = []

    def do_POST(self) -> None:
        type(self).seen.append(self.headers.get("Authorization", ""))
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"timestamp":"2024-01-01T00:00:00.000Z","jumioIdScanReference":"rec-0001"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def basic(token: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{token}:{secret}".encode()).decode()


def test_emulator_flag_never_sends_the_production_credentials(images: Path) -> None:
    """--emulator URL: the emulator's documented credentials, whatever NETVERIFY_API_* hold."""
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli(
            "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
            "--emulator", url,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert "rec-0001" in result.stdout
    assert _Recorder.seen == [basic("emulator-api-token", "emulator-api-secret")]


def test_emulator_flag_works_with_production_credentials_exported(emulator_url: str, images: Path) -> None:
    """The review's case: production credentials in the environment, then --emulator: no 403."""
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        "--emulator", emulator_url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scan reference" in result.stdout


def test_without_the_flag_the_environment_credentials_are_used(emulator_url: str, images: Path) -> None:
    """NETVERIFY_BASE_URL + NETVERIFY_API_*: the way to reach an emulator that has other credentials."""
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        NETVERIFY_BASE_URL=emulator_url,
        NETVERIFY_USER_AGENT="Example Corp SampleApp/1.0.1",
        NETVERIFY_API_TOKEN="emulator-api-token",
        NETVERIFY_API_SECRET="emulator-api-secret",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


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


def test_messages_name_the_flag_not_the_python_keyword(emulator_url: str, images: Path) -> None:
    refused = cli(
        "submit", "--front", str(images / "scan.webp"), "--country", "AUT", "--id-type", "PASSPORT",
        "--emulator", emulator_url,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "unsupported_format" in refused.stderr
    assert "--fix converts it to JPEG" in refused.stderr
    assert "fix=True" not in refused.stderr
    fixed = cli(
        "submit", "--front", str(images / "scan.webp"), "--country", "AUT", "--id-type", "PASSPORT",
        "--fix", "--emulator", emulator_url,
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr


def test_wrong_secret_is_reported_without_echoing_it(emulator_url: str, images: Path) -> None:
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        NETVERIFY_BASE_URL=emulator_url,
        NETVERIFY_USER_AGENT="Example Corp SampleApp/1.0.1",
        NETVERIFY_API_TOKEN="emulator-api-token",
        NETVERIFY_API_SECRET=WRONG_SECRET,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ForbiddenError" in result.stderr
    assert WRONG_SECRET not in result.stderr + result.stdout


def test_unknown_scan_status_exits_non_zero(emulator_url: str) -> None:
    result = cli("status", "00000000-0000-0000-0000-000000000000", "--emulator", emulator_url)
    assert result.returncode == 1
    assert "NotFoundError" in result.stderr and "Traceback" not in result.stderr


def test_a_connection_failure_says_where_and_why_without_verbose(images: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = cli(
        "submit", "--front", str(images / "front.jpg"), "--country", "AUT", "--id-type", "PASSPORT",
        "--emulator", url, "--rate-limit", "none",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    first, hint = result.stderr.strip().splitlines()
    assert first.startswith("error: ConnectError: ")
    assert f"could not connect to {url}" in first
    assert hint == f"hint: is the emulator running at {url}? Start one with: netverify-async emulator --port PORT"


def test_there_is_no_flag_for_the_secret() -> None:
    result = cli("submit", "--help")
    assert result.returncode == 0
    assert "secret" not in result.stdout.replace("NETVERIFY_API_SECRET", "")


def test_status_takes_no_submission_rate_limit() -> None:
    assert "--rate-limit" not in cli("status", "--help").stdout
    refused = cli("status", "abc", "--rate-limit", "1/s", "--emulator", "http://127.0.0.1:9")
    assert refused.returncode == 2
    assert "unrecognized arguments: --rate-limit" in refused.stderr
