"""The public port, bound before the server stack is imported.

Rule: ``hubbub serve`` binds and listens on its public port before it loads
its configuration's model and imports the hub, so that clients connecting
meanwhile wait in the kernel's accept queue instead of being refused: a refused
client backs off, and after a restart the reconnect storm lasts as long as its
longest backoff. Where to listen is read first from the flags, the ``HUBBUB_*``
variables and the file's ``http_server`` section alone (``planned_address``),
layered as the loader layers them; the loaded configuration has the last word
(a socket bound where it does not say is closed and the right one bound). Only
for a literal IP address (the default 127.0.0.1, 0.0.0.0, ::1): a host name or
"" (every interface) is left to asyncio, which binds each address it resolves.
This module imports only the standard library (and config/files.py, which does
too): it runs before anything else is loaded.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hubbub.config.files import file_format, parse

#: The loader's defaults for ``http_server.address`` and ``http_server.port``.
DEFAULT_ADDRESS, DEFAULT_PORT = "127.0.0.1", 8000

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


def planned_address(
    path: str | None, address: str | None, port: int | None, env: Mapping[str, str]
) -> tuple[str, int] | None:
    """The ``(address, port)`` the configuration will give ``http_server``: the flags
    over ``HUBBUB_HTTP_SERVER_ADDRESS``/``_PORT`` over the file over the defaults
    (config/loader.py's order). None when unsure (a file that does not read or
    parse, a value of the wrong type): the loaded configuration decides then."""
    section: Mapping[str, Any] = {}
    if path is not None and (address is None or port is None):
        file = Path(path)
        try:
            raw = parse(file.read_bytes().decode("utf-8"), file_format(file))
        except Exception:  # any failure: the loader will tell it
            return None
        section = raw.get("http_server", {}) if isinstance(raw, dict) else {}
        if not isinstance(section, dict):
            return None
    if address is None:
        address = env.get("HUBBUB_HTTP_SERVER_ADDRESS", section.get("address", DEFAULT_ADDRESS))
    if port is None:
        text = env.get("HUBBUB_HTTP_SERVER_PORT")
        try:
            port = int(text.strip()) if text is not None else section.get("port", DEFAULT_PORT)
        except ValueError:
            return None
    if not isinstance(address, str) or not isinstance(port, int) or isinstance(port, bool):
        return None
    return address, port
