"""The way back, end to end: a FastAPI app under uvicorn submits to the emulator, the emulator calls the app back.

Also the fallback when no callback arrives: polling the retrieval API with ``wait_for_result``.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import loopback_socket, serve, url_of
from _support import emulator_client, make_jpeg
from fastapi import FastAPI

from netverify_async import Image, NetverifyRequest, ScanState
from netverify_async.callbacks import (
    CallbackOriginVerifier,
    IdentityVerification,
    NetverifyCallback,
    Similarity,
    VerificationStatus,
)
from netverify_async.emulator import Outcome, run_emulator
from netverify_async.fastapi import NetverifyClientDep, callback_router, netverify_lifespan

pytestmark = pytest.mark.anyio

LOOPBACK = CallbackOriginVerifier(allowed=["127.0.0.1", "::1"])


def request_for(reference: str) -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference=reference,
        frontside_image=Image.from_bytes(make_jpeg(seed=1)),
        face_image=Image.from_bytes(make_jpeg(seed=2)),
        country="AUT",
        id_type="PASSPORT",
    )


async def test_every_emulator_outcome_comes_back_to_the_apps_handler_typed() -> None:
    outcomes = list(Outcome)
    received: dict[str, NetverifyCallback] = {}
    all_received = anyio.Event()

    async def on_callback(callback: NetverifyCallback) -> None:
        assert callback.merchant_id_scan_reference is not None
        received[callback.merchant_id_scan_reference] = callback
        if len(received) == len(outcomes):
            all_received.set()

    sock = loopback_socket()  # the app's address must be known before the emulator starts
    callback_url = url_of(sock) + "/netverify/callback"
    async with run_emulator(
        processing_delay=0.05, allow_http_callbacks=True, callback_url_override=callback_url
    ) as emu:
        app = FastAPI(lifespan=netverify_lifespan(lambda: emulator_client(emu)))
        app.include_router(callback_router(on_callback, verifier=LOOPBACK))

        @app.post("/submit/{outcome}")
        async def submit(outcome: str, client: NetverifyClientDep) -> dict[str, str]:
            receipt = await client.perform_netverify(request_for(f"e2e-{outcome}#{outcome}"))
            return {"scan_reference": receipt.scan_reference}

        scan_refs: dict[str, str] = {}
        async with serve(app, sock) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:

            async def submit_one(outcome: Outcome) -> None:
                response = await http.post(f"/submit/{outcome.value}")
                assert response.status_code == 200, response.text
                scan_refs[f"e2e-{outcome.value}#{outcome.value}"] = response.json()["scan_reference"]

            async with anyio.create_task_group() as tg:
                for outcome in outcomes:
                    tg.start_soon(submit_one, outcome)
            with anyio.fail_after(30):
                await all_received.wait()
        records = emu.callbacks

    assert len(outcomes) == 8
    assert set(received) == set(scan_refs)
    for outcome in outcomes:
        callback = received[f"e2e-{outcome.value}#{outcome.value}"]
        assert isinstance(callback, NetverifyCallback)
        assert callback.jumio_id_scan_reference == scan_refs[callback.merchant_id_scan_reference or ""]
        assert callback.verification_status is VerificationStatus(outcome.verification_status), outcome
        assert callback.is_final
        assert callback.problems == ()
    by_outcome = {o: received[f"e2e-{o.value}#{o.value}"] for o in outcomes}
    assert by_outcome[Outcome.FRAUD].reject_reason_codes == ("100", "1001", "1004")
    assert by_outcome[Outcome.UNREADABLE].reject_reason_codes == ("200", "2001")
    mismatch = by_outcome[Outcome.FACE_MISMATCH].identity_verification
    assert isinstance(mismatch, IdentityVerification)
    assert mismatch.similarity is Similarity.NO_MATCH
    not_live = by_outcome[Outcome.NOT_LIVE].identity_verification
    assert isinstance(not_live, IdentityVerification)
    assert not_live.validity is False
    # Each callback was delivered once, at the first attempt, and answered 200.
    assert sorted(r.scan_reference for r in records) == sorted(scan_refs.values())
    assert {(r.kind, r.result, r.attempts, r.status_code) for r in records} == {
        ("final", "delivered", 1, 200)
    }


async def test_a_redelivered_callback_reaches_the_handler_once() -> None:
    """The emulator retries a callback answered with an error; the app runs its handler once per body."""
    calls: list[str] = []
    fail_next = [True]
    done = anyio.Event()

    sock = loopback_socket()
    app = FastAPI()

    class LoseTheFirstAnswer:
        """ASGI middleware: the app handles the first callback, but its sender is told 502 and tries again."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not fail_next:
                await self.inner(scope, receive, send)
                return
            fail_next.clear()

            async def send_502(message: Any) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "status": 502}
                await send(message)

            await self.inner(scope, receive, send_502)

    app.add_middleware(LoseTheFirstAnswer)

    async def on_callback(callback: NetverifyCallback) -> None:
        calls.append(callback.jumio_id_scan_reference)
        done.set()

    app.include_router(callback_router(on_callback, verifier=LOOPBACK))
    async with run_emulator(
        processing_delay=0,
        allow_http_callbacks=True,
        callback_url_override=url_of(sock) + "/netverify/callback",
        callback_backoff=0.05,
    ) as emu:
        async with serve(app, sock), emulator_client(emu) as client:
            receipt = await client.perform_netverify(request_for("again#approved"))
            [record] = await emu.wait_for_callbacks(1, timeout=30)
            with anyio.fail_after(30):
                await done.wait()
    assert (record.result, record.attempts, record.status_code) == ("delivered", 2, 200)
    assert calls == [receipt.scan_reference]


def closed_port_url() -> tuple[socket.socket, str]:
    """A loopback URL whose port is held (bound) but not listening: connections are refused."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    return holder, url_of(holder) + "/netverify/callback"


@pytest.mark.both_loops
async def test_when_the_callback_never_arrives_polling_gets_the_result() -> None:
    holder, dead_url = closed_port_url()
    try:
        async with run_emulator(
            processing_delay=0.3,
            allow_http_callbacks=True,
            callback_url_override=dead_url,
            callback_retries=0,
        ) as emu:
            async with emulator_client(emu) as client:
                receipt = await client.perform_netverify(request_for("lost-callback#fraud"))
                with anyio.fail_after(30):
                    details = await client.wait_for_result(
                        receipt.scan_reference, schedule=(0.2, 0.5, 1.0, 2.0)
                    )
            [record] = await emu.wait_for_callbacks(1, timeout=30)
    finally:
        holder.close()
    assert details.scan_reference == receipt.scan_reference
    assert details.transaction is not None and details.transaction.status is ScanState.DONE
    assert details.document is not None and details.document.status is VerificationStatus.DENIED_FRAUD
    assert details.verification is not None
    assert (record.result, record.status_code) == ("failed", None)
