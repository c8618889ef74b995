"""The opening handshake for both roles: request heads, the 101 answer, and its check.

Rule (server role): hubbub's own fast path takes only a plain, valid WebSocket
upgrade to the client endpoint (GET, HTTP/1.1, ``Upgrade: websocket``, version
13, a 16-byte key, no body, an allowed origin, no permessage-deflate wanted by
both sides). Anything else, malformed heads included, is left to aiohttp,
which answers it with the right status; so this parser may be strict and
small, never lenient.

Client role (the load generator, the audit): ``client_request`` builds an
upgrade request, ``parse_response`` reads the server's answer head and
``accept_key`` is what its ``Sec-WebSocket-Accept`` must be (RFC 6455 4.1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

#: Appended to the client's key before hashing (RFC 6455 1.3).
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """Request line and headers (names lower-cased, in order)."""

    method: str
    path: str  # without the query string
    version: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        found: set[str] = set()
        for key, value in self.headers:
            if key == name:
                found.update(token.strip().lower() for token in value.split(","))
        return found


def request_path(first_line: bytes) -> bytes | None:
    """The path of a request line (``GET /x?y HTTP/1.1`` -> ``/x``), or None if odd."""
    parts = first_line.split(b" ")
    if len(parts) != 3:
        return None
    return parts[1].split(b"?", 1)[0]


def parse_head(raw: bytes) -> RequestHead | None:
    """Parse a head ending with CRLF CRLF; None when it is not plain HTTP/1.x."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    lines = text[: -len(HEAD_END)].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            return None  # no colon, empty name, space before the colon, obsolete folding
        headers.append((name.lower(), value.strip(" \t")))
    return RequestHead(parts[0], parts[1].split("?", 1)[0], parts[2], headers)


def upgrade_key(head: RequestHead, *, compression: bool) -> str | None:
    """The client's Sec-WebSocket-Key if the fast path may answer this head, else None.

    ``compression``: the server offers permessage-deflate; a client asking for
    it then goes to aiohttp, which implements the extension.
    """
    if head.method != "GET" or head.version != "HTTP/1.1":
        return None
    if "websocket" not in head.tokens("upgrade") or "upgrade" not in head.tokens("connection"):
        return None
    if head.get("sec-websocket-version") != "13":
        return None
    if head.get("content-length") not in (None, "0") or head.get("transfer-encoding"):
        return None
    if compression and head.get("sec-websocket-extensions"):
        return None
    key = head.get("sec-websocket-key")
    if key is None:
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    return key


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: a server sends it, a client checks it."""
    digest = hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest()  # the RFC fixes SHA-1 here
    return base64.b64encode(digest).decode()


def accept_response(key: str) -> bytes:
    """The 101 response completing the handshake for ``key``."""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_key(key).encode() + b"\r\n\r\n"
    )


# -- client role ---------------------------------------------------------------------


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64."""
    return base64.b64encode(os.urandom(16)).decode()


def client_request(
    host: str,
    path: str,
    key: str,
    *,
    origin: str | None = None,
    extensions: str | None = None,
    protocols: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """An upgrade request head; ``host`` is the Host header's value (``name:port``)."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    if extensions is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if protocols is not None:
        lines.append(f"Sec-WebSocket-Protocol: {protocols}")
    lines += [f"{name}: {value}" for name, value in extra or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """Status line and headers of a server's answer (names lower-cased, in order)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        found: set[str] = set()
        for key, value in self.headers:
            if key == name:
                found.update(token.strip().lower() for token in value.split(","))
        return found


def parse_response(raw: bytes) -> ResponseHead | None:
    """Parse a response head ending with CRLF CRLF; None when it is not HTTP/1.x."""
    text = raw.decode("latin-1")
    lines = text[: -len(HEAD_END)].split("\r\n") if text.endswith("\r\n\r\n") else []
    if not lines:
        return None
    version, _, rest = lines[0].partition(" ")
    status, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not status.isdigit():
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name:
            return None
        headers.append((name.strip().lower(), value.strip(" \t")))
    return ResponseHead(int(status), reason, headers)


def upgrade_problem(head: ResponseHead, key: str) -> str | None:
    """Why ``head`` does not complete the handshake for ``key`` (RFC 6455 4.1), or None."""
    if head.status != 101:
        return f"status {head.status} {head.reason}".rstrip()
    if "websocket" not in head.tokens("upgrade"):
        return "no 'Upgrade: websocket' header"
    if "upgrade" not in head.tokens("connection"):
        return "no 'Connection: Upgrade' header"
    if head.get("sec-websocket-accept") != accept_key(key):
        return "wrong Sec-WebSocket-Accept"
    return None
