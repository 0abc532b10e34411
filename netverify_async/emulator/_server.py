"""Running the emulator: in the current asyncio loop, in a background thread, or from the command line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from ._app import EmulatorApp
from ._config import EmulatorConfig, Faults, build_config
from ._state import CallbackRecord, EmulatorStats

__all__ = [
    "EmulatorThread",
    "RunningEmulator",
    "ServerThread",
    "run_emulator",
    "run_emulator_in_thread",
    "serve_asgi",
]

#: Seconds given to in-flight requests when the emulator stops (slow faults are cut short after this).
SHUTDOWN_GRACE_SECONDS = 1.0


class RunningEmulator:
    """A handle on a served emulator: where it listens, its credentials, its statistics and its faults."""

    def __init__(self, app: EmulatorApp, base_url: str) -> None:
        self.app = app
        #: ``http://127.0.0.1:PORT`` (no trailing slash).
        self.base_url = base_url

    def __repr__(self) -> str:
        return f"RunningEmulator(base_url={self.base_url!r})"

    @property
    def config(self) -> EmulatorConfig:
        """The configuration the emulator started with."""
        return self.app.config

    @property
    def api_token(self) -> str:
        """The Basic-auth user id the emulator accepts."""
        return self.app.config.api_token

    @property
    def api_secret(self) -> str:
        """The Basic-auth password the emulator accepts."""
        return self.app.config.api_secret

    @property
    def stats(self) -> EmulatorStats:
        """A fresh snapshot of the counters."""
        return self.app.state.snapshot()

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.app.faults

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults, or change some fields of the current ones: ``emu.set_faults(drop_rate=1.0)``.

        ``emu.set_faults()`` with no argument removes every fault. Takes effect for the next request.
        """
        return self.app.set_faults(faults, **changes)

    def reset(self) -> None:
        """Forget all scans and counters; restore the faults the emulator started with."""
        self.app.state.reset()

    @property
    def scans(self) -> list[dict[str, Any]]:
        """Summaries of the stored scans (references, outcome, status), oldest first."""
        return self.app.state.scan_summaries()

    @property
    def callbacks(self) -> list[CallbackRecord]:
        """What happened to each callback so far, oldest first."""
        return self.app.state.callback_log()

    async def wait_for_callbacks(self, count: int = 1, timeout: float = 10.0) -> list[CallbackRecord]:
        """Wait until ``count`` callbacks have a fate (delivered, failed, skipped, rejected) and return them.

        Raises TimeoutError when they do not settle within ``timeout`` seconds.
        """
        import anyio

        deadline = time.monotonic() + timeout
        while len(records := self.callbacks) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(records)} of {count} callbacks settled in {timeout} s")
            await anyio.sleep(0.01)
        return records

    @property
    def auth(self) -> tuple[str, str]:
        """``(api_token, api_secret)``, e.g. for ``httpx.AsyncClient(auth=emu.auth)``."""
        return (self.api_token, self.api_secret)


def import_uvicorn() -> Any:
    """The uvicorn module, or an ImportError that names the extra to install."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "serving the emulator needs uvicorn: pip install 'netverify-async[emulator]'"
        ) from exc
    return uvicorn


class _QuietServer:
    """A uvicorn server that leaves the process's signal handlers and logging configuration alone."""

    @staticmethod
    def create(app: Any, *, http: str = "auto", loop: str = "auto", log_level: str = "warning") -> Any:
        try:
            import uvicorn
        except ImportError:  # pragma: no cover - depends on the installation
            import_uvicorn()  # raises the helpful error
            raise

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

            def install_signal_handlers(self) -> None:  # uvicorn < 0.29
                pass

        config = uvicorn.Config(
            app,
            http=http,
            loop=loop,
            lifespan="on",
            log_config=None,
            log_level=log_level,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_SECONDS),
        )
        return Server(config)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets that say so, and without it every
    # response written in two parts waits for a delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.asynccontextmanager
async def serve_asgi(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn for the duration of the block; yields its base URL.

    On asyncio the server runs in the current event loop; on trio (or any other loop) in a background thread
    with its own asyncio loop.
    """
    if not _on_asyncio():
        import anyio.to_thread

        thread = ServerThread(app, host=host, port=port)
        base_url = await anyio.to_thread.run_sync(thread.start)
        try:
            yield base_url
        finally:
            await anyio.to_thread.run_sync(thread.stop)
        return

    sock = bind_socket(host, port)
    server = _QuietServer.create(app)
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises the startup failure
                raise RuntimeError("the server stopped during startup")
            await asyncio.sleep(0.005)
        yield base_url_of(sock)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()


@contextlib.asynccontextmanager
async def run_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **settings: Any
) -> AsyncIterator[RunningEmulator]:
    """Serve the emulator over real HTTP for the duration of the block::

        async with run_emulator(processing_delay=0, drop_rate=0.5, seed=1) as emu:
            ...  # emu.base_url, emu.api_token, emu.api_secret, emu.stats, emu.set_faults(...)

    On asyncio the server runs in the current event loop; on trio (or any other loop) it runs in a background
    thread with its own asyncio loop. ``settings`` are :class:`EmulatorConfig` or :class:`Faults` fields.
    """
    app = EmulatorApp(build_config(config, **settings))
    async with serve_asgi(app, host=host, port=port) as base_url:
        yield RunningEmulator(app, base_url)


class ServerThread:
    """Any ASGI app served by uvicorn in a background thread (with its own asyncio loop)."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, http: str = "auto", loop: str = "auto"
    ) -> None:
        self.app = app
        self._host, self._port = host, port
        self._http, self._loop = http, loop
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._failure: BaseException | None = None

    def start(self, timeout: float = 30.0) -> str:
        """Start serving, wait until the server listens, and return its base URL."""
        if self._thread is not None:
            raise RuntimeError("this server thread was already started")
        self._sock = bind_socket(self._host, self._port)
        self._server = _QuietServer.create(self.app, http=self._http, loop=self._loop)
        self._thread = threading.Thread(target=self._serve, name="netverify-emulator", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError("the server thread stopped during startup") from self._failure
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the server did not start in time")
            time.sleep(0.005)
        return base_url_of(self._sock)

    def _serve(self) -> None:
        assert self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start()
            self._failure = exc

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and wait for the thread to end."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            self._sock.close()


class EmulatorThread:
    """The emulator served by uvicorn in a background thread, usable from any event loop or from sync code::

        with EmulatorThread(processing_delay=0) as emu:
            httpx.get(f"{emu.base_url}/__emulator/stats")

    The thread runs its own asyncio loop (uvloop when installed); ``start()`` returns once it listens.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        http: str = "auto",
        loop: str = "auto",
        **settings: Any,
    ) -> None:
        self.app = EmulatorApp(build_config(config, **settings))
        self._thread = ServerThread(self.app, host=host, port=port, http=http, loop=loop)
        self.running: RunningEmulator | None = None

    def start(self, timeout: float = 30.0) -> RunningEmulator:
        """Start serving and wait until the server listens."""
        self.running = RunningEmulator(self.app, self._thread.start(timeout))
        return self.running

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving and wait for the thread to end."""
        self._thread.stop(timeout)

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_emulator_in_thread(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0, **settings: Any
) -> Iterator[RunningEmulator]:
    """Like :func:`run_emulator`, but synchronous: the server runs in a background thread."""
    with EmulatorThread(config, host=host, port=port, **settings) as running:
        yield running
