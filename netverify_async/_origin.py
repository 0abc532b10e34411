"""Check where a callback came from: Jumio's published callback addresses, behind trusted proxies or not.

The callback carries no signature; Jumio's advice is to accept it only from their published addresses.
:class:`CallbackOriginVerifier` does that with the ASGI client address plus ``X-Forwarded-For`` (read only from
trusted proxies), optionally adding the addresses Jumio's callback host names resolve to. It is re-exported by
:mod:`netverify_async.callbacks`, where users import it.

Nothing about a refused address is logged or put in an error message: it may be an end user's.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from ._constants import CALLBACK_SOURCE_HOSTNAMES, CALLBACK_SOURCE_IPS
from ._errors import CallbackOriginError, ConfigurationError

__all__ = ["CallbackOriginVerifier", "Resolver", "resolve_with_anyio"]

#: The logger of the callback receiver (origin checks and parsing log to the same place).
logger = logging.getLogger("netverify_async.callbacks")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: An async function from a host name to the addresses it resolves to (as text).
Resolver = Callable[[str], Awaitable[Iterable[str]]]

_REGION_ALIASES = {"US": "US", "AMER": "US", "EU": "EU", "EMEA": "EU", "SGP": "SGP", "APAC": "SGP"}
#: After a failed lookup, try again this soon (seconds) rather than after the full TTL.
_DNS_RETRY_AFTER_FAILURE_S = 30.0


def _unmap(address: _IPAddress) -> _IPAddress:
    """``::ffff:1.2.3.4`` is the IPv4 address 1.2.3.4 seen through an IPv6 socket."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_ip(text: str) -> _IPAddress | None:
    """An address from a socket peer or a forwarded-for hop (``[v6]:port``, ``v4:port`` allowed), or None."""
    candidate = text.strip()
    if candidate.startswith("["):
        end = candidate.find("]")
        if end == -1:
            return None
        port = candidate[end + 1 :]
        if port and not (port.startswith(":") and port[1:].isascii() and port[1:].isdigit()):
            return None
        candidate = candidate[1:end]
    elif candidate.count(":") == 1:
        host, _, port = candidate.partition(":")
        if not (port.isascii() and port.isdigit()):
            return None
        candidate = host
    try:
        return _unmap(ipaddress.ip_address(candidate))
    except ValueError:
        return None


def _as_network(entry: str | _IPAddress | _IPNetwork, what: str) -> _IPNetwork:
    try:
        if isinstance(entry, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            network: _IPNetwork = entry
        elif isinstance(entry, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            network = ipaddress.ip_network(_unmap(entry))
        else:
            network = ipaddress.ip_network(entry.strip(), strict=False)
    except (ValueError, TypeError, AttributeError):
        raise ConfigurationError(f"{what}: {entry!r} is not an IP address or network") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


class _AddressSet:
    """Exact addresses in a set (the common case) plus any wider networks."""

    __slots__ = ("addresses", "networks")

    def __init__(self, networks: Iterable[_IPNetwork]) -> None:
        singles: set[_IPAddress] = set()
        wider: list[_IPNetwork] = []
        for network in networks:
            if network.num_addresses == 1:
                singles.add(network.network_address)
            else:
                wider.append(network)
        self.addresses = frozenset(singles)
        self.networks = tuple(wider)

    def __contains__(self, address: _IPAddress) -> bool:
        if address in self.addresses:
            return True
        return any(address.version == net.version and address in net for net in self.networks)

    def __len__(self) -> int:
        return len(self.addresses) + len(self.networks)


async def resolve_with_anyio(hostname: str) -> list[str]:
    """The default resolver: the addresses of ``hostname`` via :func:`anyio.getaddrinfo`."""
    import socket

    import anyio

    infos = await anyio.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class CallbackOriginVerifier:
    """Accept callbacks only from Jumio's callback addresses.

    By default the allowlist is the documented address list of the chosen ``regions`` (``"US"``, ``"EU"``,
    ``"SGP"``; ``"AMER"``, ``"EMEA"`` and ``"APAC"`` are accepted as aliases), including the addresses Jumio
    added later. Pass ``allowed`` (addresses or networks) to replace it.

    Behind a reverse proxy, list the proxy's addresses or networks in ``trusted_proxies`` (e.g.
    ``"10.0.0.0/8"``). ``X-Forwarded-For`` is then read **only** when the direct peer is one of them, and the
    origin is the right-most address in it that is not itself a trusted proxy. Without trusted proxies the
    header is ignored, so a client cannot claim to be Jumio by sending it.

    With ``resolve_hostnames=True`` the callback host names of the regions (``callback.amer-1.jumio.ai`` ...)
    are also resolved, asynchronously, in :meth:`refresh` / :meth:`verify_async`, and cached for ``dns_ttl``
    seconds. A failed lookup keeps the earlier answer and is retried after 30 seconds. ``resolver`` replaces
    the DNS lookup (an async function from host name to addresses), which is how tests run without a network.

    Nothing about a refused address is logged or put in the error message: it may be an end user's.
    """

    def __init__(
        self,
        allowed: Iterable[str | _IPAddress | _IPNetwork] | None = None,
        *,
        regions: Iterable[str] = ("US", "EU", "SGP"),
        trusted_proxies: Iterable[str | _IPAddress | _IPNetwork] = (),
        resolve_hostnames: bool = False,
        hostnames: Iterable[str] | None = None,
        resolver: Resolver | None = None,
        dns_ttl: float = 300.0,
        dns_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(regions, str):
            regions = (regions,)
        chosen: list[str] = []
        for region in regions:
            canonical = _REGION_ALIASES.get(str(region).strip().upper())
            if canonical is None:
                raise ConfigurationError(
                    f"regions: {region!r} is not a Jumio data center (use {', '.join(_REGION_ALIASES)})"
                )
            if canonical not in chosen:
                chosen.append(canonical)
        self.regions: tuple[str, ...] = tuple(chosen)
        if isinstance(allowed, str):
            allowed = (allowed,)
        if allowed is None:
            entries: list[str | _IPAddress | _IPNetwork] = [
                ip for r in self.regions for ip in CALLBACK_SOURCE_IPS[r]
            ]
        else:
            entries = list(allowed)
        self._static = _AddressSet(_as_network(entry, "allowed") for entry in entries)
        if isinstance(trusted_proxies, str):
            trusted_proxies = (trusted_proxies,)
        self._proxies = _AddressSet(_as_network(entry, "trusted_proxies") for entry in trusted_proxies)

        self.resolve_hostnames = bool(resolve_hostnames)
        if not self.resolve_hostnames:
            self._hostnames: tuple[str, ...] = ()
        elif hostnames is not None:
            self._hostnames = (hostnames,) if isinstance(hostnames, str) else tuple(hostnames)
        else:
            self._hostnames = tuple(h for r in self.regions for h in CALLBACK_SOURCE_HOSTNAMES[r])
        if not len(self._static) and not self._hostnames:
            raise ConfigurationError(
                "allowed: the allowlist is empty and no host names are resolved, so no "
                "callback would ever be accepted"
            )
        if not dns_ttl > 0:
            raise ConfigurationError("dns_ttl: must be a positive number of seconds")
        if not dns_timeout > 0:
            raise ConfigurationError("dns_timeout: must be a positive number of seconds")
        self._resolver: Resolver = resolver if resolver is not None else resolve_with_anyio
        self._dns_ttl = float(dns_ttl)
        self._dns_timeout = float(dns_timeout)
        self._clock = clock
        self._resolved: dict[str, frozenset[_IPAddress]] = {}
        self._expires: dict[str, float] = {}
        self._dynamic: frozenset[_IPAddress] = frozenset()
        self._lock: Any = None

    def __repr__(self) -> str:
        return (
            f"CallbackOriginVerifier(regions={self.regions!r}, allowed={len(self._static)} entries, "
            f"trusted_proxies={len(self._proxies)} entries, resolve_hostnames={self.resolve_hostnames}, "
            f"resolved={len(self._dynamic)} addresses)"
        )

    @property
    def hostnames(self) -> tuple[str, ...]:
        """The host names resolved when ``resolve_hostnames`` is on (empty otherwise)."""
        return self._hostnames

    @property
    def resolved_addresses(self) -> frozenset[_IPAddress]:
        """The addresses found by the most recent successful lookups (empty until :meth:`refresh` ran)."""
        return self._dynamic

    def _origin(self, peer_ip: str | None, forwarded_for: str | None) -> tuple[_IPAddress | None, str]:
        """The address the request came from, and a reason code when it cannot be told."""
        if not peer_ip:
            return None, "no_peer"
        peer = _parse_ip(peer_ip)
        if peer is None:
            return None, "bad_peer"
        if not len(self._proxies) or peer not in self._proxies or not forwarded_for:
            return peer, ""
        hops = [hop for hop in (part.strip() for part in forwarded_for.split(",")) if hop]
        if not hops:
            return peer, ""
        parsed: list[_IPAddress] = []
        for hop in reversed(hops):
            address = _parse_ip(hop)
            if address is None:
                return None, "malformed_forwarded_for"
            if address not in self._proxies:
                return address, ""
            parsed.append(address)
        # Every hop is one of our proxies: the request started inside our own network.
        return parsed[-1], ""

    def _allowed(self, address: _IPAddress) -> bool:
        return address in self._static or address in self._dynamic

    def is_allowed(self, peer_ip: str | None, forwarded_for: str | None = None) -> bool:
        """Whether a request from ``peer_ip`` (the ASGI ``client`` host) may be a Jumio callback.

        ``forwarded_for`` is the ``X-Forwarded-For`` header (join repeated headers with ``", "`` in order); it
        is used only when ``peer_ip`` is a trusted proxy. Uses the addresses resolved so far; call
        :meth:`is_allowed_async` to refresh host names first.
        """
        origin, _ = self._origin(peer_ip, forwarded_for)
        return origin is not None and self._allowed(origin)

    def verify(self, peer_ip: str | None, forwarded_for: str | None = None) -> None:
        """Like :meth:`is_allowed`, but raise :class:`~netverify_async.CallbackOriginError` when not allowed.

        The message says why (no peer address, malformed X-Forwarded-For, not on the allowlist) but never
        includes the address.
        """
        origin, reason = self._origin(peer_ip, forwarded_for)
        if origin is not None and self._allowed(origin):
            return
        logger.debug("callback origin refused (%s)", reason or "not_allowed")
        if reason in ("no_peer", "bad_peer"):
            raise CallbackOriginError("callback refused: the peer address is missing or not an IP address")
        if reason == "malformed_forwarded_for":
            raise CallbackOriginError("callback refused: X-Forwarded-For from a trusted proxy is malformed")
        raise CallbackOriginError(
            "callback refused: the sender is not on the allowlist of Jumio callback addresses"
        )

    async def is_allowed_async(self, peer_ip: str | None, forwarded_for: str | None = None) -> bool:
        """:meth:`is_allowed` after refreshing the resolved host names when their TTL has run out."""
        await self.refresh()
        return self.is_allowed(peer_ip, forwarded_for)

    async def verify_async(self, peer_ip: str | None, forwarded_for: str | None = None) -> None:
        """:meth:`verify` after refreshing the resolved host names when their TTL has run out."""
        await self.refresh()
        self.verify(peer_ip, forwarded_for)

    def _due(self) -> list[str]:
        now = self._clock()
        return [name for name in self._hostnames if self._expires.get(name, float("-inf")) <= now]

    async def refresh(self, *, force: bool = False) -> None:
        """Resolve the callback host names whose cached answer is older than ``dns_ttl`` (all with ``force``).

        Does nothing when ``resolve_hostnames`` is off. Never raises for a failed lookup: the earlier
        addresses stay in use and a warning (naming only the host) is logged.
        """
        if not self._hostnames or (not force and not self._due()):
            return
        import anyio

        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            due = list(self._hostnames) if force else self._due()
            for hostname in due:
                await self._resolve(hostname)
            self._dynamic = frozenset().union(*self._resolved.values())

    async def _resolve(self, hostname: str) -> None:
        import anyio

        now = self._clock()
        try:
            with anyio.fail_after(self._dns_timeout):
                answers = await self._resolver(hostname)
            found = frozenset(a for a in (_parse_ip(str(answer)) for answer in answers) if a is not None)
        except Exception:  # a DNS failure must not take the callback endpoint down
            logger.warning(
                "could not resolve callback host %s; keeping the earlier addresses", hostname, exc_info=True
            )
            self._expires[hostname] = now + min(self._dns_ttl, _DNS_RETRY_AFTER_FAILURE_S)
            return
        if not found:
            logger.warning("callback host %s resolved to no address; keeping the earlier addresses", hostname)
            self._expires[hostname] = now + min(self._dns_ttl, _DNS_RETRY_AFTER_FAILURE_S)
            return
        self._resolved[hostname] = found
        self._expires[hostname] = now + self._dns_ttl
