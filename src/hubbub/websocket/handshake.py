"""The HTTP request head of a new connection, and the one upgrade hubbub answers itself.

Rule: hubbub's own fast path takes only a plain, valid WebSocket upgrade to the
client endpoint (GET, HTTP/1.1, ``Upgrade: websocket``, version 13, a 16-byte
key, no body, an allowed origin, no permessage-deflate wanted by both sides).
Anything else, malformed heads included, is left to aiohttp, which answers it
with the right status; so this parser may be strict and small, never lenient.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qs

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


def accept_response(key: str, *, subprotocol: str | None = None) -> bytes:
    """The 101 response completing the handshake for ``key`` (and the agreed subprotocol)."""
    digest = hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest()  # the RFC fixes SHA-1 here
    accept = base64.b64encode(digest)
    protocol = b"Sec-WebSocket-Protocol: " + subprotocol.encode() + b"\r\n" if subprotocol else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n" + protocol + b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


#: The subprotocol of Centrifugo's Protobuf client protocol.
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


def wants_protobuf(head: RequestHead, target: str) -> bool:
    """The client asks for the Protobuf protocol: the ``centrifuge-protobuf``
    subprotocol, or (as Centrifugo accepts) ``format=protobuf`` or
    ``cf_protocol=protobuf`` in the query of ``target`` (the request target)."""
    if PROTOBUF_SUBPROTOCOL in head.tokens("sec-websocket-protocol"):
        return True
    query = parse_qs(target.partition("?")[2])
    return "protobuf" in (*query.get("format", ()), *query.get("cf_protocol", ()))
