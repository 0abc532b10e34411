"""A real, throwaway redis-server for the tests, on a free loopback port.

Import the fixture into a conftest (``from _redis_server import redis_server``) or a test module. When
redis-server is not installed the tests that use it are skipped, except under CI (the ``CI`` environment
variable is set), where a missing server is a failure: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import pytest
from _support import free_port, stop_process

_START_TIMEOUT_S = 10.0


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start(executable: str, workdir: str, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--loglevel",
            "warning",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:  # e.g. the port was taken between choosing and binding it
            break
        if _ping(port):
            return process, port
        time.sleep(0.02)
    process.kill()
    process.wait()
    with open(log.name, "rb") as output:
        tail = output.read()[-500:].decode(errors="replace")
    raise RuntimeError(f"redis-server did not start on port {port}: {tail}")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """The URL (``redis://127.0.0.1:PORT/0``) of a redis-server for this session.

    When ``NETVERIFY_TEST_REDIS_URL`` is set (``.ci/run`` starts a server and sets it), that server is used;
    otherwise a fresh one is started here and killed at the end of the session.
    """
    external = os.environ.get("NETVERIFY_TEST_REDIS_URL")
    if external:
        yield external
        return
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI must run the Redis tests")
        pytest.skip(message)
    with (
        tempfile.TemporaryDirectory(prefix="netverify-redis-") as workdir,
        open(os.path.join(workdir, "redis.log"), "wb") as log,
    ):
        for attempt in range(3):
            try:
                process, port = _start(executable, workdir, log)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_process(process)
