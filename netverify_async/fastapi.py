"""FastAPI integration: one client per application, and an endpoint that receives Jumio's callbacks.

Needs the ``fastapi`` extra (``pip install 'netverify-async[fastapi]'``).

::

    from fastapi import FastAPI

    from netverify_async.callbacks import NetverifyCallback
    from netverify_async.fastapi import NetverifyClientDep, callback_router, netverify_lifespan

    async def on_result(callback: NetverifyCallback) -> None:
        ...  # store it; runs after Jumio got its 200

    app = FastAPI(lifespan=netverify_lifespan())      # NetverifyClient.from_env() at startup, closed at shutdown
    app.include_router(callback_router(on_result))    # POST /netverify/callback

    @app.get("/scans/{ref}")
    async def scan(ref: str, client: NetverifyClientDep) -> dict[str, str]:
        return {"status": (await client.scan_status(ref)).status}

The callback endpoint does what Jumio asks of a receiver: it checks the sender's address, answers ``200 OK``
at once and leaves the work (your ``handler``) until after the answer. Bodies that are not callbacks get a
400, senders that are not Jumio a 403, bodies over the size cap a 413, bodies not complete within the read
deadline (``body_timeout``, 10 s by default) a 408. An exact repeat of a body already
accepted is answered 200 without running the handler again. Callbacks may still come twice with different
bodies (a later ``callbackDate``), or never: keep the handler idempotent on ``jumio_id_scan_reference`` and
poll with :meth:`NetverifyClient.wait_for_result` for scans whose callback does not come.

With ``journal=`` (a :class:`~netverify_async.SqliteJournal`, or any object with an async
``record_callback``) the endpoint also feeds a batch's journal: each callback is recorded (committed and
synced) *before* the 200, so a callback is never acknowledged without being stored; unknown outcomes of the
batch settle themselves. The handler is then optional::

    journal = SqliteJournal("uploads.journal")
    app.include_router(callback_router(journal=journal))
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import logging
import math
import os
import traceback
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Final, TypeVar, overload

import anyio

try:
    from fastapi import APIRouter, Depends
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess by the tests
    if (_exc.name or "").partition(".")[0] in ("fastapi", "starlette"):
        raise ImportError(
            "netverify_async.fastapi needs FastAPI; install it with: pip install 'netverify-async[fastapi]'",
            name=_exc.name,
        ) from _exc
    raise

from ._client import NetverifyClient
from ._constants import CALLBACK_MAX_BODY_BYTES
from ._errors import CallbackOriginError, CallbackParseError, ConfigurationError
from ._events import (
    DEFAULT_HOOK_TIMEOUT,
    CallbackHandled,
    EventHook,
    check_event_hooks,
    check_hook_timeout,
    dispatch,
)
from .callbacks import CallbackOriginVerifier, NetverifyCallback, parse_callback

if TYPE_CHECKING:
    from ._journal import CallbackJournal

__all__ = [
    "CALLBACK_BODY_TIMEOUT",
    "CLIENT_STATE_ATTRIBUTE",
    "DEFAULT_VERIFIER",
    "CallbackHandler",
    "ClientFactory",
    "NetverifyClientDep",
    "callback_router",
    "get_netverify_client",
    "netverify_lifespan",
]

logger = logging.getLogger(__name__)

#: The attribute of ``app.state`` that holds the application's client while the lifespan runs.
CLIENT_STATE_ATTRIBUTE: Final = "netverify_client"

#: Builds the application's client at startup; may be a coroutine function (e.g. to fetch secrets first).
ClientFactory = Callable[[], NetverifyClient | Awaitable[NetverifyClient]]
#: Your code that receives each accepted callback, after Jumio got its answer.
CallbackHandler = Callable[[NetverifyCallback], Awaitable[None]]

#: Seconds a callback's whole body may take to arrive (``callback_router(body_timeout=...)``).
CALLBACK_BODY_TIMEOUT: Final = 10.0

_App = TypeVar("_App", bound=Starlette)
_State = TypeVar("_State")


# ----------------------------------------------------------------------------------------------------
# One client per application


async def _make_client(factory: ClientFactory) -> NetverifyClient:
    made = factory()
    client = await made if inspect.isawaitable(made) else made
    if not isinstance(client, NetverifyClient):
        raise ConfigurationError(
            f"client_factory: must return a NetverifyClient, not {type(client).__name__}"
        )
    return client


@asynccontextmanager
async def _client_on_state(app: Starlette, factory: ClientFactory) -> AsyncIterator[NetverifyClient]:
    if getattr(app.state, CLIENT_STATE_ATTRIBUTE, None) is not None:
        raise ConfigurationError(
            f"app.state.{CLIENT_STATE_ATTRIBUTE} is already set: install netverify_lifespan once per app"
        )
    client = await _make_client(factory)
    async with client:
        setattr(app.state, CLIENT_STATE_ATTRIBUTE, client)
        try:
            yield client
        finally:
            delattr(app.state, CLIENT_STATE_ATTRIBUTE)
    logger.debug("NetverifyClient of the application closed")


@overload
def netverify_lifespan(
    client_factory: ClientFactory = ..., *, lifespan: None = None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]: ...


@overload
def netverify_lifespan(
    client_factory: ClientFactory = ...,
    *,
    lifespan: Callable[[_App], AbstractAsyncContextManager[_State]],
) -> Callable[[_App], AbstractAsyncContextManager[_State]]: ...


def netverify_lifespan(
    client_factory: ClientFactory = NetverifyClient.from_env,
    *,
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """A lifespan that gives the application one :class:`NetverifyClient`, closed at shutdown.

    At startup ``client_factory()`` (default :meth:`NetverifyClient.from_env`; a coroutine function works
    too) builds the client, which is stored as ``app.state.netverify_client`` for
    :func:`get_netverify_client`. A factory that fails (e.g. a missing environment variable) fails the
    startup. At shutdown the client's connection pool is closed.

    Pass your own lifespan as ``lifespan`` to run it inside (its startup already sees the client, its
    shutdown runs before the client closes); whatever it yields (None or a state mapping) is passed on::

        app = FastAPI(lifespan=netverify_lifespan(lifespan=my_lifespan))

    The returned function can also be entered from your own lifespan:
    ``async with netverify_lifespan()(app): yield``.
    """
    if not callable(client_factory):
        raise ConfigurationError("client_factory: must be callable")
    if lifespan is not None and not callable(lifespan):
        raise ConfigurationError("lifespan: must be callable (a lifespan function of the app)")

    @asynccontextmanager
    async def netverify_client_lifespan(app: Any) -> AsyncIterator[Any]:
        async with _client_on_state(app, client_factory):
            if lifespan is None:
                yield None
                return
            async with lifespan(app) as state:
                yield state

    return netverify_client_lifespan


def get_netverify_client(request: Request) -> NetverifyClient:
    """FastAPI dependency: the application's client, as set up by :func:`netverify_lifespan`.

    Use it as ``client: Annotated[NetverifyClient, Depends(get_netverify_client)]`` (or the shorter
    :data:`NetverifyClientDep`). Raises :class:`~netverify_async.ConfigurationError` (a 500 for the
    caller) when the app was started without the lifespan.
    """
    client = getattr(request.app.state, CLIENT_STATE_ATTRIBUTE, None)
    if not isinstance(client, NetverifyClient):
        raise ConfigurationError(
            "no NetverifyClient on app.state: create the app with FastAPI(lifespan=netverify_lifespan(...))"
        )
    return client


#: ``client: NetverifyClientDep`` in a route's parameters receives the application's client.
NetverifyClientDep = Annotated[NetverifyClient, Depends(get_netverify_client)]


# ----------------------------------------------------------------------------------------------------
# Callback endpoint


class _Default(enum.Enum):
    VERIFIER = "Jumio's published callback addresses"

    def __repr__(self) -> str:
        return "DEFAULT_VERIFIER"


#: The default of ``callback_router(verifier=...)``: a fresh ``CallbackOriginVerifier()`` (Jumio's addresses).
DEFAULT_VERIFIER: Final = _Default.VERIFIER


class _RecentBodies:
    """The digests of the last ``size`` accepted bodies, least recently seen dropped first."""

    __slots__ = ("_digests", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def seen(self, digest: bytes) -> bool:
        """Whether ``digest`` is remembered (and if so, mark it as recently seen)."""
        if digest in self._digests:
            self._digests.move_to_end(digest)
            return True
        return False

    def add(self, digest: bytes) -> None:
        if self._size <= 0:
            return
        self._digests[digest] = None
        self._digests.move_to_end(digest)
        while len(self._digests) > self._size:
            self._digests.popitem(last=False)

    def discard(self, digest: bytes) -> None:
        self._digests.pop(digest, None)


#: The outcome of a callback delivery (:class:`~netverify_async.CallbackHandled`) by answer status.
_CALLBACK_OUTCOMES = {
    200: "accepted",
    400: "invalid",
    403: "origin_refused",
    408: "body_timeout",
    413: "body_too_large",
    503: "journal_unavailable",
}


class _Delivery:
    """What handling one delivery learnt, for its :class:`~netverify_async.CallbackHandled` event."""

    __slots__ = ("callback", "journal_effect", "outcome")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.callback: NetverifyCallback | None = None
        self.journal_effect: str | None = None


def _json(status_code: int, content: dict[str, str], background: BackgroundTask | None = None) -> Response:
    return JSONResponse(content, status_code=status_code, background=background)


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to be longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_async_callable(obj: object) -> bool:
    while isinstance(obj, functools.partial):
        obj = obj.func
    return inspect.iscoroutinefunction(obj) or (
        callable(obj) and inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004
    )


def _status_value(callback: NetverifyCallback | None) -> str | None:
    """The callback's ``verificationStatus`` as sent (an unknown value as is); None without one."""
    status = callback.verification_status if callback is not None else None
    if status is None:
        return None
    return str(getattr(status, "value", status))


def _handler_name(handler: object) -> str:
    return str(getattr(handler, "__qualname__", None) or type(handler).__qualname__)


def callback_router(
    handler: CallbackHandler | None = None,
    *,
    journal: CallbackJournal | None = None,
    path: str = "/netverify/callback",
    verifier: CallbackOriginVerifier | _Default | None = DEFAULT_VERIFIER,
    dedupe_size: int = 10_000,
    max_body_bytes: int = CALLBACK_MAX_BODY_BYTES,
    body_timeout: float = CALLBACK_BODY_TIMEOUT,
    name: str = "netverify_callback",
    include_in_schema: bool = True,
    event_hooks: Sequence[EventHook] | None = None,
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT,
) -> APIRouter:
    """An ``APIRouter`` with one ``POST path`` route that receives Jumio's ID Verification callbacks.

    For each request, in this order:

    1. the sender is checked with ``verifier`` (the direct peer address plus ``X-Forwarded-For``, used only
       from the verifier's ``trusted_proxies``): **403** when refused. The default accepts Jumio's published
       addresses; pass ``CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])`` to accept loopback (tests,
       the emulator), or None to accept everyone (only behind something that already checks);
    2. the body is read up to ``max_body_bytes`` (default and maximum 1 MiB): **413** when longer; and
       within ``body_timeout`` seconds in total (default 10), however the sender paces it: **408** (and the
       connection closed) when the deadline passes first, so that an allowed sender trickling a body
       cannot hold a worker. Nothing is parsed, recorded or remembered from a body that did not arrive;
    3. a body identical to one of the last ``dedupe_size`` accepted bodies (compared by SHA-256) is answered
       **200** ``{"status": "duplicate"}`` without running the handler again (``dedupe_size=0``: no
       memory). The memory is per process: with several workers, a repeat may reach another one;
    4. the body is parsed with :func:`~netverify_async.callbacks.parse_callback`: **400** with a JSON
       ``detail`` when it is not an ID Verification callback;
    5. with a ``journal``, ``await journal.record_callback(callback)`` stores it (committed and synced):
       **503** when the journal cannot, so that the sender knows the delivery failed and the body is not
       remembered as seen (a redelivery is recorded);
    6. the answer **200** ``{"status": "accepted"}`` is sent, and only then ``await handler(callback)``
       runs (a Starlette background task of the response).

    ``journal`` is a :class:`~netverify_async.SqliteJournal` (open it yourself, e.g. in the app's lifespan,
    and close it at shutdown; it may be the journal file of a batch running in another process) or any
    object with an async ``record_callback(callback)`` (:class:`~netverify_async._journal.CallbackJournal`;
    a custom :class:`~netverify_async.Journal` without it is refused here). With a journal the ``handler``
    is optional; without one it is required. What recording a callback does (settle an unknown outcome,
    store the result, flag a second scan, ignore a reference the journal does not hold) is described in
    :meth:`SqliteJournal.record_callback <netverify_async.SqliteJournal.record_callback>`.

    An exception from the handler is logged on the ``netverify_async.fastapi`` logger with its type and
    stack, but not its message, which might quote personal data. The body's digest is then forgotten, so a
    redelivery of the same body runs the handler again. Jumio has already had its 200 by then, so failed
    work is yours to retry; for long work, put the callback on a queue in the handler. A handler still
    running when the server shuts down is subject to the server's graceful-shutdown timeout.

    ``event_hooks`` (sync or async callables) receive a :class:`~netverify_async.CallbackHandled`
    event for each delivery, after its answer was decided and before it is sent (see
    ``docs/observability.md``; :class:`netverify_async.otel.OpenTelemetryHooks` is one). An ``async`` hook is
    cancelled after ``hook_timeout`` seconds (default 1), so a stuck hook cannot keep Jumio from its answer;
    a plain-function hook is called inline and must be quick.
    """
    hooks = check_event_hooks(event_hooks)
    hook_seconds = check_hook_timeout(hook_timeout)
    if handler is None and journal is None:
        raise ConfigurationError("callback_router: give a handler, a journal (journal=...), or both")
    if handler is not None and not _is_async_callable(handler):
        raise ConfigurationError(
            "handler: must be an async function (or object with an async __call__) taking a NetverifyCallback"
        )
    if isinstance(journal, (str, bytes, os.PathLike)):
        raise ConfigurationError(
            "journal: pass a journal object, e.g. SqliteJournal(path), opened and closed by your app"
        )
    if journal is not None and not _is_async_callable(getattr(journal, "record_callback", None)):
        raise ConfigurationError(
            f"journal: {type(journal).__name__} cannot learn from callbacks: it needs an async "
            "record_callback(callback) method (SqliteJournal has one)"
        )
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigurationError("path: must start with '/'")
    if isinstance(dedupe_size, bool) or not isinstance(dedupe_size, int) or dedupe_size < 0:
        raise ConfigurationError("dedupe_size: must be an integer >= 0")
    if (
        isinstance(max_body_bytes, bool)
        or not isinstance(max_body_bytes, int)
        or not 1 <= max_body_bytes <= CALLBACK_MAX_BODY_BYTES
    ):
        raise ConfigurationError(
            f"max_body_bytes: must be an integer from 1 to {CALLBACK_MAX_BODY_BYTES} (parse_callback's limit)"
        )
    if (
        isinstance(body_timeout, bool)
        or not isinstance(body_timeout, (int, float))
        or not math.isfinite(body_timeout)
        or body_timeout <= 0
    ):
        raise ConfigurationError("body_timeout: must be a finite number of seconds > 0")
    origin: CallbackOriginVerifier | None
    if verifier is DEFAULT_VERIFIER:
        origin = CallbackOriginVerifier()
    elif verifier is None or isinstance(verifier, CallbackOriginVerifier):
        origin = verifier
    else:
        raise ConfigurationError("verifier: must be a CallbackOriginVerifier or None")
    if origin is None:
        logger.warning("callback endpoint %s accepts callbacks from any address (verifier=None)", path)

    recent = _RecentBodies(dedupe_size)
    handler_name = _handler_name(handler)

    async def record(callback: NetverifyCallback, seen: _Delivery) -> bool:
        """Store the callback in the journal; False (logged) when the journal could not."""
        assert journal is not None
        try:
            outcome = await journal.record_callback(callback)
        except Exception as exc:
            logger.error(
                "callback for scan %s not recorded in the journal (%s); answered 503 so that it is sent again",
                callback.jumio_id_scan_reference,
                type(exc).__qualname__,
            )
            return False
        effect = str(getattr(getattr(outcome, "effect", None), "value", "recorded"))
        if effect == "duplicate_scan":
            logger.warning(
                "callback for scan %s: a second scan for a merchant reference of the journal "
                "(both are recorded, the item is flagged duplicate_scan)",
                callback.jumio_id_scan_reference,
            )
        else:
            logger.info("callback for scan %s: journal %s", callback.jumio_id_scan_reference, effect)
        seen.journal_effect = effect
        return True

    async def run_handler(callback: NetverifyCallback, digest: bytes) -> None:
        assert handler is not None
        try:
            await handler(callback)
        except Exception as exc:
            recent.discard(digest)
            stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
            logger.error(
                "callback handler %s raised %s for scan %s (message not logged; it may hold personal "
                "data); an identical redelivery will run it again\n%s",
                handler_name,
                type(exc).__qualname__,
                callback.jumio_id_scan_reference,
                stack,
            )

    async def receive_netverify_callback(request: Request) -> Response:
        if not hooks:
            return await handle(request, _Delivery())
        seen = _Delivery()
        started = anyio.current_time()
        response = await handle(request, seen)
        callback = seen.callback
        event = CallbackHandled(
            status_code=response.status_code,
            outcome=seen.outcome or _CALLBACK_OUTCOMES.get(response.status_code, "other"),
            duration=anyio.current_time() - started,
            verification_status=_status_value(callback),
            journal_effect=seen.journal_effect,
            scan_reference=callback.jumio_id_scan_reference if callback is not None else None,
        )
        await dispatch(tuple(hooks), event, hook_timeout=hook_seconds)
        return response

    async def handle(request: Request, seen: _Delivery) -> Response:
        if origin is not None:
            peer = request.client.host if request.client is not None else None
            forwarded_for = ", ".join(request.headers.getlist("x-forwarded-for")) or None
            try:
                await origin.verify_async(peer, forwarded_for)
            except CallbackOriginError as exc:
                logger.warning("callback refused on %s: %s", path, exc)
                return _json(403, {"detail": str(exc)})
        body: bytes | None = None
        try:
            with anyio.move_on_after(body_timeout) as deadline:
                body = await _read_capped(request, max_body_bytes)
        except ClientDisconnect:
            logger.info("callback sender disconnected before the body was complete")
            seen.outcome = "disconnected"
            return Response(status_code=400)
        if deadline.cancelled_caught:
            logger.warning(
                "callback refused on %s: body not complete within %g s (read deadline)", path, body_timeout
            )
            return JSONResponse(
                {"detail": f"the body did not arrive within {body_timeout:g} s"},
                status_code=408,
                headers={"Connection": "close"},
            )
        if body is None:
            logger.warning("callback refused on %s: body larger than %d bytes", path, max_body_bytes)
            return _json(413, {"detail": f"the body is larger than {max_body_bytes} bytes"})
        digest = hashlib.sha256(body).digest()
        if recent.seen(digest):
            logger.info("callback delivered again with an identical body; handler not run again")
            seen.outcome = "duplicate"
            return _json(200, {"status": "duplicate"})
        try:
            callback = parse_callback(body)
        except CallbackParseError as exc:
            logger.warning("callback refused on %s: %s", path, exc)
            return _json(400, {"detail": str(exc)})
        seen.callback = callback
        if journal is not None and not await record(callback, seen):
            return _json(503, {"detail": "the callback could not be stored; send it again"})
        recent.add(digest)
        logger.info(
            "callback accepted: scan %s, verification status %s",
            callback.jumio_id_scan_reference,
            getattr(callback.verification_status, "value", callback.verification_status),
        )
        if handler is None:
            return _json(200, {"status": "accepted"})
        return _json(200, {"status": "accepted"}, BackgroundTask(run_handler, callback, digest))

    router = APIRouter()
    router.add_api_route(
        path,
        receive_netverify_callback,
        methods=["POST"],
        name=name,
        include_in_schema=include_in_schema,
        response_model=None,
        summary="Receive a Jumio ID Verification callback",
        responses={
            200: {"description": "Accepted (or an identical body already accepted)"},
            400: {"description": "Not an ID Verification callback"},
            403: {"description": "The sender is not on the callback allowlist"},
            408: {"description": "The body did not arrive within the read deadline"},
            413: {"description": "The body is larger than the cap"},
            503: {"description": "The journal could not store the callback; send it again"},
        },
    )
    return router
