"""examples/fastapi_app.py (the README's example) works: served by uvicorn, against the emulator, via its env."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import httpx
import pytest
from _fastapi_support import loopback_socket, serve, url_of
from _support import USER_AGENT, make_jpeg

from netverify_async.emulator import run_emulator

pytestmark = pytest.mark.anyio

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(spec.name, None)
    spec.loader.exec_module(module)
    return module


def configure(monkeypatch: pytest.MonkeyPatch, emu: Any) -> None:
    monkeypatch.setenv("NETVERIFY_API_TOKEN", emu.api_token)
    monkeypatch.setenv("NETVERIFY_API_SECRET", emu.api_secret)
    monkeypatch.setenv("NETVERIFY_USER_AGENT", USER_AGENT)
    monkeypatch.setenv("NETVERIFY_BASE_URL", emu.base_url)
    monkeypatch.setenv("CALLBACK_ALLOWED_IPS", "127.0.0.1,::1")
    monkeypatch.delenv("NETVERIFY_CALLBACK_URL", raising=False)


async def wait_until_finished(http: httpx.AsyncClient, scan_reference: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            answer = await http.get(f"/verify/{scan_reference}")
            assert answer.status_code == 200, answer.text
            if answer.json()["state"] == "FINISHED":
                return dict(answer.json())
            await anyio.sleep(0.05)


async def test_upload_is_submitted_and_the_callback_result_is_served(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = loopback_socket()
    async with run_emulator(
        processing_delay=0.1,
        default_outcome="fraud",
        allow_http_callbacks=True,
        callback_url_override=url_of(sock) + "/netverify/callback",
    ) as emu:
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app, sock) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post(
                "/verify",
                files={"photo": ("passport.jpg", make_jpeg(), "image/jpeg")},
                data={"country": "AUT", "id_type": "PASSPORT"},
            )
            assert answer.status_code == 202, answer.text
            scan_reference = answer.json()["scan_reference"]
            [record] = await emu.wait_for_callbacks(1, timeout=30)
            assert record.result == "delivered"
            with anyio.fail_after(30):  # stored by the callback handler, which runs after the answer
                while scan_reference not in example.RESULTS:
                    await anyio.sleep(0.01)
            result = await wait_until_finished(http, scan_reference)
    assert result == {
        "state": "FINISHED",
        "merchant_reference": answer.json()["merchant_reference"],
        "verification_status": "DENIED_FRAUD",
        "approved": False,
        "reject_reasons": ["100", "1001", "1004"],
    }


async def test_without_a_callback_the_result_is_fetched_by_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0.1) as emu:  # no callback URL anywhere
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post("/verify", files={"photo": ("id.jpg", make_jpeg(), "image/jpeg")})
            assert answer.status_code == 202, answer.text
            result = await wait_until_finished(http, answer.json()["scan_reference"])
            unknown = await http.get("/verify/00000000-0000-0000-0000-000000000000")
    assert emu.callbacks == []
    assert result["verification_status"] == "APPROVED_VERIFIED"
    assert result["approved"] is True
    assert unknown.status_code == 404


async def test_an_image_jumio_would_refuse_gets_422_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0) as emu:
        configure(monkeypatch, emu)
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            tiny = await http.post("/verify", files={"photo": ("id.jpg", make_jpeg(200, 150), "image/jpeg")})
            text = await http.post("/verify", files={"photo": ("id.jpg", b"not an image", "image/jpeg")})
    assert tiny.status_code == 422
    assert [d["code"] for d in tiny.json()["detail"]] == ["too_small"]
    assert text.status_code == 422
    assert emu.stats.scans_created == 0


async def test_example_refuses_callbacks_from_elsewhere_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    async with run_emulator(processing_delay=0) as emu:
        configure(monkeypatch, emu)
        monkeypatch.delenv("CALLBACK_ALLOWED_IPS")
        example = load_example()
        async with serve(example.app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.post(
                "/netverify/callback",
                content="jumioIdScanReference=abc&verificationStatus=APPROVED_VERIFIED",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
    assert answer.status_code == 403
    assert example.RESULTS == {}
