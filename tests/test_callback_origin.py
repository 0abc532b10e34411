"""CallbackOriginVerifier accepts callbacks only from Jumio's addresses, and trusts X-Forwarded-For only
from configured proxies. DNS resolution is tested with an injected resolver (the machine has loopback only).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

import anyio
import pytest

from netverify_async import CallbackOriginError, ConfigurationError
from netverify_async._constants import CALLBACK_SOURCE_HOSTNAMES, CALLBACK_SOURCE_IPS
from netverify_async.callbacks import CallbackOriginVerifier

US_OLD = "34.202.241.227"
US_NEW = "54.183.15.212"
EU = "52.209.180.134"
SGP = "52.77.102.92"
APAC_NEW = "13.238.100.17"
STRANGER = "198.51.100.23"


pytestmark = pytest.mark.both_loops


# -- the default allowlist --------------------------------------------------------------------------


@pytest.mark.parametrize("address", [US_OLD, US_NEW, EU, SGP, APAC_NEW, "52.8.136.236", "13.238.203.238"])
def test_documented_and_newer_jumio_addresses_are_allowed_by_default(address: str) -> None:
    verifier = CallbackOriginVerifier()
    assert verifier.is_allowed(address)
    verifier.verify(address)


def test_every_listed_address_is_allowed() -> None:
    verifier = CallbackOriginVerifier()
    for addresses in CALLBACK_SOURCE_IPS.values():
        for address in addresses:
            assert verifier.is_allowed(address), address


@pytest.mark.parametrize("address", [STRANGER, "127.0.0.1", "::1", "34.202.241.228", "10.0.0.1"])
def test_other_addresses_are_refused(address: str) -> None:
    verifier = CallbackOriginVerifier()
    assert not verifier.is_allowed(address)
    with pytest.raises(CallbackOriginError):
        verifier.verify(address)


def test_regions_limit_the_allowlist() -> None:
    eu_only = CallbackOriginVerifier(regions=("EU",))
    assert eu_only.is_allowed(EU)
    assert not eu_only.is_allowed(US_OLD)
    assert not eu_only.is_allowed(SGP)


def test_region_aliases_and_case() -> None:
    assert CallbackOriginVerifier(regions=["apac"]).is_allowed(APAC_NEW)
    assert CallbackOriginVerifier(regions="AMER").is_allowed(US_NEW)
    assert CallbackOriginVerifier(regions=("emea",)).regions == ("EU",)


def test_unknown_region_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="regions"):
        CallbackOriginVerifier(regions=("MARS",))


def test_explicit_allowlist_replaces_the_defaults_and_takes_networks() -> None:
    verifier = CallbackOriginVerifier(["203.0.113.0/24", "2001:db8::/32", ipaddress.ip_address("192.0.2.7")])
    assert verifier.is_allowed("203.0.113.200")
    assert verifier.is_allowed("192.0.2.7")
    assert verifier.is_allowed("2001:db8::1")
    assert not verifier.is_allowed("2001:db9::1")
    assert not verifier.is_allowed(US_OLD)


@pytest.mark.parametrize("bad", ["not-an-ip", "300.1.1.1", "10.0.0.0/33", ""])
def test_bad_allowlist_entries_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="allowed"):
        CallbackOriginVerifier([bad])


def test_bad_trusted_proxy_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="trusted_proxies"):
        CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8", "proxy.local"])


def test_an_allowlist_that_could_never_match_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        CallbackOriginVerifier([])
    with pytest.raises(ConfigurationError, match="empty"):
        CallbackOriginVerifier(regions=())


# -- address forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "peer",
    [
        f"::ffff:{US_OLD}",
        f"::FFFF:{US_OLD}",
        f" {US_OLD} ",
        f"{US_OLD}:443",
        f"[::ffff:{US_OLD}]",
        f"[::ffff:{US_OLD}]:8443",
    ],
)
def test_ipv4_mapped_ipv6_and_port_forms_are_understood(peer: str) -> None:
    assert CallbackOriginVerifier().is_allowed(peer)


def test_ipv6_peers_are_checked_against_ipv6_entries() -> None:
    verifier = CallbackOriginVerifier(["2001:db8:1::/48"])
    assert verifier.is_allowed("2001:db8:1::5")
    assert verifier.is_allowed("[2001:db8:1::5]:443")
    assert not verifier.is_allowed("2001:db8:2::5")
    assert not verifier.is_allowed("::ffff:203.0.113.1")


def test_mapped_allowlist_entries_match_plain_ipv4_peers() -> None:
    verifier = CallbackOriginVerifier(["::ffff:203.0.113.5", "::ffff:198.51.100.0/120"])
    assert verifier.is_allowed("203.0.113.5")
    assert verifier.is_allowed("198.51.100.77")


@pytest.mark.parametrize("peer", [None, "", "localhost", "1.2.3", "[::1", "1.2.3.4:port", "1.2.3.4:４４３"])
def test_missing_or_garbage_peer_is_refused(peer: str | None) -> None:
    verifier = CallbackOriginVerifier(["0.0.0.0/0", "::/0"])
    assert not verifier.is_allowed(peer)
    with pytest.raises(CallbackOriginError, match="peer address"):
        verifier.verify(peer)


# -- X-Forwarded-For --------------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    verifier = CallbackOriginVerifier()
    # A stranger claiming to be Jumio through the header is refused...
    assert not verifier.is_allowed(STRANGER, US_OLD)
    # ...and a real Jumio peer is not harmed by a header it did not write.
    assert verifier.is_allowed(US_OLD, STRANGER)


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    assert not verifier.is_allowed("192.168.1.1", US_OLD)


def test_forwarded_for_from_a_trusted_proxy_is_used() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    assert verifier.is_allowed("10.1.2.3", US_OLD)
    assert not verifier.is_allowed("10.1.2.3", STRANGER)


def test_the_right_most_untrusted_hop_is_the_origin() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8", "fd00::/8"])
    # Jumio -> our proxy chain: the left part may be anything the client wrote.
    assert verifier.is_allowed("10.0.0.1", f"{STRANGER}, {US_OLD}")
    assert verifier.is_allowed("10.0.0.1", f"{US_OLD}, 10.0.0.7")
    assert verifier.is_allowed("10.0.0.1", f"{US_OLD},fd00::7, 10.0.0.9")
    # A spoofed Jumio address on the left does not help a stranger.
    assert not verifier.is_allowed("10.0.0.1", f"{US_OLD}, {STRANGER}")
    assert not verifier.is_allowed("10.0.0.1", f"{US_OLD}, {STRANGER}, 10.0.0.7")


def test_forwarded_for_hops_with_ports_and_mapped_addresses() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["127.0.0.1", "::1"])
    assert verifier.is_allowed("::1", f"{US_OLD}:5555")
    assert verifier.is_allowed("::ffff:127.0.0.1", f"[::ffff:{US_OLD}]:5555")
    assert verifier.is_allowed("127.0.0.1", f" , {US_OLD} ,")  # empty elements are skipped


def test_trusted_proxy_without_forwarded_for_is_itself_the_origin() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    assert not verifier.is_allowed("10.0.0.1")
    assert not verifier.is_allowed("10.0.0.1", "")
    assert not verifier.is_allowed("10.0.0.1", " , ")


def test_a_chain_of_only_trusted_proxies_is_an_internal_request() -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    assert not verifier.is_allowed("10.0.0.1", "10.0.0.2, 10.0.0.3")


@pytest.mark.parametrize("header", ["unknown", f"{US_OLD}, _hidden", "1.2.3", "not an ip, 10.0.0.3"])
def test_malformed_forwarded_for_from_a_trusted_proxy_is_refused(header: str) -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    assert not verifier.is_allowed("10.0.0.1", header)
    with pytest.raises(CallbackOriginError, match="malformed"):
        verifier.verify("10.0.0.1", header)


def test_refusals_never_reveal_the_address(caplog: pytest.LogCaptureFixture) -> None:
    verifier = CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"])
    caplog.set_level(logging.DEBUG, logger="netverify_async")
    for peer, header in [(STRANGER, None), ("10.0.0.1", STRANGER), ("10.0.0.1", f"{STRANGER}x")]:
        with pytest.raises(CallbackOriginError) as info:
            verifier.verify(peer, header)
        assert STRANGER not in str(info.value)
        assert "10.0.0.1" not in str(info.value)
    assert caplog.records  # refusals are logged...
    assert all(STRANGER not in r.getMessage() and "10.0.0.1" not in r.getMessage() for r in caplog.records)


def test_repr_shows_configuration_not_addresses() -> None:
    text = repr(CallbackOriginVerifier(trusted_proxies=["10.0.0.0/8"]))
    assert "US" in text and "trusted_proxies=1" in text
    assert US_OLD not in text and "10.0.0.0" not in text


# -- DNS resolution (injected resolver) -------------------------------------------------------------


class FakeDNS:
    """An async resolver with a fixed answer per host name that counts its lookups."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []
        self.fail: set[str] = set()

    async def __call__(self, hostname: str) -> Iterable[str]:
        self.lookups.append(hostname)
        await anyio.sleep(0)
        if hostname in self.fail:
            raise OSError("simulated DNS failure")
        return self.answers.get(hostname, [])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


US_HOSTS = CALLBACK_SOURCE_HOSTNAMES["US"]


def us_dns() -> FakeDNS:
    return FakeDNS(
        {US_HOSTS[0]: ["192.0.2.10"], US_HOSTS[1]: ["192.0.2.11", "::ffff:192.0.2.12", "2001:db8::12"]}
    )


def test_resolution_is_off_by_default_and_the_resolver_is_never_called() -> None:
    dns = us_dns()
    verifier = CallbackOriginVerifier(resolver=dns)
    assert verifier.hostnames == ()
    anyio.run(verifier.verify_async, US_OLD)
    assert dns.lookups == []


def test_hostnames_cover_the_old_and_new_callback_names() -> None:
    verifier = CallbackOriginVerifier(resolve_hostnames=True, resolver=us_dns())
    assert "callback.amer-1.jumio.ai" in verifier.hostnames
    assert "callback.emea-1.jumio.ai" in verifier.hostnames
    assert "callback.apac-1.jumio.ai" in verifier.hostnames
    assert "callback.jumio.com" in verifier.hostnames


@pytest.mark.anyio
async def test_resolved_addresses_are_allowed_after_refresh() -> None:
    dns = us_dns()
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=FakeClock()
    )
    assert not verifier.is_allowed("192.0.2.11")  # nothing resolved yet
    assert await verifier.is_allowed_async("192.0.2.11")
    assert verifier.is_allowed("192.0.2.10")
    assert verifier.is_allowed("192.0.2.12")  # the mapped answer counts as IPv4
    assert verifier.is_allowed("2001:db8::12")
    assert verifier.is_allowed(US_OLD)  # the static list still applies
    assert not verifier.is_allowed(STRANGER)
    assert sorted(dns.lookups) == sorted(US_HOSTS)


@pytest.mark.anyio
async def test_dns_only_allowlist_with_explicit_host_names() -> None:
    dns = FakeDNS({"callbacks.example.test": ["203.0.113.9"]})
    verifier = CallbackOriginVerifier(
        [], resolve_hostnames=True, hostnames="callbacks.example.test", resolver=dns, clock=FakeClock()
    )
    await verifier.verify_async("203.0.113.9")
    with pytest.raises(CallbackOriginError):
        await verifier.verify_async(US_OLD)
    assert dns.lookups == ["callbacks.example.test"]


@pytest.mark.anyio
async def test_answers_are_cached_for_the_ttl_then_refreshed() -> None:
    dns, clock = us_dns(), FakeClock()
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=clock, dns_ttl=60
    )
    await verifier.refresh()
    assert len(dns.lookups) == 2
    clock.now += 59
    assert await verifier.is_allowed_async("192.0.2.10")
    assert len(dns.lookups) == 2  # still cached

    dns.answers[US_HOSTS[0]] = ["192.0.2.99"]
    clock.now += 2
    assert await verifier.is_allowed_async("192.0.2.99")
    assert len(dns.lookups) == 4
    assert not verifier.is_allowed("192.0.2.10")  # the old answer is replaced, not accumulated


@pytest.mark.anyio
async def test_force_refresh_ignores_the_ttl() -> None:
    dns = us_dns()
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=FakeClock()
    )
    await verifier.refresh()
    await verifier.refresh(force=True)
    assert len(dns.lookups) == 4


@pytest.mark.anyio
async def test_a_failed_lookup_keeps_earlier_addresses_and_retries_soon(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dns, clock = us_dns(), FakeClock()
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=clock, dns_ttl=600
    )
    await verifier.refresh()
    dns.fail.add(US_HOSTS[0])
    clock.now += 601
    with caplog.at_level(logging.WARNING, logger="netverify_async"):
        assert await verifier.is_allowed_async("192.0.2.10")  # kept despite the failure
    assert any(US_HOSTS[0] in r.getMessage() for r in caplog.records)
    lookups = len(dns.lookups)
    clock.now += 10
    await verifier.refresh()
    assert len(dns.lookups) == lookups  # not hammering DNS
    dns.fail.clear()
    clock.now += 25
    await verifier.refresh()
    assert len(dns.lookups) == lookups + 1  # retried after 30 s, not after the full TTL


@pytest.mark.anyio
async def test_a_failed_first_lookup_is_not_fatal() -> None:
    dns = us_dns()
    dns.fail.update(US_HOSTS)
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=FakeClock()
    )
    assert await verifier.is_allowed_async(US_OLD)
    assert not await verifier.is_allowed_async("192.0.2.10")
    assert verifier.resolved_addresses == frozenset()


@pytest.mark.anyio
async def test_empty_and_garbage_answers_are_ignored() -> None:
    dns = FakeDNS({US_HOSTS[0]: [], US_HOSTS[1]: ["garbage", "192.0.2.50"]})
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=FakeClock()
    )
    await verifier.refresh()
    assert verifier.resolved_addresses == frozenset({ipaddress.ip_address("192.0.2.50")})


@pytest.mark.anyio
async def test_a_hanging_resolver_times_out_without_failing_the_check() -> None:
    async def hanging(hostname: str) -> list[str]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=hanging, dns_timeout=0.05, clock=FakeClock()
    )
    assert await verifier.is_allowed_async(US_OLD)


@pytest.mark.anyio
async def test_concurrent_checks_resolve_each_host_once() -> None:
    dns = us_dns()
    verifier = CallbackOriginVerifier(
        regions=("US",), resolve_hostnames=True, resolver=dns, clock=FakeClock()
    )
    results: list[bool] = []

    async def check() -> None:
        results.append(await verifier.is_allowed_async("192.0.2.11"))

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(check)
    assert results == [True] * 10
    assert sorted(dns.lookups) == sorted(US_HOSTS)


@pytest.mark.parametrize(("name", "value"), [("dns_ttl", 0), ("dns_timeout", -1)])
def test_dns_settings_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ConfigurationError, match=name):
        CallbackOriginVerifier(resolve_hostnames=True, **{name: value})  # type: ignore[arg-type]
