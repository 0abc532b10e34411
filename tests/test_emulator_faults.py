"""Faults on demand: rate limits, injected 5xx, dropped connections, slow answers, latency; stats and admin."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from netverify_async import ConfigurationError
from netverify_async.emulator import (
    API_HEADERS,
    Faults,
    RateWindow,
    RunningEmulator,
    parse_rate_limit,
    run_emulator,
    submission_body,
)

pytestmark = pytest.mark.anyio

PERFORM = "/api/netverify/v2/performNetverify"
SCANS = "/api/netverify/v2/scans"
RATE_LIMITED = {"title": "Too Many Requests", "status": 429, "detail": "Request limit exceeded"}


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
async def emu(anyio_backend: str) -> AsyncIterator[RunningEmulator]:
    async with run_emulator(processing_delay=0) as running:
        yield running


@pytest.fixture
async def client(emu: RunningEmulator) -> AsyncIterator[httpx.AsyncClient]:
    emu.reset()
    async with httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS) as c:
        yield c


async def submit(client: httpx.AsyncClient, reference: str = "order") -> httpx.Response:
    return await client.post(PERFORM, json=submission_body(reference))


# -- rate limits ---------------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_jumios_body_and_creates_no_scan(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(rate_limit="2/60s")
    statuses = [(await submit(client)).status_code for _ in range(3)]
    limited = await submit(client)

    assert statuses == [200, 200, 429]
    assert limited.status_code == 429
    assert limited.json() == RATE_LIMITED
    assert "retry-after" not in limited.headers
    assert limited.headers["server"] == "Apache-Coyote/1.1"
    assert emu.stats.scans_created == 2
    assert emu.stats.faults_injected["rate_limited"] == 2


async def test_retry_after_is_sent_when_configured(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    emu.set_faults(rate_limit="1/30s", retry_after=True)
    await submit(client)
    limited = await submit(client)

    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 30


async def test_every_window_of_a_multi_window_limit_applies(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(rate_limit="10/s,3/min")
    statuses = [(await submit(client)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_retrieval_has_its_own_limit(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    emu.set_faults(retrieval_rate_limit="1/min")
    ref = (await submit(client)).json()["jumioIdScanReference"]
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 200
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 429
    assert (await client.delete(f"{SCANS}/{ref}")).status_code == 429
    assert (await submit(client)).status_code == 200


async def test_requests_refused_as_forbidden_do_not_use_the_limit(emu: RunningEmulator) -> None:
    emu.reset()
    emu.set_faults(rate_limit="1/min")
    async with httpx.AsyncClient(base_url=emu.base_url, headers=API_HEADERS) as anonymous:
        assert (await anonymous.post(PERFORM, json=submission_body())).status_code == 403
    async with httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS) as client:
        assert (await submit(client)).status_code == 200


@pytest.mark.parametrize(
    ("spec", "windows"),
    [
        ("5/5s", (RateWindow(5, 5.0),)),
        ("3/s,180/min", (RateWindow(3, 1.0), RateWindow(180, 60.0))),
        (" 100 / 1.5m ", (RateWindow(100, 90.0),)),
        ("1000/h", (RateWindow(1000, 3600.0),)),
        ("", ()),
        (None, ()),
    ],
)
def test_rate_limit_specs(spec: str | None, windows: tuple[RateWindow, ...]) -> None:
    assert parse_rate_limit(spec) == windows


@pytest.mark.parametrize("spec", ["5", "5/", "x/s", "5/5 fortnights", "0/s", "5/0s", "5/s;3/min"])
def test_malformed_rate_limit_specs_are_refused(spec: str) -> None:
    with pytest.raises(ConfigurationError, match="rate rule"):
        parse_rate_limit(spec)


# -- injected errors -----------------------------------------------------------------------------------------


async def test_injected_503_never_creates_a_scan(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    emu.set_faults(errors={503: 1.0}, error_phase="after")
    response = await submit(client)

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "x-trackingid" in response.headers
    assert emu.stats.scans_created == 0


async def test_injected_503_carries_retry_after_when_configured(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(errors={503: 1.0}, retry_after=True)
    assert (await submit(client)).headers["retry-after"] == "1"


@pytest.mark.parametrize("status", [500, 502, 504])
@pytest.mark.parametrize(("phase", "scans"), [("before", 0), ("after", 1)])
async def test_injected_5xx_before_or_after_processing(
    client: httpx.AsyncClient, emu: RunningEmulator, status: int, phase: str, scans: int
) -> None:
    emu.set_faults(errors={status: 1.0}, error_phase=phase)
    response = await submit(client)

    assert response.status_code == status
    assert emu.stats.scans_created == scans
    assert emu.stats.faults_injected == {str(status): 1}
    if status == 500:
        assert response.json()["httpStatus"] == "500"


async def test_dropped_connection_after_the_scan_was_created(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(drop_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await submit(client, "did-it-go-through")

    stats = emu.stats
    assert stats.scans_created == 1
    assert list(stats.scans_by_merchant_reference) == ["did-it-go-through"]
    assert stats.dropped == 1
    assert stats.status_counts == {0: 1}
    # the server stays healthy for the next request
    emu.set_faults()
    assert (await submit(client)).status_code == 200


# The next two tests use an emulator of their own: the request they give up on is still being answered when
# they end, and must not leak into the statistics of other tests.


async def test_slow_answer_trips_a_read_timeout_after_the_scan_was_created() -> None:
    timeout = httpx.Timeout(10.0, read=0.2)
    async with (
        run_emulator(processing_delay=0, slow_rate=1.0, slow_seconds=3.0) as emu,
        httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS, timeout=timeout) as c,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await submit(c)
        assert emu.stats.scans_created == 1


async def test_drip_mode_sends_the_body_a_byte_at_a_time(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(slow_rate=1.0, slow_seconds=0.5, slow_mode="drip")
    body = json.dumps(submission_body()).encode()
    request = client.build_request(
        "POST", PERFORM, content=body, headers={"Content-Type": "application/json"}
    )
    response = await client.send(request, stream=True)
    chunks = [chunk async for chunk in response.aiter_raw()]
    await response.aclose()

    assert response.status_code == 200
    assert len(chunks) > 10
    assert "jumioIdScanReference" in json.loads(b"".join(chunks))


async def test_latency_delays_every_affected_request() -> None:
    timeout = httpx.Timeout(10.0, read=0.2)
    async with (
        run_emulator(processing_delay=0, latency=3.0) as emu,
        httpx.AsyncClient(base_url=emu.base_url, auth=emu.auth, headers=API_HEADERS, timeout=timeout) as c,
    ):
        with pytest.raises(httpx.ReadTimeout):
            await submit(c)
        # retrieval is not among the affected endpoints by default
        assert (await c.get(f"{SCANS}/unknown")).status_code == 404


async def test_latency_creates_the_scan_even_when_the_client_gave_up() -> None:
    """The fault table: latency delays the answer, but a submission that arrived whole is processed anyway."""
    from netverify_async import (
        Image,
        NetverifyClient,
        NetverifyRequest,
        RetryPolicy,
        SubmissionOutcomeUnknown,
    )
    from netverify_async.emulator import sample_image

    async with run_emulator(processing_delay=0, latency=1.0) as emu:
        client = NetverifyClient(
            api_token=emu.api_token,
            api_secret=emu.api_secret,
            user_agent="Example Corp LatencyTest/1.0",
            base_url=emu.base_url,
            retry=RetryPolicy(attempt_timeout=0.3),
            rate_limit=None,
        )
        request = NetverifyRequest(
            merchant_id_scan_reference="lat-1",
            frontside_image=Image(sample_image()),
            country="AUT",
            id_type="PASSPORT",
        )
        async with client:
            with pytest.raises(SubmissionOutcomeUnknown):
                await client.perform_netverify(request)
        with anyio.fail_after(10):
            while not emu.stats.scans_by_merchant_reference.get("lat-1"):
                await anyio.sleep(0.05)
        await anyio.sleep(0.2)
        stats = emu.stats
    assert len(stats.scans_by_merchant_reference["lat-1"]) == 1  # created once: the client did not resend
    assert "499" not in {str(status) for status in stats.status_counts}


async def test_latency_creates_no_scan_when_the_body_never_arrived_whole() -> None:
    """A client that stops half-way through the upload sent no submission: nothing to process."""
    body = json.dumps(submission_body("cut-1")).encode()
    async with run_emulator(processing_delay=0, latency=0.5) as emu:
        host, port = emu.base_url.removeprefix("http://").split(":")
        stream = await anyio.connect_tcp(host, int(port))
        auth = httpx.BasicAuth(*emu.auth).auth_flow(httpx.Request("POST", emu.base_url))
        authorization = next(auth).headers["Authorization"]
        head = (
            f"POST {PERFORM} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nUser-Agent: Example Corp CutTest/1.0\r\n"
            f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        await stream.send(head + body[: len(body) // 2])
        await anyio.sleep(0.2)
        await stream.aclose()
        await anyio.sleep(1.0)
        stats = emu.stats
    assert stats.scans_created == 0


async def test_faults_reach_retrieval_only_when_asked(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    ref = (await submit(client)).json()["jumioIdScanReference"]
    emu.set_faults(errors={503: 1.0})
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 200
    emu.set_faults(errors={503: 1.0}, apply_to={"retrieval"})
    assert (await client.get(f"{SCANS}/{ref}")).status_code == 503
    assert (await submit(client)).status_code == 200


async def test_a_sequence_of_one_shot_actions_comes_first(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    emu.set_faults(sequence=["503", "ok", "429", "500"])
    statuses = [(await submit(client)).status_code for _ in range(5)]
    assert statuses == [503, 200, 429, 500, 200]


async def test_the_same_seed_gives_the_same_faults(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    runs = []
    for _ in range(2):
        emu.set_faults(errors={503: 0.3, 502: 0.2}, seed=1234)
        runs.append([(await submit(client)).status_code for _ in range(20)])
    assert runs[0] == runs[1]
    assert {200, 502, 503} <= set(runs[0])


@pytest.mark.parametrize(
    "changes",
    [
        {"errors": {503: 1.5}},
        {"errors": {418: 0.1}},
        {"drop_rate": 0.6, "slow_rate": 0.6},
        {"sequence": ["explode"]},
        {"latency": (2.0, 1.0)},
        {"apply_to": {"everything"}},
        {"rate_limit": "lots"},
        {"error_phase": "during"},
    ],
)
def test_impossible_faults_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Faults(**changes)  # type: ignore[arg-type]


# -- admin endpoints and statistics --------------------------------------------------------------------------


async def test_faults_can_be_read_changed_and_cleared_over_http(
    client: httpx.AsyncClient, emu: RunningEmulator
) -> None:
    async with httpx.AsyncClient(base_url=emu.base_url) as admin:
        changed = await admin.post("/__emulator/faults", json={"errors": {"503": 1.0}, "seed": 5})
        assert changed.status_code == 200
        assert changed.json()["errors"] == {"503": 1.0}
        assert (await submit(client)).status_code == 503
        assert (await admin.get("/__emulator/faults")).json()["seed"] == 5
        merged = await admin.post("/__emulator/faults", json={"drop_rate": 0.0})
        assert merged.json()["errors"] == {"503": 1.0}

        assert (await admin.delete("/__emulator/faults")).json()["errors"] == {}
        assert (await submit(client)).status_code == 200

        invalid = await admin.post("/__emulator/faults", json={"drop_rate": 7})
        assert invalid.status_code == 400
        assert "drop_rate" in invalid.json()["message"]
        unknown = await admin.post("/__emulator/faults", json={"chaos": True})
        assert unknown.status_code == 400


async def test_stats_scans_and_reset_over_http(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    await submit(client, "a")
    await submit(client, "a")
    await client.get(f"{SCANS}/unknown")
    async with httpx.AsyncClient(base_url=emu.base_url) as admin:
        stats = (await admin.get("/__emulator/stats")).json()
        assert stats["scansCreated"] == 2
        assert stats["statusCounts"] == {"200": 2, "404": 1}
        assert list(stats["duplicates"]) == ["a"]
        assert sum(second["requests"] for second in stats["perSecond"]) == 3
        scans = (await admin.get("/__emulator/scans")).json()["scans"]
        assert [s["merchantIdScanReference"] for s in scans] == ["a", "a"]
        assert (await admin.post("/__emulator/reset")).json() == {"reset": True}
        assert (await admin.get("/__emulator/stats")).json()["requests"] == 0
        assert (await admin.get("/__emulator/nothing")).status_code == 404


async def test_per_second_series_counts_each_status(client: httpx.AsyncClient, emu: RunningEmulator) -> None:
    emu.set_faults(sequence=["503"])
    await submit(client)
    await submit(client)
    series = emu.stats.per_second
    totals: dict[int, int] = {}
    for second in series:
        assert second.requests == sum(second.status_counts.values())
        for status, count in second.status_counts.items():
            totals[status] = totals.get(status, 0) + count
    assert totals == {503: 1, 200: 1}


async def test_reset_restores_the_configured_faults() -> None:
    async with run_emulator(processing_delay=0, rate_limit="1/min") as emu:
        emu.set_faults()
        assert emu.faults.rate_limit is None
        emu.reset()
        assert emu.faults.rate_limit == "1/min"


async def test_admin_token_protects_the_admin_endpoints() -> None:
    async with (
        run_emulator(processing_delay=0, admin_token="let-me-in") as emu,
        httpx.AsyncClient(base_url=emu.base_url) as admin,
    ):
        assert (await admin.get("/__emulator/stats")).status_code == 403
        allowed = await admin.get("/__emulator/stats", headers={"X-Emulator-Admin-Token": "let-me-in"})
        assert allowed.status_code == 200
