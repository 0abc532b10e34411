"""On a terminal the CLI asks for a missing secret, but only once every other setting is known to be good.

Each run is a real subprocess whose stdin is a pseudo-terminal, in a session of its own (no controlling
terminal, so ``getpass`` prompts on stderr and reads the pty).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")

PROMPT = "Netverify API secret:"


@pytest.fixture(scope="module")
def emulator_url() -> Iterator[str]:
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as emu:
        yield emu.base_url


def run_on_a_terminal(args: list[str], env: dict[str, str], typed: str | None = None) -> tuple[int, str]:
    """Run the CLI with a pty as stdin; type ``typed`` once the prompt shows. Returns (status, stderr)."""
    import pty

    master, slave = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NETVERIFY_")}
    environ.update(env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "netverify_async", *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
        text=True,
        start_new_session=True,
    )
    os.close(slave)
    try:
        if typed is not None:
            time.sleep(1.0)  # the prompt reads the pty; what is typed waits there until it does
            os.write(master, typed.encode() + b"\n")
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(master)
    return proc.returncode, err


def test_a_missing_token_is_reported_before_the_secret_is_asked_for() -> None:
    status, err = run_on_a_terminal(["status", "abc"], {})
    assert status == 1
    assert PROMPT not in err
    assert "NETVERIFY_API_TOKEN is not set" in err
    assert "--emulator URL" in err  # the way to try it without credentials


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"NETVERIFY_API_TOKEN": "t"}, "NETVERIFY_USER_AGENT is not set"),
        ({"NETVERIFY_API_TOKEN": "t", "NETVERIFY_USER_AGENT": "myapp"}, "user_agent"),
        (
            {"NETVERIFY_API_TOKEN": "t", "NETVERIFY_USER_AGENT": "Example Corp App/1.0", "NETVERIFY_REGION": "MARS"},
            "region",
        ),
    ],
)
def test_every_other_setting_is_checked_before_the_prompt(env: dict[str, str], expected: str) -> None:
    status, err = run_on_a_terminal(["status", "abc"], env)
    assert status == 1
    assert PROMPT not in err
    assert expected in err


def test_the_secret_typed_at_the_prompt_is_used(emulator_url: str) -> None:
    env = {
        "NETVERIFY_API_TOKEN": "emulator-api-token",
        "NETVERIFY_USER_AGENT": "Example Corp SampleApp/1.0.1",
        "NETVERIFY_BASE_URL": emulator_url,
    }
    status, err = run_on_a_terminal(
        ["status", "00000000-0000-0000-0000-000000000000"], env, typed="emulator-api-secret"
    )
    assert PROMPT in err
    assert status == 1
    assert "NotFoundError" in err  # authenticated: the scan is unknown, not a 403
    assert "emulator-api-secret" not in err
