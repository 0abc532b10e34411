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
