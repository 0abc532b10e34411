"""The emulator as a plain ASGI application (no framework on the hot path).

Routes (all answers carry ``X-Trackingid: <uuid4>`` and ``Server: Apache-Coyote/1.1``):

======  ==========================================  ==============================================
method  path                                        answer
======  ==========================================  ==============================================
POST    ``/api/netverify/v2/performNetverify``      200 receipt, 400 violations, 403, 413, 429
GET     ``/api/netverify/v2/scans/{ref}``           status: PENDING, then DONE or FAILED
GET     ``.../scans/{ref}/data``                    document, transaction and verification
GET     ``.../scans/{ref}/data/{part}``             one part: document, transaction, verification
GET     ``.../scans/{ref}/images``                  the list of stored images
GET     ``.../scans/{ref}/images/{classifier}``     the image bytes (front, back, face), with the
                                                    ``Content-Type`` they were uploaded with
GET     ``.../scans/{ref}/images/liveness/{n}``     a synthetic liveness image (scans with a face
                                                    image): JPEG for odd ``n``, PNG for even ones
DELETE  ``.../scans/{ref}``                         200, empty body; the scan is gone
GET     ``/api/netverify/v2/supportedIdTypes``      every country with PASSPORT, ID_CARD, DRIVING_LICENSE
GET     ``/api/netverify/v2/acceptedIdTypes``       ``accepted_id_types`` (default: the supported list)
any     ``/__emulator/...``                         admin: faults, stats, reset, scans, callbacks
======  ==========================================  ==============================================

An unknown scan gets Jumio's 404 body ``{"httpStatus":"404","message":"Not found: Scan not found for <ref>",
"requestURI":"<url>"}``. The two ID-type lists count as retrieval calls (rate limit, faults).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from functools import lru_cache
from typing import Any

import anyio

from .._constants import PERFORM_NETVERIFY_PATH, SCANS_PATH
from .._errors import ConfigurationError
from .._useragent import user_agent_problem
from ._callbacks import CallbackDispatcher
from ._config import EmulatorConfig, Faults, build_config
from ._state import EmulatorState, Scan, format_timestamp, id_type_catalog
from ._submit import SubmissionHandler, error_body

__all__ = ["ADMIN_PREFIX", "RATE_LIMITED_BODY", "EmulatorApp", "create_app"]

logger = logging.getLogger("netverify_async.emulator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

#: Prefix of the test-only admin endpoints.
ADMIN_PREFIX = "/__emulator/"
#: The body Jumio's gateway sends with a 429.
RATE_LIMITED_BODY = b'{"title":"Too Many Requests","status":429,"detail":"Request limit exceeded"}'

_JSON = b"application/json;charset=UTF-8"
# Returned by a handler that has already counted its request in the statistics.
_COUNTED = -1
_SERVER = (b"server", b"Apache-Coyote/1.1")
_SCANS_PREFIX = SCANS_PATH + "/"
_DATA_PARTS = ("document", "transaction", "verification")
_IMAGE_ROLES = ("front", "back", "face")
#: The ID-type lists: path -> (whether it is the accepted list, the key of its list)
_ID_TYPE_LISTS = {
    "/api/netverify/v2/supportedIdTypes": (False, "supportedIdTypes"),
    "/api/netverify/v2/acceptedIdTypes": (True, "acceptedIdTypes"),
}
_IMAGE_ACCEPT = frozenset({"image/jpeg", "image/png", "image/*", "*/*"})
_GATEWAY_PAGES = {
    502: b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>",
    503: b"<html><head><title>503 Service Unavailable</title></head>"
    b"<body><h1>503 Service Unavailable</h1></body></html>",
    504: b"<html><head><title>504 Gateway Time-out</title></head>"
    b"<body><h1>504 Gateway Time-out</h1></body></html>",
}


@lru_cache(maxsize=512)
def _user_agent_problem(value: str | None) -> str | None:
    return user_agent_problem(value)


def _media_types(value: bytes | None) -> list[str]:
    if value is None:
        return []
    return [part.split(b";", 1)[0].strip().lower().decode("latin-1") for part in value.split(b",")]


class _Exchange:
    """One request being answered."""

    __slots__ = ("body", "body_read", "headers", "kind", "receive", "request_uri", "scope", "send")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.headers: dict[bytes, bytes] = dict(scope["headers"])
        self.kind = ""
        self.request_uri = self.base_url + scope["path"]
        #: the request body once read ahead (see ``EmulatorApp._api``); None if the client left before its end
        self.body: bytes | None = None
        self.body_read = False

    @property
    def base_url(self) -> str:
        host = self.headers.get(b"host")
        if host is None:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}".encode()
        return f"{self.scope.get('scheme', 'http')}://{host.decode('latin-1')}"

    @property
    def client_ip(self) -> str:
        client = self.scope.get("client")
        return str(client[0]) if client else "unknown"


class EmulatorApp:
    """The ASGI application; ``state`` holds scans, counters and faults (see :meth:`set_faults`)."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.state = EmulatorState(self.config)
        self.callbacks = CallbackDispatcher(self.state)
        self.submissions = SubmissionHandler(self.state)
        credentials = f"{self.config.api_token}:{self.config.api_secret}".encode()
        self._expected_auth = b"Basic " + base64.b64encode(credentials)

    def __repr__(self) -> str:
        return f"EmulatorApp(api_token={self.config.api_token!r})"

    # -- public helpers --------------------------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.state.faults

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults and/or change some of their fields; returns the faults now in force."""
        new = (faults or self.state.faults).replace(**changes) if changes else (faults or Faults())
        self.state.set_faults(new)
        return new

    # -- ASGI ------------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets are not part of the API
            await send({"type": "websocket.close", "code": 1000})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "lifespan.startup":
            return
        try:
            async with anyio.create_task_group() as tasks, self.callbacks.running(tasks):
                await send({"type": "lifespan.startup.complete"})
                message = await receive()  # lifespan.shutdown
                tasks.cancel_scope.cancel()
        except Exception as exc:  # pragma: no cover - startup failure is reported to the server
            await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        ex = _Exchange(scope, receive, send)
        if path.startswith(ADMIN_PREFIX):
            await self._admin(ex, path[len(ADMIN_PREFIX) :].strip("/"))
            return
        method: str = scope["method"]
        status: int
        if path == PERFORM_NETVERIFY_PATH:
            if method == "POST":
                ex.kind = "submit"
                status = await self._api(ex, self._submit)
            else:
                status = await self._method_not_allowed(ex, b"POST")
        elif path.startswith(_SCANS_PREFIX):
            status = await self._scans(ex, method, path[len(_SCANS_PREFIX) :].strip("/").split("/"))
        elif path in _ID_TYPE_LISTS:
            if method == "GET":
                ex.kind = "retrieval"
                accepted, key = _ID_TYPE_LISTS[path]
                status = await self._api(ex, lambda e, a: self._id_types(e, accepted, key, a))
            else:
                status = await self._method_not_allowed(ex, b"GET")
        else:
            status = await self._json(ex, 404, error_body(404, "Not found", ex.request_uri))
        if status != _COUNTED:
            self.state.record_response(status, time.monotonic())

    async def _scans(self, ex: _Exchange, method: str, parts: list[str]) -> int:
        ref = parts[0]
        rest = parts[1:]
        if method == "DELETE" and not rest and ref:
            ex.kind = "delete"
            return await self._api(ex, lambda e, a: self._delete(e, ref, a))
        if method != "GET":
            return await self._method_not_allowed(ex, b"GET, DELETE" if not rest else b"GET")
        ex.kind = "retrieval"
        if not rest:
            return await self._api(ex, lambda e, a: self._status(e, ref, a))
        if rest[0] == "data" and (len(rest) == 1 or (len(rest) == 2 and rest[1] in _DATA_PARTS)):
            part = rest[1] if len(rest) == 2 else None
            return await self._api(ex, lambda e, a: self._data(e, ref, part, a))
        if rest == ["images"]:
            return await self._api(ex, lambda e, a: self._image_list(e, ref, a))
        if len(rest) == 2 and rest[0] == "images" and rest[1] in _IMAGE_ROLES:
            return await self._api(ex, lambda e, a: self._image(e, ref, rest[1], a), image=True)
        if len(rest) == 3 and rest[:2] == ["images", "liveness"]:
            number = rest[2]
            return await self._api(ex, lambda e, a: self._liveness_image(e, ref, number, a), image=True)
        return await self._json(ex, 404, error_body(404, "Not found", ex.request_uri))

    # -- the common path of every API call: latency, 403, 429, faults ----------------------------------------

    async def _api(
        self,
        ex: _Exchange,
        handler: Callable[[_Exchange, str | None], Awaitable[int]],
        *,
        image: bool = False,
    ) -> int:
        state = self.state
        faults = state.faults
        affected = ex.kind in faults.apply_to
        if affected and faults.latency[1] > 0:
            declared = ex.headers.get(b"content-length", b"")
            if ex.kind == "submit" and declared.isdigit() and int(declared) <= self.config.max_body_bytes:
                # The whole body arrives first, then the server takes its time: a client that gives up during
                # the wait does not undo the submission, which is processed (and the scan created) all the same.
                ex.body = await self._read_body(ex)
                ex.body_read = True
            await anyio.sleep(state.latency())
        problem = self._forbidden(ex, image=image)
        if problem is not None:
            if ex.kind == "submit":
                await self._read_body(ex, drain=True)
            return await self._json(ex, 403, error_body(403, f"Forbidden: {problem}", ex.request_uri))
        limiter = state.submit_limiter if ex.kind == "submit" else state.retrieval_limiter
        if limiter.windows:
            wait = limiter.try_admit(time.monotonic())
            if wait is not None:
                return await self._rate_limited(ex, wait, injected=False)
        action = state.next_action() if affected else None
        if action == "429":
            return await self._rate_limited(ex, 1.0, injected=True)
        if action is not None and action[0] == "5" and (action == "503" or faults.error_phase == "before"):
            if ex.kind == "submit":
                await self._read_body(ex, drain=True)
            return await self._injected_error(ex, int(action))
        return await handler(ex, action)

    def _forbidden(self, ex: _Exchange, *, image: bool) -> str | None:
        headers = ex.headers
        auth = headers.get(b"authorization")
        if auth is None:
            return "no Basic authentication"
        if not hmac.compare_digest(auth, self._expected_auth) and not self._basic_auth_matches(auth):
            return "invalid Basic authentication"
        ua = headers.get(b"user-agent")
        problem = _user_agent_problem(None if ua is None else ua.decode("latin-1"))
        if problem is not None:
            return problem
        accept = headers.get(b"accept")
        if image:
            if accept is not None and not _IMAGE_ACCEPT.intersection(_media_types(accept)):
                return "the Accept header must allow image/jpeg or image/png"
        elif "application/json" not in _media_types(accept):
            return "the Accept header must be application/json"
        if ex.kind == "submit":
            if _media_types(headers.get(b"content-type")) != ["application/json"]:
                return "the Content-Type header must be application/json"
            if b"content-length" not in headers or b"transfer-encoding" in headers:
                return "the Content-Length header is required (no chunked uploads)"
        return None

    def _basic_auth_matches(self, header: bytes) -> bool:
        scheme, _, encoded = header.strip().partition(b" ")
        if scheme.lower() != b"basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            return False
        token, sep, secret = decoded.partition(b":")
        config = self.config
        return bool(sep) and (
            hmac.compare_digest(token, config.api_token.encode())
            & hmac.compare_digest(secret, config.api_secret.encode())
        )

    async def _rate_limited(self, ex: _Exchange, wait: float, *, injected: bool) -> int:
        if injected:
            self.state.note_fault("429")
        else:
            self.state.note_fault("rate_limited")
        extra: Headers = []
        if self.state.faults.retry_after:
            extra.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        if ex.kind == "submit":
            await self._read_body(ex, drain=True)
        return await self._send(ex, 429, RATE_LIMITED_BODY, b"application/json", extra)

    async def _injected_error(self, ex: _Exchange, status: int) -> int:
        self.state.note_fault(str(status))
        if status == 500:
            body = error_body(500, "Internal Server Error", ex.request_uri)
            return await self._json(ex, 500, body)
        extra: Headers = []
        if status == 503:
            # the front door refusing before processing says when to come back; a client takes a bare 503 (what
            # gateways answer after an upstream reset) as a request that may have been processed
            extra.append((b"retry-after", b"1"))
        return await self._send(ex, status, _GATEWAY_PAGES[status], b"text/html", extra)

    # -- endpoint handlers -----------------------------------------------------------------------------------

    async def _submit(self, ex: _Exchange, action: str | None) -> int:
        declared = ex.headers.get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.config.max_body_bytes:
            body = error_body(413, "Payload Too Large", ex.request_uri)
            return await self._send(ex, 413, body, _JSON, [(b"connection", b"close")])
        body_bytes = await self._read_body(ex)
        if body_bytes is None:  # the client went away
            return 499
        result = self.submissions.handle(
            body_bytes, client_ip=ex.client_ip, base_url=ex.base_url, request_uri=ex.request_uri
        )
        if result.scan is not None:
            # the stored scan: its outcome may have changed on the way in (an ID type the account does not accept)
            self.callbacks.schedule(self.state.scans.get(result.scan.reference, result.scan))
            aimed = self.state.take_reference_action(result.scan.merchant_reference)
            if aimed is not None:
                action = aimed
                if aimed[0] == "5":  # always after processing: the scan exists
                    return await self._injected_error(ex, int(aimed))
        return await self._finish(ex, result.status, result.body, action)

    def _find(self, ref: str) -> Scan | None:
        return self.state.scans.get(ref)

    async def _not_found(self, ex: _Exchange, ref: str, action: str | None) -> int:
        body = error_body(404, f"Not found: Scan not found for {ref}", ex.request_uri)
        return await self._finish(ex, 404, body, action)

    async def _status(self, ex: _Exchange, ref: str, action: str | None) -> int:
        scan = self._find(ref)
        if scan is None:
            return await self._not_found(ex, ref, action)
        body = f'{{"timestamp":"{format_timestamp()}","scanReference":"{ref}","status":"{scan.status()}"}}'
        return await self._finish(ex, 200, body.encode(), action)

    async def _data(self, ex: _Exchange, ref: str, part: str | None, action: str | None) -> int:
        from ._outcomes import scan_data

        scan = self._find(ref)
        if scan is None:
            return await self._not_found(ex, ref, action)
        data = scan_data(scan, format_timestamp(), scan.status())
        if part is not None:
            section = data.get(part, {})
            data = {"timestamp": data["timestamp"], "scanReference": ref, **section}
        return await self._finish(ex, 200, json.dumps(data, separators=(",", ":")).encode(), action)

    async def _image_list(self, ex: _Exchange, ref: str, action: str | None) -> int:
        scan = self._find(ref)
        if scan is None:
            return await self._not_found(ex, ref, action)
        images = [{"classifier": role, "href": scan.image_url(role)} for role in sorted(scan.images)]
        body: dict[str, Any] = {"timestamp": format_timestamp(), "scanReference": ref, "images": images}
        if scan.liveness_count:
            body["livenessImages"] = scan.liveness_urls()
        return await self._finish(ex, 200, json.dumps(body, separators=(",", ":")).encode(), action)

    async def _image(self, ex: _Exchange, ref: str, role: str, action: str | None) -> int:
        scan = self._find(ref)
        if scan is None or role not in scan.images:
            return await self._not_found(ex, ref, action)
        data, mime = scan.images[role]
        return await self._finish(ex, 200, data, action, content_type=mime.encode())

    async def _liveness_image(self, ex: _Exchange, ref: str, number: str, action: str | None) -> int:
        scan = self._find(ref)
        valid = number.isascii() and number.isdigit() and not number.startswith("0")
        if scan is None or not valid or not 1 <= int(number) <= scan.liveness_count:
            return await self._not_found(ex, ref, action)
        from ._liveness import liveness_frame

        data, mime = liveness_frame(int(number))
        return await self._finish(ex, 200, data, action, content_type=mime.encode())

    async def _id_types(self, ex: _Exchange, accepted: bool, key: str, action: str | None) -> int:
        body = {"timestamp": format_timestamp(), key: id_type_catalog(self.config, accepted=accepted)}
        return await self._finish(ex, 200, json.dumps(body, separators=(",", ":")).encode(), action)

    async def _delete(self, ex: _Exchange, ref: str, action: str | None) -> int:
        if not self.state.delete_scan(ref):
            return await self._not_found(ex, ref, action)
        return await self._finish(ex, 200, b"", action)

    async def _method_not_allowed(self, ex: _Exchange, allow: bytes) -> int:
        body = error_body(405, "Method Not Allowed", ex.request_uri)
        return await self._send(ex, 405, body, _JSON, [(b"allow", allow)])

    # -- answering -------------------------------------------------------------------------------------------

    async def _finish(
        self, ex: _Exchange, status: int, body: bytes, action: str | None, *, content_type: bytes = _JSON
    ) -> int:
        """Answer normally, unless an after-processing fault replaces the answer."""
        if action is None or action == "ok":
            return await self._send(ex, status, body, content_type)
        if action[0] == "5":  # 500/502/504 after processing
            return await self._injected_error(ex, int(action))
        self.state.note_fault(action)
        faults = self.state.faults
        if action == "drop":
            # Counted before the connection goes, so that a client that sees the failure also sees it counted.
            self.state.record_response(0, time.monotonic())
            await self._drop(ex)
            return _COUNTED
        # slow
        if faults.slow_mode == "delay" or not body:
            await anyio.sleep(faults.slow_seconds)
            return await self._send(ex, status, body, content_type)
        await self._start(ex, status, content_type, len(body))
        gap = faults.slow_seconds / len(body)
        for index in range(len(body)):
            await anyio.sleep(gap)
            more = index + 1 < len(body)
            await ex.send({"type": "http.response.body", "body": body[index : index + 1], "more_body": more})
        return status

    async def _drop(self, ex: _Exchange) -> None:
        """Close the connection without sending a single byte of response."""
        transport = getattr(getattr(ex.send, "__self__", None), "transport", None)
        if transport is not None and hasattr(transport, "abort"):
            # uvicorn: the send callable is a method of the request cycle that owns the transport.
            transport.abort()
            with anyio.move_on_after(1.0):
                while (await ex.receive())["type"] != "http.disconnect":
                    pass
            return
        # Another server: start a response and abandon it, which makes the server close the connection.
        await self._start(ex, 200, _JSON, 1)
        raise ConnectionAbortedError("emulator fault: connection dropped")

    async def _start(
        self,
        ex: _Exchange,
        status: int,
        content_type: bytes,
        length: int,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        headers: Headers = [
            (b"content-type", content_type),
            (b"content-length", str(length).encode()),
            (b"x-trackingid", str(uuid.uuid4()).encode()),
            _SERVER,
        ]
        headers.extend(extra)
        await ex.send({"type": "http.response.start", "status": status, "headers": headers})

    async def _send(
        self,
        ex: _Exchange,
        status: int,
        body: bytes,
        content_type: bytes,
        extra: Iterable[tuple[bytes, bytes]] = (),
    ) -> int:
        await self._start(ex, status, content_type, len(body), extra)
        await ex.send({"type": "http.response.body", "body": body, "more_body": False})
        return status

    async def _json(self, ex: _Exchange, status: int, body: bytes) -> int:
        return await self._send(ex, status, body, _JSON)

    async def _read_body(self, ex: _Exchange, *, drain: bool = False) -> bytes | None:
        """The whole request body (None if the client left, or when only draining)."""
        if ex.body_read:  # read ahead already
            return None if drain else ex.body
        chunks: list[bytes] = []
        size = 0
        limit = self.config.max_body_bytes
        while True:
            message = await ex.receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if not drain and size <= limit:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if drain or size > limit:
            return None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- admin -----------------------------------------------------------------------------------------------

    async def _admin(self, ex: _Exchange, name: str) -> None:
        token = self.config.admin_token
        if token is not None:
            given = ex.headers.get(b"x-emulator-admin-token", b"")
            if not hmac.compare_digest(given, token.encode()):
                await self._json(ex, 403, error_body(403, "Forbidden: admin token required", ex.request_uri))
                return
        method = ex.scope["method"]
        state = self.state
        payload: Any
        if name == "faults" and method == "GET":
            payload = state.faults.to_dict()
        elif name == "faults" and method in ("POST", "PUT", "DELETE"):
            body = await self._read_body(ex) if method != "DELETE" else b"{}"
            try:
                changes = json.loads(body or b"{}")
                if not isinstance(changes, dict):
                    raise ConfigurationError("the body must be a JSON object of fault settings")
                base = state.faults if method == "POST" else Faults()
                payload = self.set_faults(Faults.from_dict(changes, base=base)).to_dict()
            except (ValueError, ConfigurationError) as exc:
                await self._json(ex, 400, error_body(400, f"Bad Request: {exc}", ex.request_uri))
                return
        elif name == "stats" and method == "GET":
            payload = state.snapshot().to_dict()
        elif name == "reset" and method == "POST":
            state.reset()
            payload = {"reset": True}
        elif name == "scans" and method == "GET":
            payload = {"scans": state.scan_summaries()}
        elif name == "callbacks" and method == "GET":
            payload = {"callbacks": [r.to_dict() for r in state.callback_log()]}
        elif name == "health" and method == "GET":
            payload = {"ok": True}
        else:
            await self._json(ex, 404, error_body(404, "Not found", ex.request_uri))
            return
        await self._json(ex, 200, json.dumps(payload, separators=(",", ":")).encode())


def create_app(config: EmulatorConfig | None = None, **settings: Any) -> EmulatorApp:
    """The emulator's ASGI application, from a config and/or field overrides (see :func:`run_emulator`).

    Serve it with any ASGI server that runs the lifespan protocol (callbacks are sent from the lifespan's task
    group), e.g. ``uvicorn.run(create_app(), port=8080)``.
    """
    return EmulatorApp(build_config(config, **settings))
