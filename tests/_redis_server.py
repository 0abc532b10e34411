"""A real, throwaway redis-server for the tests, on a free loopback port.

Import the fixture into a conftest (``from _redis_server import redis_server``) or a test module. When
redis-server is not installed the tests that use it are skipped, except under CI (the ``CI`` environment
variable is set), where a missing server is a failure: CI must run them.

:class:`OwnRedis` (fixture ``own_redis``) is a server a test may kill, restart empty on the same port, freeze
(SIGSTOP) and thaw; it is always started here, never taken from ``NETVERIFY_TEST_REDIS_URL``. It never saves
on its own; a test that runs ``SAVE`` leaves a snapshot that the next start on the same server loads (a restart
from an older snapshot).
"""

from __future__ import annotations

import os
import shutil
import signal
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


def _start(
    executable: str, workdir: str, log: IO[bytes], port: int | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port() if port is None else port
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


def _executable() -> str:
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI must run the Redis tests")
        pytest.skip(message)
    return executable


class OwnRedis:
    """A redis-server (no persistence) that the test controls: kill it, start it again empty on the same port,
    freeze and thaw it."""

    def __init__(self, executable: str, workdir: str, log: IO[bytes]) -> None:
        self._executable = executable
        self._workdir = workdir
        self._log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.restarts = 0
        for attempt in range(3):
            try:
                self.process, self.port = _start(executable, workdir, log)
                break
            except RuntimeError:
                if attempt == 2:
                    raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        """SIGKILL: the server loses everything since the last ``SAVE`` a test ran (it never saves itself)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def start(self) -> None:
        """Start a server on the same port: empty, or with the snapshot of a ``SAVE`` a test ran."""
        assert self.process is None, "the server is running"
        self.process, _ = _start(self._executable, self._workdir, self._log, self.port)

    def restart(self) -> None:
        """Kill the server and start it again on the same port: what a restart without persistence does (or,
        after a ``SAVE``, a restart from that older snapshot)."""
        self.kill()
        self.start()
        self.restarts += 1

    def freeze(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel, but nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.thaw()
            stop_process(self.process)
            self.process = None


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    """A redis-server of this test alone, on a free loopback port, that it may kill, restart and freeze."""
    executable = _executable()
    with (
        tempfile.TemporaryDirectory(prefix="netverify-own-redis-") as workdir,
        open(os.path.join(workdir, "redis.log"), "wb") as log,
    ):
        server = OwnRedis(executable, workdir, log)
        try:
            yield server
        finally:
            server.stop()


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
    executable = _executable()
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
