"""Shared fixtures: the anyio backend, real generated images, request factories, the emulator and a client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _redis_server import redis_server  # noqa: F401
from _support import SleepRecorder, make_jpeg
from hypothesis import settings

from netverify_async import Image, NetverifyRequest

pytest_plugins = ["anyio"]

# Property tests draw new examples on every local run; under CI (``CI`` set) they draw the same ones every run,
# so that a run's verdict depends on the code, not on the luck of the draw. Run locally to explore further.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def anyio_backend() -> str:
    """Default backend; modules that must run on both override this fixture."""
    return "asyncio"


@pytest.fixture(scope="session")
def jpeg_bytes() -> bytes:
    return make_jpeg()


@pytest.fixture
def make_request(jpeg_bytes: bytes) -> Callable[..., NetverifyRequest]:
    def factory(reference: str = "ref-1", **fields: Any) -> NetverifyRequest:
        params: dict[str, Any] = {
            "merchant_id_scan_reference": reference,
            "frontside_image": Image.from_bytes(jpeg_bytes),
            "country": "AUT",
            "id_type": "PASSPORT",
        }
        params.update(fields)
        return NetverifyRequest(**params)

    return factory


@pytest.fixture
async def emulator() -> AsyncIterator[Any]:
    """A fresh emulator on a free loopback port, with no faults and instant processing."""
    from netverify_async.emulator import run_emulator

    async with run_emulator(processing_delay=0.0) as emu:
        yield emu


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()
