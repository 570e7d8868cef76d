"""The caller's address, believing X-Real-IP / X-Forwarded-For only from trusted proxies.

Anyone can send those headers; only a proxy we run (Nginx) may vouch for them. Without
``ROUTER_TRUSTED_PROXIES`` the socket peer is the client, so a forged header cannot move a
caller into another caller's rate-limit bucket.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from core.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str], source: str = "ROUTER_TRUSTED_PROXIES") -> tuple[Network, ...]:
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{source}: {value!r} is not an IP address or CIDR network") from None
    return tuple(out)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: tuple[Network, ...]) -> bool:
    return ip is not None and any(ip in net for net in networks)


def client_address(peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy that names another.

    X-Real-IP (what the Nginx config sets) wins; otherwise X-Forwarded-For is read from the
    right, skipping trusted proxies, and the first untrusted hop is the client.
    """
    if not trusted or not _trusted(_ip(peer), trusted):
        return peer
    real = _ip(headers.get("X-Real-IP", ""))
    if real is not None:
        return str(real)
    hops = [h for h in headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            break  # a garbled hop: trust nothing left of it
        if not _trusted(ip, trusted):
            return str(ip)
    return peer
