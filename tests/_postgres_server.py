"""A real, throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory, loopback only, on a
free port, trust authentication, stopped (and its directory removed) at the end.

``PostgresServer`` can also be stopped and started again on the same port and data directory (a test that
kills the server in the middle of a batch does that). As root (CI runs as root), the server runs as the
``postgres`` user (created by the Debian ``postgresql`` package), or ``nobody`` when there is none: PostgreSQL
refuses to run as root.

Also usable from a shell: ``python tests/_postgres_server.py start DIR`` prints the URL and leaves the server
running (``.ci/run`` does that); ``python tests/_postgres_server.py stop DIR`` stops it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any


def find_bin(name: str) -> str | None:
    """A PostgreSQL server program: on PATH, else the newest under /usr/lib/postgresql/*/bin (Debian)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")

    def version(path: str) -> tuple[int, ...]:
        part = path.split("/")[4]
        return tuple(int(x) for x in part.split(".") if x.isdigit())

    candidates.sort(key=version)
    return candidates[-1] if candidates else None


def available() -> bool:
    return find_bin("initdb") is not None and find_bin("pg_ctl") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: None (this user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as")


class PostgresServer:
    """One PostgreSQL cluster in ``directory`` (a fresh temporary one by default), listening on 127.0.0.1."""

    def __init__(self, directory: str | None = None, port: int | None = None) -> None:
        self._own_directory = directory is None
        self.directory = directory or tempfile.mkdtemp(prefix="netverify-pg-")
        self.data = os.path.join(self.directory, "data")
        self.log = os.path.join(self.directory, "server.log")
        self.port = port or _free_port()
        self.user = _server_user()
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError(
                "PostgreSQL's initdb/pg_ctl are not installed (Debian: apt-get install postgresql)"
            )
        self._initdb, self._pg_ctl = initdb, pg_ctl

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run(
            args, cwd=self.directory, capture_output=True, text=True, check=False, **extra, **kwargs
        )

    def init(self) -> None:
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        if self.user is not None:
            for path in (self.directory, self.data):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        done = self._run(
            [
                self._initdb,
                "-D",
                self.data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-800:]}")

    def start(self) -> None:
        """Start the server (``initdb`` first when the directory is new) and wait until it accepts connections."""
        if not os.path.exists(os.path.join(self.data, "PG_VERSION")):
            self.init()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.directory}' "
            "-c max_connections=200 -c shared_buffers=16MB -c log_min_messages=warning"
        )
        done = self._run(
            [self._pg_ctl, "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start"]
        )
        if done.returncode != 0:
            tail = ""
            if os.path.exists(self.log):
                with open(self.log, errors="replace") as fh:
                    tail = fh.read()[-800:]
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}: {done.stderr[-400:]} {tail}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, shut down cleanly; ``immediate``: like a crash)."""
        self._run([self._pg_ctl, "-D", self.data, "-m", mode, "-w", "stop"])

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port and data directory."""
        self.stop(mode)
        self.start()

    def cleanup(self) -> None:
        self.stop("immediate")
        if self._own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def start_with_retries(attempts: int = 3) -> PostgresServer:
    """A started server on a fresh directory (another port when the chosen one was taken meanwhile)."""
    for attempt in range(attempts):
        server = PostgresServer()
        try:
            server.start()
            return server
        except RuntimeError:
            server.cleanup()
            if attempt + 1 == attempts:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("start", "stop"):
        print("usage: _postgres_server.py start|stop DIRECTORY", file=sys.stderr)
        return 2
    directory = argv[2]
    if argv[1] == "start":
        os.makedirs(directory, exist_ok=True)
        server = PostgresServer(directory)
        server.start()
        print(server.url)
    else:
        server = PostgresServer(directory, port=1)
        server.stop("fast")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
