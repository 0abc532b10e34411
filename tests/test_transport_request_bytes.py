"""AiohttpTransport over real loopback HTTP (the emulator): ``request_bytes`` answers like the httpx interface,
and both map failures by when they happened (never sent vs. maybe received)."""

from __future__ import annotations

import base64
import io
import json
import random
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from netverify_async._constants import PERFORM_NETVERIFY_PATH, SCANS_PATH
from netverify_async._transport import _STREAM_ABOVE, AiohttpTransport
from netverify_async.emulator._samples import API_HEADERS, submission_body

pytestmark = pytest.mark.anyio

TIMEOUT = httpx.Timeout(10.0).as_dict()


@pytest.fixture
async def transport() -> AsyncIterator[AiohttpTransport]:
    t = AiohttpTransport(ssl_context=ssl.create_default_context(), limits=httpx.Limits(max_connections=4))
    yield t
    await t.aclose()


def _headers(emu: Any) -> dict[str, str]:
    token = base64.b64encode(f"{emu.api_token}:{emu.api_secret}".encode()).decode("ascii")
    return {**API_HEADERS, "Authorization": f"Basic {token}", "Content-Type": "application/json"}


def _noise_jpeg(side: int) -> bytes:
    from PIL import Image as PILImage

    out = io.BytesIO()
    PILImage.frombytes("RGB", (side, side), random.Random(side).randbytes(side * side * 3)).save(
        out, "JPEG", quality=95
    )
    return out.getvalue()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_request_bytes_returns_the_same_answer_as_the_httpx_interface(
    emulator: Any, transport: AiohttpTransport
) -> None:
    url = emulator.base_url + PERFORM_NETVERIFY_PATH
    body = json.dumps(submission_body("rb-1")).encode()

    raw = await transport.request_bytes(
        "POST", url, _headers(emulator), body, timeout=TIMEOUT, max_bytes=4096
    )
    request = httpx.Request(
        "POST", url, headers=_headers(emulator), content=body, extensions={"timeout": TIMEOUT}
    )
    response = await transport.handle_async_request(request)
    via_httpx = b"".join([chunk async for chunk in response.aiter_raw()])
    await response.aclose()

    assert raw.status_code == response.status_code == 200
    assert set(json.loads(raw.body)) == set(json.loads(via_httpx)) >= {"jumioIdScanReference", "timestamp"}
    assert httpx.Headers(raw.headers)["content-type"].startswith("application/json")
    assert emulator.stats.scans_by_merchant_reference["rb-1"]


async def test_request_bytes_stops_reading_past_max_bytes(emulator: Any, transport: AiohttpTransport) -> None:
    image = _noise_jpeg(900)  # over 1 MB: uploaded in slices, and read back in several chunks
    body = json.dumps(submission_body("rb-big", frontsideImage=image)).encode()
    assert len(body) > _STREAM_ABOVE
    submit = emulator.base_url + PERFORM_NETVERIFY_PATH
    answer = await transport.request_bytes(
        "POST", submit, _headers(emulator), body, timeout=TIMEOUT, max_bytes=4096
    )
    reference = json.loads(answer.body)["jumioIdScanReference"]
    url = f"{emulator.base_url}{SCANS_PATH}/{reference}/images/front"
    headers = {**_headers(emulator), "Accept": "image/jpeg"}

    full = await transport.request_bytes("GET", url, headers, None, timeout=TIMEOUT, max_bytes=len(image))
    cut = await transport.request_bytes("GET", url, headers, None, timeout=TIMEOUT, max_bytes=1000)
    again = await transport.request_bytes("GET", url, headers, None, timeout=TIMEOUT, max_bytes=len(image))

    assert full.status_code == cut.status_code == again.status_code == 200
    assert full.body == again.body == image  # the sliced upload arrived intact
    assert 1000 < len(cut.body) < len(image)  # longer than max_bytes: the caller's signal "too large"


async def test_refused_connection_is_a_connect_error_on_both_paths(transport: AiohttpTransport) -> None:
    url = f"http://127.0.0.1:{_closed_port()}{PERFORM_NETVERIFY_PATH}"
    with pytest.raises(httpx.ConnectError):
        await transport.request_bytes("POST", url, {}, b"{}", timeout=TIMEOUT, max_bytes=1024)
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(httpx.Request("POST", url, content=b"{}"))


async def test_connection_dropped_after_the_body_is_a_protocol_error_not_a_connect_error(
    emulator: Any, transport: AiohttpTransport
) -> None:
    emulator.set_faults(sequence=["drop", "drop"])
    url = emulator.base_url + PERFORM_NETVERIFY_PATH
    body = json.dumps(submission_body("rb-drop")).encode()
    with pytest.raises(httpx.RemoteProtocolError) as raw_info:
        await transport.request_bytes("POST", url, _headers(emulator), body, timeout=TIMEOUT, max_bytes=4096)
    with pytest.raises(httpx.RemoteProtocolError):
        await transport.handle_async_request(
            httpx.Request(
                "POST", url, headers=_headers(emulator), content=body, extensions={"timeout": TIMEOUT}
            )
        )
    assert not isinstance(raw_info.value, httpx.ConnectError)
    assert len(emulator.stats.scans_by_merchant_reference["rb-drop"]) == 2  # the server did process both


@pytest.mark.parametrize(
    ("slow_mode", "phase"),
    [
        ("delay", "waiting for the response"),  # the answer comes only after 5 s
        ("drip", "reading the response body"),  # the head at once, the body a byte at a time over 5 s
    ],
)
async def test_total_running_out_after_sending_is_the_builtin_timeout(
    emulator: Any, transport: AiohttpTransport, slow_mode: str, phase: str
) -> None:
    # the total bound of 0.5 s ends the exchange first. The request was sent, so this is not an httpx connect
    # error (which would mean "never sent")
    emulator.set_faults(sequence=["slow"], slow_seconds=5.0, slow_mode=slow_mode)
    url = emulator.base_url + PERFORM_NETVERIFY_PATH
    body = json.dumps(submission_body(f"rb-total-{slow_mode}")).encode()
    with pytest.raises(TimeoutError) as info:
        await transport.request_bytes(
            "POST", url, _headers(emulator), body, timeout=TIMEOUT, max_bytes=4096, total=0.5
        )
    assert not isinstance(info.value, httpx.HTTPError)
    assert phase in str(info.value)


async def test_pool_timeout_inside_a_longer_total_is_a_connect_timeout(emulator: Any) -> None:
    # one connection, held by a slow request: the second request waits for it past its pool timeout (0.3 s, well
    # inside its total of 5 s) and never sends anything, which the error says
    import anyio

    emulator.set_faults(sequence=["slow"], slow_seconds=2.0)
    url = emulator.base_url + PERFORM_NETVERIFY_PATH
    single = AiohttpTransport(ssl_context=ssl.create_default_context(), limits=httpx.Limits(max_connections=1))
    short_pool = httpx.Timeout(10.0, pool=0.3).as_dict()
    try:
        async with anyio.create_task_group() as tg:
            first = json.dumps(submission_body("rb-hold")).encode()
            tg.start_soon(
                lambda: single.request_bytes(
                    "POST", url, _headers(emulator), first, timeout=TIMEOUT, max_bytes=4096
                )
            )
            with anyio.fail_after(10):
                # until the first request is being held (answered in 2 s) on the only connection
                while emulator.stats.faults_injected.get("slow", 0) < 1:
                    await anyio.sleep(0.01)
            second = json.dumps(submission_body("rb-wait")).encode()
            with pytest.raises(httpx.ConnectTimeout):
                await single.request_bytes(
                    "POST", url, _headers(emulator), second, timeout=short_pool, max_bytes=4096, total=5.0
                )
    finally:
        await single.aclose()
    assert "rb-wait" not in emulator.stats.scans_by_merchant_reference


async def test_upload_slices_cover_the_body_and_hand_the_loop_back_between_them() -> None:
    import anyio

    from netverify_async._transport import _UPLOAD_CHUNK, _slices

    body = random.Random(3).randbytes(3 * _UPLOAD_CHUNK + 17)
    other_task_steps: list[int] = []
    received: list[bytes] = []

    async def other_task() -> None:
        for _ in range(100):
            other_task_steps.append(len(received))
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(other_task)
        await anyio.sleep(0)
        async for piece in _slices(body):
            received.append(bytes(piece))
        tg.cancel_scope.cancel()

    assert b"".join(received) == body
    assert [len(piece) for piece in received] == [_UPLOAD_CHUNK] * 3 + [17]
    # the other task ran while the body was being sliced: between slices 1, 2, 3 and 4
    assert {1, 2, 3} <= set(other_task_steps)


def test_answer_headers_are_keyed_in_lower_case_and_repeats_joined_like_httpx() -> None:
    from netverify_async._client import _header_dict

    raw = (
        (b"Content-Type", b"application/json"),
        (b"X-TrackingId", b"abc-123"),
        (b"Set-Cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"X-Latin", "caf\u00e9".encode("latin-1")),
    )
    found = _header_dict(raw)
    via_httpx = httpx.Headers(list(raw))
    assert found == {name: via_httpx[name] for name in found}
    assert found["x-trackingid"] == "abc-123"
    assert found["set-cookie"] == "a=1, b=2"
    assert found["x-latin"] == "caf\u00e9"
