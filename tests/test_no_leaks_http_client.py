"""A failed call hands the caller no secret, no personal data and no HTTP request object.

``tests/test_no_leaks.py`` searches the *text* of logs, messages and reprs. This module searches the *objects*:
every failure path of the send path (connection refused, reset mid-body, dropped after the body, 500, 502,
302, 400, 403, 429 until the attempts run out, a timeout, a garbage status line, and a caller's httpx client
whose transport raises each httpx exception) runs with ``transport="httpx"``, ``transport="aiohttp"`` and a
caller-supplied ``http_client``; then everything reachable from the raised error is walked (``__cause__``,
``__context__``, ``args``, attributes, slots, containers, closures, bytes and strings; not traceback frames) and
must hold none of the sentinels (the API secret, the Base64 of the Basic credentials, the personal values, the
image bytes) and no ``httpx.Request`` (which carries the ``Authorization`` header and the whole body).

Frames are held to a weaker rule: no local variable named like ``headers`` or ``authorization`` in a frame of a
``netverify_async`` module on the traceback may hold the Basic credentials.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import re
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from types import (
    BuiltinFunctionType,
    CodeType,
    FrameType,
    FunctionType,
    MethodType,
    ModuleType,
    TracebackType,
)
from typing import Any

import anyio
import httpx
import pytest
from _misbehaving import (
    Behaviour,
    Reply,
    answer,
    cut_off,
    garbage_status_line,
    hang_up,
    never_answer,
    scan_for,
    serve,
)
from _support import (
    CALLER_MODES,
    TRANSPORT_MODES,
    RequestFactory,
    SleepRecorder,
    client_in_mode,
    closed_port_url,
    in_modes,
)

from netverify_async import Image, NetverifyClient, NetverifyError, NetverifyRequest, RetryPolicy

pytestmark = pytest.mark.anyio


TOKEN = "token"
SECRET = "secret-sentinel-XYZ"
BASIC = base64.b64encode(f"{TOKEN}:{SECRET}".encode()).decode()
FIRST_NAME = "SENTINELNAME"
LAST_NAME = "SENTINELSURNAME"
NUMBER = "XK99117733"
DOB = dt.date(1961, 7, 19)
IMAGE_MARKER = b"IMG-SENTINEL-c0ffee-5a5a"


def _marked_jpeg() -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.new("RGB", (640, 420), (180, 200, 190)).save(out, "JPEG", quality=80, comment=IMAGE_MARKER)
    return out.getvalue()


IMAGE = _marked_jpeg()
#: The same image with megabytes of trailing bytes: an upload that a cut connection interrupts midway.
BIG_IMAGE = IMAGE + bytes(6_000_000)


def _sentinels() -> dict[str, str]:
    image_b64 = base64.b64encode(IMAGE).decode()
    found = {
        "api secret": SECRET,
        "basic credentials": BASIC,
        "first name": FIRST_NAME,
        "last name": LAST_NAME,
        "document number": NUMBER,
        "dob": DOB.isoformat(),
        "image marker": IMAGE_MARKER.decode(),
        "image base64": image_b64[len(image_b64) // 2 : len(image_b64) // 2 + 40],
    }
    for shift in range(3):  # the marker's Base64 at each alignment it can have inside the image's Base64
        encoded = base64.b64encode(b"\0" * shift + IMAGE_MARKER).decode()
        found[f"image marker base64 #{shift}"] = encoded[4:-4]
    return found


SENTINELS = _sentinels()
SENTINEL_BYTES = {name: value.encode() for name, value in SENTINELS.items()}

# -- the walk -----------------------------------------------------------------------------------------------------

#: Never entered: code and interpreter machinery (a module would lead to everything).
_OPAQUE = (type, ModuleType, FrameType, TracebackType, CodeType, BuiltinFunctionType)
_MAX_OBJECTS = 200_000


def _children(obj: object) -> Iterator[tuple[str, object]]:
    if isinstance(obj, BaseException):
        yield ".__cause__", obj.__cause__
        yield ".__context__", obj.__context__
        yield ".args", obj.args
        yield ".exceptions", getattr(obj, "exceptions", None)
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield f"[key {key!r:.40}]", key
            yield f"[{key!r:.40}]", value
        return
    if isinstance(obj, (list, tuple, set, frozenset, deque)):
        for index, item in enumerate(obj):
            yield f"[{index}]", item
        return
    if isinstance(obj, MethodType):
        yield ".__self__", obj.__self__
        yield ".__func__", obj.__func__
        return
    if isinstance(obj, FunctionType):
        for index, cell in enumerate(obj.__closure__ or ()):
            try:
                yield f".<closure {index}>", cell.cell_contents
            except ValueError:  # an empty cell
                pass
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        return
    if isinstance(obj, functools.partial):
        yield ".func", obj.func
        yield ".args", obj.args
        yield ".keywords", obj.keywords
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        for name, value in attributes.items():
            yield f".{name}", value
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__"):
                try:
                    yield f".{name}", getattr(obj, name)
                except AttributeError:
                    pass


def walk(root: object, root_name: str = "error") -> Iterator[tuple[str, object]]:
    """Every object reachable from ``root`` (depth first), with a path naming how it was reached."""
    seen: set[int] = set()
    keep_alive: list[object] = []  # so that an id is never reused by a temporary during the walk
    stack: list[tuple[str, object]] = [(root_name, root)]
    while stack:
        path, obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        keep_alive.append(obj)
        assert len(seen) <= _MAX_OBJECTS, f"the error reaches more than {_MAX_OBJECTS} objects (via {path})"
        yield path, obj
        if isinstance(obj, (str, bytes, bytearray, memoryview, int, float, complex, dt.date, *_OPAQUE)):
            continue
        stack.extend((path + step, child) for step, child in _children(obj))


def _found_in(obj: object, wanted: dict[str, str]) -> list[str]:
    if isinstance(obj, str):
        return [name for name, value in wanted.items() if value in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        return [name for name, value in wanted.items() if value.encode() in data]
    return []


def object_leaks(error: BaseException) -> list[str]:
    """What is wrong with everything reachable from ``error``: sentinels and request objects."""
    leaks = []
    for path, obj in walk(error):
        if isinstance(obj, httpx.Request):
            leaks.append(f"an httpx.Request at {path}")
        if isinstance(obj, dt.date) and not isinstance(obj, dt.datetime) and obj == DOB:
            leaks.append(f"the date of birth at {path}")
        leaks.extend(f"{name} at {path}" for name in _found_in(obj, SENTINELS))
    return leaks


_HEADERISH = re.compile(r"header|authori", re.IGNORECASE)


def frame_leaks(error: BaseException) -> list[str]:
    """Locals named like headers/authorization in library frames of the tracebacks that hold the credentials."""
    leaks = []
    exceptions = [obj for _, obj in walk(error) if isinstance(obj, BaseException)]
    for exc in exceptions:
        tb = exc.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            module = str(frame.f_globals.get("__name__", ""))
            if module == "netverify_async" or module.startswith("netverify_async."):
                for name, value in frame.f_locals.items():
                    if not _HEADERISH.search(name):
                        continue
                    for path, obj in walk(value, name):
                        if _found_in(obj, {"basic credentials": BASIC}):
                            leaks.append(
                                f"{module}.{frame.f_code.co_name}: local {path} holds the credentials"
                            )
            tb = tb.tb_next
    return leaks


def assert_leaks_nothing(error: BaseException) -> None:
    leaks = object_leaks(error) + frame_leaks(error)
    assert not leaks, f"{type(error).__name__}: " + "; ".join(dict.fromkeys(leaks))


# -- the check finds what it looks for ---------------------------------------------------------------------------


def _careless_request() -> httpx.Request:
    body = b'{"firstName": "%s", "frontsideImage": "%s"}' % (FIRST_NAME.encode(), base64.b64encode(IMAGE))
    return httpx.Request(
        "POST", "http://127.0.0.1:9/x", headers={"Authorization": f"Basic {BASIC}"}, content=body
    )


def test_the_walk_finds_a_request_a_secret_and_personal_data_hidden_inside_an_error() -> None:
    try:
        try:
            raise httpx.ReadError("lost", request=_careless_request())
        except httpx.ReadError:
            raise NetverifyError("wrapped") from None  # __cause__ hidden, __context__ still set
    except NetverifyError as exc:
        hidden_request = exc
    leaks = object_leaks(hidden_request)
    assert any(leak.startswith("an httpx.Request at error.__context__") for leak in leaks), leaks
    names = {leak.split(" at ")[0] for leak in leaks}
    assert {"basic credentials", "first name", "image base64"} <= names, names
    assert any(name.startswith("image marker base64") for name in names), names

    with_attributes = NetverifyError("oops")
    with_attributes.details = {"nested": [functools.partial(print, DOB)], "raw": IMAGE}  # type: ignore[attr-defined]
    found = " ".join(object_leaks(with_attributes))
    assert "the date of birth at error.details['nested'][0].args[0]" in found
    assert "image marker at error.details['raw']" in found


def test_the_frame_check_finds_credentials_in_a_library_frame_only() -> None:
    source = "def send(value):\n    request_headers = {'Authorization': 'Basic ' + value}\n    raise ValueError('x')\n"
    errors = []
    for module in ("netverify_async._leaky", "some_other_library"):
        namespace: dict[str, Any] = {"__name__": module}
        exec(compile(source, f"<{module}>", "exec"), namespace)
        try:
            namespace["send"](BASIC)
        except ValueError as exc:
            errors.append(exc)
    assert frame_leaks(errors[0]) == [
        "netverify_async._leaky.send: local request_headers['Authorization'] holds the credentials"
    ]
    assert frame_leaks(errors[1]) == []  # frames of other libraries are not the library's to clean


# -- the failure paths --------------------------------------------------------------------------------------------

#: name -> (server behaviour, or None for a closed port; whether the upload is large)
FAILURES: dict[str, tuple[Behaviour | None, bool]] = {
    "connect-refused": (None, False),
    "reset-mid-body": (cut_off(after_body_bytes=256 * 1024, connections=10**6), True),
    "dropped-after-body": (hang_up(), False),
    "500": (answer(500), False),
    "502": (answer(502), False),
    "302": (answer(Reply(302, (("Location", "http://127.0.0.1:9/elsewhere"),))), False),
    "400": (answer(400), False),
    "403": (answer(403), False),
    "429-exhausted": (answer(Reply(429, (("Retry-After", "0"),))), False),
    "timeout": (never_answer(), False),
    "garbage-status-line": (garbage_status_line(), False),
}

POLICY = RetryPolicy(max_attempts=2, attempt_timeout=3, connect_timeout=1, deadline=8)
#: For the server that never answers: each attempt gives up after 100 ms.
IMPATIENT = RetryPolicy(max_attempts=2, attempt_timeout=0.1, connect_timeout=1, deadline=8)


def personal_request(make_request: RequestFactory, reference: str, image: bytes = IMAGE) -> NetverifyRequest:
    return make_request(
        reference,
        frontside_image=Image.from_bytes(image),
        first_name=FIRST_NAME,
        last_name=LAST_NAME,
        number=NUMBER,
        dob=DOB,
    )


def leak_client(
    base_url: str, transport: str, http_client: httpx.AsyncClient | None = None, **options: Any
) -> AbstractAsyncContextManager[NetverifyClient]:
    params: dict[str, Any] = {
        "api_token": TOKEN,
        "api_secret": SECRET,
        "retrieval_rate_limit": None,
        "retry": POLICY,
        "sleep": SleepRecorder(),
        "preflight": False,
    }
    if http_client is not None:
        params["http_client"] = http_client
    params.update(options)
    return client_in_mode(base_url, transport, **params)


async def failures_of(client: NetverifyClient, request: NetverifyRequest) -> list[NetverifyError]:
    """The typed errors of a submission and of a retrieval call; a call that succeeds fails the test."""
    errors = []
    for call in (client.perform_netverify(request), client.scan_status(scan_for("leak"))):
        with anyio.fail_after(10):
            try:
                result = await call
            except NetverifyError as exc:
                errors.append(exc)
            else:
                raise AssertionError(f"expected a typed error, got {result!r}")
    return errors


@in_modes(*TRANSPORT_MODES, *CALLER_MODES)
@pytest.mark.parametrize("failure", list(FAILURES))
async def test_a_failed_call_hands_back_no_secret_personal_data_or_http_request(
    mode: tuple[str, str], make_request: RequestFactory, failure: str
) -> None:
    behaviour, big = FAILURES[failure]
    request = personal_request(make_request, f"leak-{failure}", BIG_IMAGE if big else IMAGE)
    policy = IMPATIENT if failure == "timeout" else POLICY
    if behaviour is None:
        async with leak_client(closed_port_url(), mode[1], retry=policy) as client:
            errors = await failures_of(client, request)
    else:
        async with serve(behaviour, receive_buffer=4096 if big else None) as server:
            async with leak_client(server.base_url, mode[1], retry=policy) as client:
                errors = await failures_of(client, request)
    for error in errors:
        assert_leaks_nothing(error)


HTTPX_FAILURES = [
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.ReadTimeout,
    httpx.RemoteProtocolError,
    httpx.LocalProtocolError,
]


@pytest.mark.both_loops
@pytest.mark.parametrize("failure", HTTPX_FAILURES, ids=lambda exc: exc.__name__)
async def test_an_httpx_exception_from_a_caller_client_reaches_the_caller_without_its_request(
    make_request: RequestFactory, failure: type[httpx.TransportError]
) -> None:
    raised: list[httpx.TransportError] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raised.append(failure("the transport failed", request=request))
        raise raised[-1]

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        async with leak_client("http://127.0.0.1:9", "caller", http_client=http) as client:
            errors = await failures_of(client, personal_request(make_request, "leak-mock"))
    assert raised, "the mock transport was never called"
    for error in errors:
        assert_leaks_nothing(error)
