"""A loopback endpoint that collects callbacks, for tests of code that sends or expects them.

With ``journal=`` it also feeds a batch's journal, like ``netverify_async.fastapi.callback_router(journal=...)``
does in an application (without needing FastAPI): each callback is parsed and recorded with
``journal.record_callback`` before the answer, so an unknown outcome of the batch settles itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import anyio
import attrs

__all__ = ["CallbackReceiver", "ReceivedCallback", "run_callback_receiver"]

if TYPE_CHECKING:
    from .._journal import CallbackJournal

_Message = MutableMapping[str, Any]


@attrs.frozen
class ReceivedCallback:
    """One POST the receiver got: its path, content type and form fields (last value wins)."""

    path: str
    content_type: str
    form: dict[str, str] = attrs.field(repr=False)
    #: The status the receiver answered with (500 while ``fail_first`` lasts; with a journal, 400 for a body
    #: that is not a callback and 503 when the journal could not record it).
    answered: int
    #: With a journal: what recording the callback did (a :class:`~netverify_async.CallbackEffect` value,
    #: e.g. ``"settled"``); None without a journal or when it was not recorded.
    effect: str | None = None


class CallbackReceiver:
    """ASGI app that records every POST; the first ``fail_first`` are answered 500 (to exercise retries).

    With a ``journal`` (a :class:`~netverify_async.SqliteJournal` or any object with an async
    ``record_callback``), every other POST is parsed with :func:`~netverify_async.callbacks.parse_callback` and
    recorded in it before the answer: 200 once recorded, 400 for a body that is not a callback, 503 when the
    journal fails (the sender tries again).
    """

    def __init__(self, *, fail_first: int = 0, journal: CallbackJournal | None = None) -> None:
        self.fail_first = fail_first
        self.journal = journal
        self.base_url = ""
        self._received: list[ReceivedCallback] = []
        self._lock = threading.Lock()
        self._recording = 0

    @property
    def url(self) -> str:
        """Where to send callbacks: ``<base_url>/callback``."""
        return f"{self.base_url}/callback"

    @property
    def received(self) -> list[ReceivedCallback]:
        """Everything received so far, including the POSTs answered 500."""
        with self._lock:
            return list(self._received)

    @property
    def accepted(self) -> list[ReceivedCallback]:
        """The POSTs answered 200."""
        return [r for r in self.received if r.answered == 200]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedCallback]:  # noqa: ASYNC109
        """Wait until ``count`` callbacks were accepted (answered 200); TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            accepted = self.accepted
            if len(accepted) >= count:
                return accepted
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(accepted)} of {count} callbacks arrived in {timeout} s")
            await anyio.sleep(0.01)

    async def _record(self, form: dict[str, str]) -> tuple[int, str | None]:
        """Parse the form and record it in the journal: (status to answer, the effect)."""
        from .._errors import CallbackParseError, JournalError
        from ..callbacks import parse_callback

        assert self.journal is not None
        try:
            callback = parse_callback(form)
        except CallbackParseError:
            return 400, None
        try:
            decision = await self.journal.record_callback(callback)
        except JournalError:
            return 503, None
        effect = getattr(decision, "effect", None)
        return 200, None if effect is None else str(getattr(effect, "value", effect))

    async def __call__(
        self,
        scope: _Message,
        receive: Callable[[], Awaitable[_Message]],
        send: Callable[[_Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = dict(scope["headers"])
        status = 405
        if scope["method"] == "POST":
            form = dict(parse_qsl(b"".join(chunks).decode("utf-8", "replace"), keep_blank_values=True))
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            with self._lock:
                failing = len(self._received) + self._recording < self.fail_first
                if not failing and self.journal is not None:
                    self._recording += 1
            if failing or self.journal is None:
                status = 500 if failing else 200
                received = ReceivedCallback(scope["path"], content_type, form, status)
            else:
                try:
                    status, effect = await self._record(form)
                finally:
                    with self._lock:
                        self._recording -= 1
                received = ReceivedCallback(scope["path"], content_type, form, status, effect)
            with self._lock:
                self._received.append(received)
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def run_callback_receiver(
    *, fail_first: int = 0, host: str = "127.0.0.1", journal: CallbackJournal | None = None
) -> AsyncIterator[CallbackReceiver]:
    """Serve a :class:`CallbackReceiver` on a free loopback port for the duration of the block::

        async with run_callback_receiver() as rx, run_emulator(allow_http_callbacks=True) as emu:
            ...  # submit with callbackUrl=rx.url
            [callback] = await rx.wait_for(1)

    Works on asyncio (same loop) and trio (a background thread), like :func:`run_emulator`. With ``journal=``
    each callback is recorded in it before the answer (see :class:`CallbackReceiver`).
    """
    from ._server import serve_asgi

    receiver = CallbackReceiver(fail_first=fail_first, journal=journal)
    async with serve_asgi(receiver, host=host) as base_url:
        receiver.base_url = base_url
        yield receiver
