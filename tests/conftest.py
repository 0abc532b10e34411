"""Shared fixtures: the event loop(s) a test runs on, real generated images, request factories, emulators.

Event loops, one way for every module:

- an ``anyio`` test runs on asyncio;
- marked ``both_loops``, it runs on asyncio and on trio;
- marked ``virtual_time``, it runs on asyncio and on trio on virtual time (``tests/_ratelimit_support.py``):
  ``anyio.sleep(30)`` returns at once and ``anyio.current_time()`` moves by exactly 30 s. Only for tests whose
  I/O is loopback sockets served in the same event loop (no threads: the clock jumps while a thread works);
- taking the ``mode`` fixture (or ``transport``), it runs on each (event loop, transport) pair of
  ``_support.TRANSPORT_MODES``; ``_support.in_modes(...)`` picks other pairs.

A test that parametrizes ``anyio_backend`` itself keeps its own values.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from _postgres_support import postgres_server, postgres_url  # noqa: F401
from _ratelimit_support import virtual_backend
from _redis_server import redis_server  # noqa: F401
from _support import LOOPS, TRANSPORT_MODES, SleepRecorder, api_client, make_jpeg, mode_ids
from hypothesis import settings

from netverify_async import Image, NetverifyRequest

pytest_plugins = ["anyio"]

# Property tests draw new examples on every local run; under CI (``CI`` set) they draw the same ones every run,
# so that a run's verdict depends on the code, not on the luck of the draw. Run locally to explore further.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_loops: run the anyio test on asyncio and on trio")
    config.addinivalue_line(
        "markers", "virtual_time: run the anyio test on asyncio and on trio, on virtual time (no threads)"
    )


def _parametrized_directly(metafunc: pytest.Metafunc, name: str) -> bool:
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs["argnames"]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames or "mode" in metafunc.fixturenames:
        return
    marked = metafunc.definition.get_closest_marker("both_loops") or metafunc.definition.get_closest_marker(
        "virtual_time"
    )
    if marked and not _parametrized_directly(metafunc, "anyio_backend"):
        metafunc.parametrize("anyio_backend", LOOPS, indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The loop of the test's ``mode``, else the loop it is parametrized with, else asyncio; on virtual time
    when the test is marked ``virtual_time``."""
    if "mode" in request.fixturenames:
        name = request.getfixturevalue("mode")[0]
    else:
        name = getattr(request, "param", "asyncio")
    if request.node.get_closest_marker("virtual_time"):
        return virtual_backend(name)
    return name


@pytest.fixture(params=TRANSPORT_MODES, ids=mode_ids(TRANSPORT_MODES))
def mode(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(event loop, transport): the library's transports on each loop they support."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def transport(mode: tuple[str, str]) -> str:
    return mode[1]


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


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Any]:
    """One emulator for a whole module (instant processing), served from a background thread so that it
    outlives each test's event loop. Tests take it through ``emu``."""
    from netverify_async.emulator import run_emulator_in_thread

    with run_emulator_in_thread(processing_delay=0.0) as running:
        yield running


@pytest.fixture
def emu(shared_emulator: Any) -> Any:
    """The module's shared emulator, with its scans, counters and faults reset."""
    shared_emulator.reset()
    return shared_emulator


@pytest.fixture
async def client(emu: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A raw httpx client that talks to ``emu`` the way a well-behaved API caller does."""
    async with api_client(emu) as c:
        yield c


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()
