"""The client's settings and the checks on them: region, base URL, User-Agent, credentials."""

from __future__ import annotations

import ipaddress
import socket

import httpx

from ._constants import REGION_BASE_URLS
from ._enums import TextEnum
from ._errors import ConfigurationError

__all__ = ["Region", "check_base_url", "check_credential", "check_user_agent", "is_loopback_host"]


class Region(TextEnum):
    """Jumio data centres, with their documented base URLs."""

    US = "US"
    EU = "EU"
    SGP = "SGP"

    @property
    def base_url(self) -> str:
        return REGION_BASE_URLS[self.value]


def is_loopback_host(host: str | None) -> bool:
    """True for an address in 127.0.0.0/8 or ::1, and for ``localhost`` when every address it resolves to is
    one. Any other name (``*.localhost`` included) is not taken on trust: a resolver may send it anywhere."""
    if not host:
        return False
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        pass
    if bare.lower().rstrip(".") != "localhost":
        return False
    try:
        found = socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in found}
    return bool(addresses) and all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses)


def check_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError("base_url: not a valid URL") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError("base_url: must be an absolute http(s) URL")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise ConfigurationError(
            "base_url: plain http:// is refused except for loopback hosts (127.0.0.1, ::1, localhost); "
            "use https://"
        )
    if url.userinfo:
        raise ConfigurationError("base_url: must not contain credentials; pass api_token/api_secret")
    if url.query or url.fragment:
        raise ConfigurationError("base_url: must not have a query or fragment")
    return str(url).rstrip("/")


def check_user_agent(user_agent: str) -> str:
    from ._useragent import is_descriptive_user_agent

    if not isinstance(user_agent, str) or not is_descriptive_user_agent(user_agent):
        raise ConfigurationError(
            "user_agent: must name your business and your app with a version, e.g. 'Example Corp SampleApp/1.0.1' "
            "(Jumio refuses requests without a descriptive User-Agent with 403)"
        )
    return user_agent


def check_credential(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name}: must be a non-empty string")
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigurationError(f"{name}: must not contain control characters")
    return value
