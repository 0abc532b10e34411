"""Client construction: credentials, User-Agent, regions, base URLs, TLS options, from_env, repr."""

from __future__ import annotations

import pytest

from netverify_async import ConfigurationError, NetverifyClient, Region

UA = "Example Corp SampleApp/1.0.1"
SECRET = "sentinel-secret-Zq9"


def make(**kwargs: object) -> NetverifyClient:
    params: dict[str, object] = {"api_token": "token", "api_secret": SECRET, "user_agent": UA}
    params.update(kwargs)
    return NetverifyClient(**params)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("region", "url"),
    [
        (Region.US, "https://netverify.com"),
        ("EU", "https://lon.netverify.com"),
        ("sgp", "https://core-sgp.jumio.com"),
    ],
)
def test_regions_use_the_documented_urls(region: object, url: str) -> None:
    assert make(region=region).base_url == url


def test_unknown_region_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="region"):
        make(region="MARS")


@pytest.mark.parametrize(
    "url",
    [
        "http://netverify.com",
        "http://10.0.0.5:8080",
        "ftp://127.0.0.1",
        "not a url",
        "https://u:p@x.com",
        # names are not taken on trust: a resolver may send any of these anywhere
        "http://api.localhost:8080",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://0.0.0.0:8080",
    ],
)
def test_unsafe_or_malformed_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        make(base_url=url)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.8.9.10", "http://[::1]:9000/", "http://localhost:1", "https://x.example"],
)
def test_loopback_http_and_any_https_are_accepted(url: str) -> None:
    assert make(base_url=url).base_url == url.rstrip("/")


def test_localhost_is_loopback_only_when_it_resolves_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def resolver(*addresses: str) -> object:
        return lambda host, *args, **kwargs: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, 0)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", resolver("127.0.0.1", "::1"))
    assert make(base_url="http://localhost:8080").base_url == "http://localhost:8080"
    monkeypatch.setattr(socket, "getaddrinfo", resolver("127.0.0.1", "192.0.2.7"))
    with pytest.raises(ConfigurationError, match="base_url"):
        make(base_url="http://localhost:8080")


@pytest.mark.parametrize("transport", ["auto", "httpcore", "", None])
def test_unknown_transports_are_refused_naming_the_choices(transport: object) -> None:
    with pytest.raises(ConfigurationError, match=r"'httpx'.*'aiohttp'"):
        make(transport=transport)


@pytest.mark.parametrize("ua", ["", "python-httpx/0.28", "SampleApp", "Mozilla/5.0 (X11)", "SampleApp/1.0"])
def test_non_descriptive_user_agents_are_refused_at_construction(ua: str) -> None:
    with pytest.raises(ConfigurationError, match="user_agent"):
        make(user_agent=ua)


@pytest.mark.parametrize("field", ["api_token", "api_secret"])
@pytest.mark.parametrize("value", ["", "   ", None, "a\nb"])
def test_bad_credentials_are_refused_without_echoing_them(field: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=field) as info:
        make(**{field: value})
    assert SECRET not in str(info.value)


def test_repr_hides_the_secret() -> None:
    client = make()
    assert SECRET not in repr(client)
    assert "token" not in repr(client).replace("api_secret", "")


def test_missing_ca_bundle_is_refused(tmp_path: object) -> None:
    with pytest.raises(ConfigurationError, match="ca_bundle"):
        make(ca_bundle="/nonexistent/ca.pem")


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_bad_concurrency_is_refused(value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        make(max_concurrency=value)


def test_from_env_reads_every_variable() -> None:
    env = {
        "NETVERIFY_API_TOKEN": "t",
        "NETVERIFY_API_SECRET": SECRET,
        "NETVERIFY_USER_AGENT": UA,
        "NETVERIFY_REGION": "EU",
    }
    client = NetverifyClient.from_env(env)
    assert client.base_url == "https://lon.netverify.com"
    env["NETVERIFY_BASE_URL"] = "http://127.0.0.1:9"
    assert NetverifyClient.from_env(env).base_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("missing", ["NETVERIFY_API_TOKEN", "NETVERIFY_API_SECRET", "NETVERIFY_USER_AGENT"])
def test_from_env_names_the_missing_variable(missing: str) -> None:
    env = {"NETVERIFY_API_TOKEN": "t", "NETVERIFY_API_SECRET": SECRET, "NETVERIFY_USER_AGENT": UA}
    del env[missing]
    with pytest.raises(ConfigurationError, match=missing):
        NetverifyClient.from_env(env)


def test_from_env_keywords_override() -> None:
    env = {"NETVERIFY_API_TOKEN": "t", "NETVERIFY_API_SECRET": SECRET}
    client = NetverifyClient.from_env(env, user_agent=UA, base_url="http://127.0.0.1:1")
    assert client.user_agent == UA


def test_the_aiohttp_transport_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "aiohttp" else real(name, *a))
    with pytest.raises(ConfigurationError, match=r"netverify-async\[aiohttp\]"):
        make(transport="aiohttp")
