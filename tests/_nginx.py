"""nginx as a reverse proxy in front of a test upstream, run from a generated config in a temporary directory.

::

    with nginx_proxy(tmp_path, upstream_port=port, rate="10r/s") as proxy:
        ...  # proxy.base_url; proxy.access_log() lists (status, method, uri, upstream_status) in order

The proxy answers 429 beyond ``rate`` (``limit_req`` without burst, ``nodelay``), 504 when the upstream takes
longer than ``read_timeout`` to answer and 502 when the upstream refuses connections. Nothing outside the
temporary directory is written: pid file, logs and temp paths all live there. Where nginx is not installed
the tests are skipped, except in CI (``CI`` set), where a missing nginx is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest
from _support import free_port

__all__ = ["AccessLogEntry", "NginxProxy", "find_nginx", "free_port", "nginx_proxy"]

_CONFIG = """\
worker_processes 1;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 512; }}
http {{
    log_format plain '$status $request_method $uri $upstream_status';
    access_log {tmp}/access.log plain;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 32m;
    client_body_buffer_size 4m;
    {limit_zone}
    limit_req_status 429;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            {limit_req}
            proxy_pass http://127.0.0.1:{upstream_port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout {read_timeout};
            proxy_next_upstream off;
        }}
    }}
}}
"""


def find_nginx() -> str:
    """The nginx binary; skips the test when there is none (fails it under CI)."""
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if path is None:
        message = "nginx is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI is set: the proxy tests must run in CI")
        pytest.skip(message)
    return path


@attrs.frozen
class AccessLogEntry:
    status: int
    method: str
    uri: str
    upstream_status: str


class NginxProxy:
    def __init__(self, tmp: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.tmp = tmp
        self.port = port
        self.process = process
        self.base_url = f"http://127.0.0.1:{port}"

    def access_log(self, *, at_least: int = 0, timeout: float = 5.0) -> list[AccessLogEntry]:
        """Every request nginx finished, in the order it finished them.

        nginx writes a line just *after* sending the answer, so a client can read the answer before the line
        exists: pass ``at_least`` to wait (up to ``timeout`` seconds) for that many lines.
        """
        path = self.tmp / "access.log"
        deadline = time.monotonic() + timeout
        while True:
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= at_least or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        entries = []
        for line in lines:
            status, method, uri, upstream = line.split(" ", 3)
            entries.append(AccessLogEntry(int(status), method, uri, upstream))
        return entries

    def error_log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text() if path.exists() else ""


def _wait_until_listening(proxy: NginxProxy, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            raise RuntimeError(f"nginx exited at startup:\n{proxy.error_log()}")
        try:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nginx did not listen in time:\n{proxy.error_log()}")


@contextmanager
def nginx_proxy(
    tmp: Path, *, upstream_port: int, rate: str | None = None, read_timeout: str = "1s"
) -> Iterator[NginxProxy]:
    """Run nginx in front of ``127.0.0.1:upstream_port`` for the duration of the block."""
    binary = find_nginx()
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = _CONFIG.format(
        tmp=tmp,
        port=port,
        upstream_port=upstream_port,
        read_timeout=read_timeout,
        limit_zone=f"limit_req_zone $binary_remote_addr zone=api:1m rate={rate};" if rate else "",
        limit_req="limit_req zone=api nodelay;" if rate else "",  # burst: none (0, the default)
    )
    (tmp / "nginx.conf").write_text(config)
    process = subprocess.Popen(
        [
            binary,
            "-p",
            str(tmp),
            "-e",
            str(tmp / "error.log"),
            "-c",
            str(tmp / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = NginxProxy(tmp, port, process)
    try:
        _wait_until_listening(proxy)
        yield proxy
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # fast shutdown: open connections are closed at once
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
