"""The public port, bound before the server stack is imported.

Rule: ``hubbub serve`` binds and listens on its public port right after reading
its configuration, before it imports and starts the hub, so that clients
connecting meanwhile wait in the kernel's accept queue instead of being refused:
a refused client backs off, and after a restart the reconnect storm lasts as
long as its longest backoff. Only for a literal IP address (the default
127.0.0.1, 0.0.0.0, ::1): a host name or "" (every interface) is left to
asyncio, which binds each address it resolves. This module imports only the
standard library: it runs before anything else is loaded.
"""

from __future__ import annotations

import ipaddress
import socket

#: The accept queue's length: a reconnect storm's connections wait in it while the
#: node starts (the kernel caps it at net.core.somaxconn).
BACKLOG = 4096


def listen_early(host: str, port: int) -> socket.socket | None:
    """A non-blocking socket listening on ``host:port``; None when ``host`` is not a
    literal IP address. Raises ``OSError`` as binding does (the port is taken)."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # As asyncio's create_server does: a restarted node may bind at once
        # (connections of the old one may linger in TIME_WAIT), IPv6 only on ::.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
