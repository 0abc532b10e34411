"""Fixtures for tests that need a real PostgreSQL server.

- ``postgres_url`` (session): a database URL. ``NETVERIFY_TEST_POSTGRES_URL`` when set (``.ci/run`` starts a
  server and sets it); otherwise a throwaway server (``tests/_postgres_server.py``) started once per session.
  When PostgreSQL is not installed the tests that use it are skipped, except under CI (``CI`` set), where that
  is a failure: CI must run them.
- ``postgres_server`` (module): a throwaway server of the test module's own, which a test may stop, restart
  (same port and data directory) or kill; its URL is ``postgres_server.url``.
- ``journal_name()``: a fresh journal name, so that tests sharing a database never see each other's rows.

Import the fixtures into a test module or a conftest: ``from _postgres_support import postgres_url``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from _postgres_server import PostgresServer, available, start_with_retries

ENV_URL = "NETVERIFY_TEST_POSTGRES_URL"


def _require_postgres() -> None:
    if available():
        return
    message = "PostgreSQL (initdb, pg_ctl) is not installed"
    if os.environ.get("CI"):
        pytest.fail(f"{message}, and CI must run the PostgreSQL tests")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL database for this session (see the module docstring)."""
    external = os.environ.get(ENV_URL)
    if external:
        yield external
        return
    _require_postgres()
    server = start_with_retries()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server of this module's own, to stop, restart or kill."""
    _require_postgres()
    server = start_with_retries()
    try:
        yield server
    finally:
        server.cleanup()


def journal_name(prefix: str = "t") -> str:
    """A journal name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class CommitCuttingProxy:
    """A loopback TCP proxy in front of PostgreSQL that can lose the acknowledgement of one commit.

    Armed with :meth:`cut_next_commit`, it forwards the client's next ``COMMIT`` to the server, waits for the
    server's answer (so the transaction *is* committed), drops that answer and closes the client's connection:
    the client sees a lost connection for a commit that happened. Connections made afterwards work normally.
    """

    def __init__(self, url: str) -> None:
        import threading
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        port = self._listener.getsockname()[1]
        self.url = parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{port}")).geturl()
        self._armed = threading.Event()
        self.cuts = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def cut_next_commit(self) -> None:
        self._armed.set()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        import select

        try:
            while True:
                ready, _, _ = select.select([client, server], [], [])
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        return
                    server.sendall(data)
                    if self._armed.is_set() and b"COMMIT\x00" in data:
                        self._armed.clear()
                        server.recv(65536)  # the commit's answer: committed, and never delivered
                        self.cuts += 1
                        return
                if server in ready:
                    data = server.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def __enter__(self) -> CommitCuttingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
