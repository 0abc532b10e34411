"""netverify_lifespan and get_netverify_client: one client per app, handed to routes, closed at shutdown."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from _fastapi_support import serve
from _support import USER_AGENT, emulator_client
from fastapi import Depends, FastAPI, HTTPException, Request

from netverify_async import ConfigurationError, NetverifyClient, NotFoundError
from netverify_async.fastapi import (
    CLIENT_STATE_ATTRIBUTE,
    NetverifyClientDep,
    get_netverify_client,
    netverify_lifespan,
)

pytestmark = pytest.mark.anyio


class CountingClient(NetverifyClient):
    """A real client that counts how often it is closed."""

    closes = 0

    async def aclose(self) -> None:
        self.closes += 1
        await super().aclose()


class Factory:
    """Makes real clients pointed at the emulator and remembers them."""

    def __init__(self, base_url: str = "http://127.0.0.1:9") -> None:
        self.base_url = base_url
        self.made: list[CountingClient] = []

    def __call__(self) -> CountingClient:
        client = CountingClient(
            api_token="emulator-api-token",
            api_secret="emulator-api-secret",
            user_agent=USER_AGENT,
            base_url=self.base_url,
            rate_limit=None,
        )
        self.made.append(client)
        return client


def app_with_routes(lifespan: Any) -> FastAPI:
    app = FastAPI(lifespan=lifespan)

    @app.get("/client")
    async def which_client(client: NetverifyClientDep) -> dict[str, int]:
        return {"id": id(client)}

    @app.get("/client-annotated")
    async def which_client_annotated(
        client: Annotated[NetverifyClient, Depends(get_netverify_client)],
    ) -> dict[str, int]:
        return {"id": id(client)}

    @app.get("/status/{ref}")
    async def status(ref: str, client: NetverifyClientDep) -> dict[str, str]:
        try:
            state = (await client.scan_status(ref)).status
            return {"status": getattr(state, "value", state)}
        except NotFoundError:
            raise HTTPException(404, "unknown scan") from None

    return app


async def test_one_client_per_app_lifetime_handed_to_every_route_and_closed_once(emulator: Any) -> None:
    factory = Factory(emulator.base_url)
    app = app_with_routes(netverify_lifespan(factory))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        [client] = factory.made
        assert getattr(app.state, CLIENT_STATE_ATTRIBUTE) is client
        ids = {(await http.get(path)).json()["id"] for path in ("/client", "/client-annotated", "/client")}
        assert ids == {id(client)}
        # The client really works from inside a route: ask the emulator about a scan it does not know.
        unknown = await http.get("/status/00000000-0000-0000-0000-000000000000")
        assert unknown.status_code == 404
        assert client.closes == 0
    assert len(factory.made) == 1
    assert client.closes == 1
    assert not hasattr(app.state, CLIENT_STATE_ATTRIBUTE)
    with pytest.raises(ConfigurationError, match="closed"):
        await client.scan_status("abc")


async def test_the_client_reaches_the_emulator_from_a_route(emulator: Any, make_request: Any) -> None:
    factory = Factory(emulator.base_url)
    app = app_with_routes(netverify_lifespan(factory))
    async with serve(app) as url:
        async with emulator_client(emulator) as other:
            receipt = await other.perform_netverify(make_request("lifespan-1"))
        async with httpx.AsyncClient(base_url=url, trust_env=False) as http:
            answer = await http.get(f"/status/{receipt.scan_reference}")
    assert answer.status_code == 200
    assert answer.json()["status"] in ("PENDING", "DONE")


async def test_each_startup_builds_a_new_client() -> None:
    factory = Factory()
    app = app_with_routes(netverify_lifespan(factory))
    for _ in range(2):
        async with serve(app):
            pass
    assert len(factory.made) == 2
    assert [c.closes for c in factory.made] == [1, 1]


async def test_async_factory_is_awaited() -> None:
    factory = Factory()

    async def async_factory() -> NetverifyClient:
        return factory()

    lifespan = netverify_lifespan(async_factory)
    app = FastAPI()
    async with lifespan(app):
        assert app.state.netverify_client is factory.made[0]
    assert factory.made[0].closes == 1


async def test_users_own_lifespan_runs_inside_and_its_state_is_passed_on() -> None:
    factory = Factory()
    events: list[str] = []

    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        client = app.state.netverify_client  # already there at startup
        events.append(f"startup with {type(client).__name__}")
        yield {"greeting": "hello"}
        assert client.closes == 0  # still open during our shutdown
        events.append("shutdown")

    app = FastAPI(lifespan=netverify_lifespan(factory, lifespan=own_lifespan))

    @app.get("/greeting")
    async def greeting(request: Request, client: NetverifyClientDep) -> dict[str, str]:
        return {"greeting": request.state.greeting, "client": type(client).__name__}

    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        answer = (await http.get("/greeting")).json()
    assert answer == {"greeting": "hello", "client": "CountingClient"}
    assert events == ["startup with CountingClient", "shutdown"]
    assert factory.made[0].closes == 1


async def test_can_be_entered_from_the_users_lifespan() -> None:
    factory = Factory()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with netverify_lifespan(factory)(app):
            yield

    app = app_with_routes(lifespan)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, trust_env=False) as http:
        assert (await http.get("/client")).json() == {"id": id(factory.made[0])}
    assert factory.made[0].closes == 1


async def test_installing_it_twice_is_refused() -> None:
    factory = Factory()
    app = FastAPI()
    async with netverify_lifespan(factory)(app):
        with pytest.raises(ConfigurationError, match="once per app"):
            async with netverify_lifespan(factory)(app):
                pass
    assert len(factory.made) == 1


async def test_a_failing_factory_fails_startup_and_nothing_is_left_on_state() -> None:
    def no_credentials() -> NetverifyClient:
        return NetverifyClient.from_env({})

    app = FastAPI()
    with pytest.raises(ConfigurationError, match="NETVERIFY_API_TOKEN"):
        async with netverify_lifespan(no_credentials)(app):
            pass
    assert not hasattr(app.state, CLIENT_STATE_ATTRIBUTE)


async def test_default_factory_reads_the_environment(monkeypatch: pytest.MonkeyPatch, emulator: Any) -> None:
    monkeypatch.setenv("NETVERIFY_API_TOKEN", emulator.api_token)
    monkeypatch.setenv("NETVERIFY_API_SECRET", emulator.api_secret)
    monkeypatch.setenv("NETVERIFY_USER_AGENT", USER_AGENT)
    monkeypatch.setenv("NETVERIFY_BASE_URL", emulator.base_url)
    app = FastAPI()
    async with netverify_lifespan()(app):
        client = get_client_of(app)
        assert client.base_url == emulator.base_url
        assert client.user_agent == USER_AGENT


def get_client_of(app: FastAPI) -> NetverifyClient:
    client = app.state.netverify_client
    assert isinstance(client, NetverifyClient)
    return client


async def test_factory_returning_something_else_is_refused() -> None:
    app = FastAPI()
    with pytest.raises(ConfigurationError, match="must return a NetverifyClient"):
        async with netverify_lifespan(lambda: "client")(app):  # type: ignore[arg-type,return-value]
            pass


async def test_dependency_without_the_lifespan_says_what_is_missing() -> None:
    app = app_with_routes(None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(ConfigurationError, match="netverify_lifespan"):
            await http.get("/client")


def test_missing_fastapi_gives_an_install_hint() -> None:
    code = "import sys; sys.modules['fastapi'] = None; import netverify_async.fastapi"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "pip install 'netverify-async[fastapi]'" in result.stderr
