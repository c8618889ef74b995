"""The client's address: the socket's peer, or what a trusted proxy says it is.

Rule: ``X-Forwarded-For`` and ``X-Real-IP`` are believed only when the
socket's peer is one of ``http_server.trusted_proxies``; anyone else could
write any address there. In ``X-Forwarded-For`` (``client, proxy1, proxy2``)
each proxy appends the address it got the request from, so the client is the
rightmost address that is not itself a trusted proxy. The address is worked
out when something asks (a log line, a hook), never per connection up front.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = ["client_address", "trusted_networks"]


@functools.lru_cache(maxsize=8)
def trusted_networks(proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """``http_server.trusted_proxies`` (validated by the config loader) as networks."""
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in proxies)


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str, header: Callable[[str], str | None], proxies: tuple[str, ...]) -> str:
    """The client's address for a connection from ``peer``; ``header(name)`` reads a
    request header (lower-case name), ``proxies`` is ``http_server.trusted_proxies``."""
    if not proxies or not peer:
        return peer
    networks = trusted_networks(proxies)
    if not _trusted(peer, networks):
        return peer
    forwarded = header("x-forwarded-for")
    if forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not _trusted(hop, networks):
                return hop
        if hops:
            return hops[0]  # every hop is a trusted proxy: the first one started it
    real = header("x-real-ip")
    return real.strip() if real and real.strip() else peer
