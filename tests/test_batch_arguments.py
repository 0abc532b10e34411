"""Bad ``submit_many`` arguments are refused with a typed error naming the argument, before anything is read or
sent; ``concurrency=None`` (the default) means the client's ``max_concurrency``."""

from __future__ import annotations

from typing import Any

import pytest
from _batch_support import client_for, make_request, refs

from netverify_async import ConfigurationError, OutcomeStatus
from netverify_async.emulator import run_emulator

pytestmark = pytest.mark.both_loops


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("concurrency", 0),
        ("concurrency", -3),
        ("concurrency", True),
        ("concurrency", 2.5),
        ("max_bytes_in_flight", 0),
    ],
)
async def test_a_bad_number_is_refused_before_anything_is_read(argument: str, value: Any) -> None:
    pulled: list[str] = []

    def requests() -> Any:
        for ref in refs("args", 3):
            pulled.append(ref)
            yield make_request(ref)

    async with run_emulator(processing_delay=0) as emu:
        async with client_for(emu) as client:
            with pytest.raises(ConfigurationError, match=f"{argument}: must be an integer >= 1"):
                client.submit_many(requests(), **{argument: value})
        assert emu.stats.requests == 0
    assert pulled == []


@pytest.mark.anyio
async def test_the_default_concurrency_is_the_clients_limit() -> None:
    async with run_emulator(processing_delay=0) as emu:
        async with client_for(emu) as client:
            async with client.submit_many(make_request(ref) for ref in refs("default", 3)) as batch:
                statuses = [outcome.status async for outcome in batch]
    assert statuses == [OutcomeStatus.RECEIPT] * 3
