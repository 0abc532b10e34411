"""The ``netverify-async`` entry point: a light ``--help``, one clean line for a missing extra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL
    )


def test_help_imports_no_subcommand_and_no_server() -> None:
    result = python(
        "import sys\n"
        "from netverify_async.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('uvicorn', 'netverify_async.cli.', "
        "'netverify_async.emulator', 'PIL')))\n"
        "print('LOADED', loaded)\n"
    )
    assert result.returncode == 0, result.stderr
    for command in ("demo", "submit", "batch", "status", "preflight", "emulator"):
        assert command in result.stdout
    assert "NETVERIFY_LOG" in result.stdout
    [loaded] = [line for line in result.stdout.splitlines() if line.startswith("LOADED")]
    assert loaded == "LOADED ['netverify_async.cli._common']"


@pytest.mark.parametrize(
    ("command", "blocked", "extra"),
    [("batch", "rich", "cli"), ("demo", "rich", "cli,emulator"), ("emulator", "uvicorn", "emulator")],
)
def test_a_missing_extra_is_one_line_naming_what_to_install(command: str, blocked: str, extra: str) -> None:
    result = python(
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from netverify_async.cli import main\n"
        f"sys.exit(main([{command!r}, 'x.csv', '--port', '1']))\n"
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: the '{command}' command needs the optional dependency {blocked!r}; "
        f"install it with: pip install 'netverify-async[{extra}]'"
    )


def test_a_connection_failure_without_emulator_hints_at_the_region() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    env.update(
        NETVERIFY_API_TOKEN="t",
        NETVERIFY_API_SECRET="s",
        NETVERIFY_USER_AGENT="Example Corp SampleApp/1.0.1",
        NETVERIFY_BASE_URL=f"http://127.0.0.1:{port}",
    )
    result = subprocess.run(
        [sys.executable, "-m", "netverify_async", "status", "abc"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 1
    error, hint = result.stderr.strip().splitlines()
    assert f"could not connect to http://127.0.0.1:{port}" in error
    assert hint == "hint: check the network, and NETVERIFY_REGION (US, EU, SGP) or NETVERIFY_BASE_URL"
