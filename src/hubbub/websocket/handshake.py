"""The opening handshake without I/O (RFC 6455 section 4): parse, judge, answer.

Rule: ``check_upgrade`` is the one judge of a WebSocket upgrade request for
every door of hubbub (its own listener, an aiohttp application embedding it,
TLS). It applies RFC 6455 4.2.1 in order and returns either the client's key or
a ``Refusal`` carrying the HTTP status and headers the RFC asks for (426 with
``Sec-WebSocket-Version: 13`` for another version, 400 for a malformed request,
405 for another method). Origin checks (``origin_allowed``) and extension
negotiation are the caller's policy, decided after this. The parser is strict
and small: a head it cannot read is refused, never guessed at.

Client role (the load generator, the audit): ``client_request`` builds an
upgrade request, ``parse_response`` reads the server's answer head and
``upgrade_problem`` checks it (status, headers, ``accept_key``: RFC 6455 4.1).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import msgspec

#: Appended to the client's key before hashing (RFC 6455 1.3).
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_END = b"\r\n\r\n"
#: The only protocol version hubbub speaks (RFC 6455 4.4).
VERSION = "13"
_HTTP_VERSION = re.compile(r"HTTP/1\.(\d+)")
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    426: "Upgrade Required",
}


@dataclass(frozen=True, slots=True)
class RequestHead:
    """Request line and headers (names lower-cased, in order)."""

    method: str
    path: str  # without the query string
    version: str
    headers: list[tuple[str, str]]
    query: str = ""  # after the "?" of the request target
    # Every value of each header, by name: a handshake asks for a header ten times.
    by_name: dict[str, list[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, list[str]] = {}
        for key, value in self.headers:
            found = by_name.get(key)
            if found is None:
                by_name[key] = [value]
            else:
                found.append(value)
        object.__setattr__(self, "by_name", by_name)  # frozen: set once, here

    def get(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        found = self.by_name.get(name)
        return None if found is None else found[0]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower-case), in order (the head's own
        list: read it, never change it)."""
        return self.by_name.get(name, [])

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of every ``name`` header, lower-cased."""
        found: set[str] = set()
        for value in self.values(name):
            found.update(token.strip().lower() for token in value.split(","))
        return found


class Refusal(msgspec.Struct, frozen=True):
    """A handshake hubbub turns down: the HTTP response to send, then close."""

    status: int
    message: str  # the plain-text body, one line
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> bytes:
        """The whole HTTP/1.1 response (the connection is closed after it)."""
        body = (self.message + "\n").encode()
        lines = [
            f"HTTP/1.1 {self.status} {_REASONS.get(self.status, 'Error')}",
            "Content-Type: text/plain; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def request_path(first_line: bytes) -> bytes | None:
    """The path of a request line (``GET /x?y HTTP/1.1`` -> ``/x``), or None if odd."""
    parts = first_line.split(b" ")
    if len(parts) != 3:
        return None
    return parts[1].split(b"?", 1)[0]


def parse_head(raw: bytes) -> RequestHead | None:
    """Parse a head ending with CRLF CRLF; None when it is not plain HTTP/1.x."""
    text = raw.decode("latin-1")  # decodes any byte
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
    path, _, query = parts[1].partition("?")
    return RequestHead(parts[0], path, parts[2], headers, query)


def check_upgrade(head: RequestHead) -> str | Refusal:
    """The client's ``Sec-WebSocket-Key`` if ``head`` is a valid upgrade request,
    else the refusal RFC 6455 asks for (checked in the order of its section 4.2.1)."""
    if head.method != "GET":
        return Refusal(405, "a WebSocket handshake is a GET request", (("Allow", "GET"),))
    version = _HTTP_VERSION.fullmatch(head.version)
    if version is None or int(version[1]) < 1:
        return Refusal(400, "a WebSocket handshake needs HTTP/1.1")
    hosts = head.values("host")
    if len(hosts) != 1 or not hosts[0]:
        return Refusal(400, "exactly one Host header is required")
    if "websocket" not in head.tokens("upgrade"):
        return Refusal(426, "this endpoint speaks WebSocket only", (("Upgrade", "websocket"),))
    if "upgrade" not in head.tokens("connection"):
        return Refusal(400, "the Connection header must include Upgrade")
    if head.values("sec-websocket-version") != [VERSION]:
        return Refusal(
            426,
            "unsupported WebSocket version: only 13 is spoken",
            (("Upgrade", "websocket"), ("Sec-WebSocket-Version", VERSION)),
        )
    keys = head.values("sec-websocket-key")
    if len(keys) != 1 or not _valid_key(keys[0]):
        return Refusal(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    if head.get("content-length") not in (None, "0") or head.get("transfer-encoding"):
        return Refusal(400, "a WebSocket handshake has no body")
    return keys[0]


def _valid_key(key: str) -> bool:
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        return False


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Browsers send Origin; a page from another site may not open a connection.

    No Origin (SDKs outside browsers): allowed. Same host as the request: allowed.
    Otherwise the origin must match an entry of ``client.allowed_origins``
    (``*`` wildcards allowed, as in Centrifugo).
    """
    if not origin:
        return True
    if any(fnmatch.fnmatchcase(origin.lower(), pattern.lower()) for pattern in allowed):
        return True
    return bool(host) and urlsplit(origin).netloc.lower() == (host or "").lower()


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for ``key``: a server sends it, a client checks it."""
    digest = hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest()  # the RFC fixes SHA-1 here
    return base64.b64encode(digest).decode()


def accept_response(
    key: str, *, extensions: str | None = None, subprotocol: str | None = None
) -> bytes:
    """The 101 response completing the handshake for ``key`` (with the agreed
    ``Sec-WebSocket-Extensions`` value and subprotocol, if any)."""
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {extensions}")
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


#: The subprotocol of Centrifugo's Protobuf client protocol.
PROTOBUF_SUBPROTOCOL = "centrifuge-protobuf"


def wants_protobuf(head: RequestHead) -> bool:
    """The client asks for the Protobuf protocol: the ``centrifuge-protobuf``
    subprotocol, or (as Centrifugo accepts) ``format=protobuf`` or
    ``cf_protocol=protobuf`` in the query."""
    if PROTOBUF_SUBPROTOCOL in head.tokens("sec-websocket-protocol"):
        return True
    if not head.query:  # most clients: nothing to parse
        return False
    query = parse_qs(head.query)
    return "protobuf" in (*query.get("format", ()), *query.get("cf_protocol", ()))


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


class ResponseHead(msgspec.Struct, frozen=True):
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
