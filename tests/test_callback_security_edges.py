"""The way back's security edges: a body trickled by an allowed sender is cut off by the total read deadline
(408, nothing recorded or remembered), and malformed percent-encoding is refused by ``parse_callback``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import FORM, serve
from _support import SAMPLE_APPROVED
from fastapi import FastAPI

from netverify_async import ConfigurationError, JournalState, SqliteJournal
from netverify_async._errors import CallbackParseError
from netverify_async.callbacks import CallbackOriginVerifier, NetverifyCallback, parse_callback
from netverify_async.fastapi import CALLBACK_BODY_TIMEOUT, callback_router

PATH = "/netverify/callback"
LOOPBACK = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])
SAMPLE_REF = "YOURIDSCANREFERENCE"  # the merchant reference of SAMPLE_APPROVED


class Recorder:
    def __init__(self) -> None:
        self.calls: list[NetverifyCallback] = []

    async def __call__(self, callback: NetverifyCallback) -> None:
        self.calls.append(callback)


def _app(**options: Any) -> FastAPI:
    app = FastAPI()
    app.include_router(callback_router(verifier=LOOPBACK, **options))
    return app


async def _trickle(url: str, body: bytes, *, every: float, give_up_after: float) -> tuple[bytes, float]:
    """Send the headers, then the body one byte per ``every`` seconds over a raw socket, until the server
    answers (or ``give_up_after``); returns what the server sent and how long it took."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    answer = b""
    started = time.monotonic()
    async with await anyio.connect_tcp(host, int(port)) as stream:
        await stream.send(head)

        async def read_answer() -> None:
            nonlocal answer
            try:
                while True:
                    answer += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

        with anyio.move_on_after(give_up_after):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_answer)
                for i in range(len(body)):
                    if answer:
                        break
                    try:
                        await stream.send(body[i : i + 1])
                    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        break
                    await anyio.sleep(every)
                with anyio.move_on_after(2):
                    while not answer:
                        await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    return answer, time.monotonic() - started


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_trickled_body_is_cut_off_at_the_read_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    body = SAMPLE_APPROVED.encode()
    assert len(body) > 40  # at 0.05 s a byte it would take more than 2 s
    async with SqliteJournal(tmp_path / "j.sqlite3") as journal:
        await journal.mark_sent(SAMPLE_REF)
        app = _app(handler=recorder, journal=journal, body_timeout=0.5)
        with caplog.at_level(logging.WARNING, logger="netverify_async.fastapi"):
            async with serve(app) as url:
                answer, took = await _trickle(url, body, every=0.05, give_up_after=10)
                # the same body, sent at once, is accepted: nothing of the trickled one was remembered
                async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
                    whole = await http.post(PATH, content=body, headers=FORM)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b"within 0.5 s" in answer
        assert took < 3, took  # cut off at the deadline, not after the whole trickle
        assert whole.status_code == 200 and whole.json() == {"status": "accepted"}
        assert len(recorder.calls) == 1
        assert any("read deadline" in r.getMessage() for r in caplog.records)
        assert (await journal.last_callback_at()) is not None


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_trickled_body_records_nothing(tmp_path: Path) -> None:
    recorder = Recorder()
    async with SqliteJournal(tmp_path / "j.sqlite3") as journal:
        await journal.mark_sent(SAMPLE_REF)
        app = _app(handler=recorder, journal=journal, body_timeout=0.3)
        async with serve(app) as url:
            answer, _ = await _trickle(url, SAMPLE_APPROVED.encode(), every=0.05, give_up_after=10)
        assert answer.startswith(b"HTTP/1.1 408")
        assert recorder.calls == []
        assert (await journal.last_callback_at()) is None
        entry = await journal.get(SAMPLE_REF)
        assert entry is not None and entry.state is JournalState.SENT


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_slow_body_within_the_deadline_is_accepted() -> None:
    recorder = Recorder()
    body = b"jumioIdScanReference=abc-123&verificationStatus=APPROVED_VERIFIED"
    async with serve(_app(handler=recorder, body_timeout=5.0)) as url:
        answer, _ = await _trickle(url, body, every=0.005, give_up_after=10)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert [c.jumio_id_scan_reference for c in recorder.calls] == ["abc-123"]


def test_the_default_deadline_is_ten_seconds() -> None:
    assert CALLBACK_BODY_TIMEOUT == 10.0


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "10"])
def test_a_bad_body_timeout_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="body_timeout"):
        callback_router(Recorder(), body_timeout=bad)


# ----------------------------------------------------------------------------------------------------------
# Malformed percent-encoding
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "jumioIdScanReference=abc%zz",
        "jumioIdScanReference=abc&idFirstName=J%zzN",
        "jumioIdScanReference=abc&idFirstName=SECRET%4",
        "jumioIdScanReference=abc&idFirstName=SECRET%",
        "jumioIdScanReference=abc&id%G1=x",
        b"jumioIdScanReference=abc%zz",
    ],
)
def test_malformed_percent_encoding_is_refused_naming_the_rule(body: str | bytes) -> None:
    with pytest.raises(CallbackParseError, match="malformed percent-encoding") as caught:
        parse_callback(body)
    message = str(caught.value)
    assert "two hexadecimal digits" in message
    assert "SECRET" not in message and "zz" not in message and "abc" not in message


@pytest.mark.parametrize(
    ("body", "first_name"),
    [
        ("jumioIdScanReference=abc&idFirstName=J%C3%B6rg", "J\u00f6rg"),
        ("jumioIdScanReference=abc&idFirstName=100%25", "100%"),
        ("jumioIdScanReference=abc&idFirstName=a%2fb", "a/b"),
    ],
)
def test_well_formed_percent_encoding_still_decodes(body: str, first_name: str) -> None:
    assert parse_callback(body).id_first_name == first_name


def test_a_decoded_mapping_may_hold_a_literal_percent() -> None:
    """The rule is about the encoding: an already decoded form's values are text and may contain '%'."""
    assert parse_callback({"jumioIdScanReference": "abc", "idFirstName": "%zz"}).id_first_name == "%zz"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_router_answers_400_for_malformed_percent_encoding() -> None:
    recorder = Recorder()
    async with serve(_app(handler=recorder)) as url:
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post(PATH, content=b"jumioIdScanReference=abc%zz", headers=FORM)
    assert answer.status_code == 400
    assert "malformed percent-encoding" in answer.json()["detail"]
    assert recorder.calls == []
