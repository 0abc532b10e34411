"""Jumio's rules for callback URLs, and the loopback exception the emulator allows for local receivers."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from .._config import is_loopback_host

__all__ = ["callback_url_problem", "is_loopback_http_url"]


def is_loopback_http_url(url: str) -> bool:
    """True for an http(s) URL whose host is loopback (the kind ``allow_http_callbacks`` admits)."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and is_loopback_host(parts.hostname)
    except ValueError:
        return False


def callback_url_problem(url: str, *, allow_http: bool) -> str | None:
    """Why Jumio would refuse ``url`` as a callback URL (https, no port, no IP address, no query or fragment).

    With ``allow_http``, http(s) URLs on loopback hosts are accepted with a port and a query. Returns None
    when acceptable.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "is not a valid URL"
    host = parts.hostname
    if not host:
        return "has no host"
    if parts.fragment:
        return "must not have a fragment"
    if allow_http and parts.scheme in ("http", "https") and is_loopback_host(host):
        return None
    if parts.scheme != "https":
        hint = "" if allow_http else " (http is accepted for loopback hosts only with allow_http_callbacks)"
        return f"must use https{hint}"
    if port is not None:
        return "must not name a port"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return "must not be an IP address"
    if parts.query:
        return "must not have a query"
    return None
