"""permessage-deflate (RFC 7692) without I/O, for both roles, on the standard zlib.

Rule: this module decides what is agreed and transforms payloads; it never
touches a socket. The pieces, for a server (hubbub) and for a client (the load
generator, the audit, the tests) alike:

* ``parse_extensions`` reads ``Sec-WebSocket-Extensions`` (RFC 6455 9.1);
* a server calls ``negotiate(offers, policy)``: the first legal offer it can
  honour becomes the agreed ``DeflateParams`` (whose ``header()`` is the
  response value); illegal offers (unknown, repeated or malformed parameters)
  and offers it cannot honour are declined, and no offer accepted means no
  compression, never a failed handshake;
* a client sends ``ClientOffer(...).header()`` and checks the answer with
  ``accept_response(value, offer)``, which raises ``NegotiationError`` for a
  response the RFC forbids (the client must then fail the connection);
* either side then builds ``PerMessageDeflate(params, server=...)`` and calls
  ``compress`` for each outgoing data message (send it with RSV1 set, on the
  first frame only) and ``decompress`` for each incoming message whose first
  frame had RSV1.

``decompress`` bounds its output while inflating (``max_size``): a
"zip bomb" raises ``FrameError(1009)`` after at most ``max_size + 1`` bytes
were produced; corrupt data raises ``FrameError(1007)``.

With ``no_context_takeover`` on the sending side, every message is compressed
on its own (``Z_FULL_FLUSH`` resets the dictionary), so one ``Compressor`` can
serve any number of connections and a broadcast is compressed once for all of
them. zlib cannot compress with a window of 8 bits (256 bytes), so a server
declines an offer that demands ``server_max_window_bits=8``; it decompresses
any window.
"""

from __future__ import annotations

import re
import zlib

import msgspec

from hubbub.websocket.frames import INVALID_DATA, TOO_BIG, FrameError

__all__ = [
    "EXTENSION",
    "ClientOffer",
    "Compressor",
    "Decompressor",
    "DeflateParams",
    "InflateStream",
    "NegotiationError",
    "PerMessageDeflate",
    "ServerPolicy",
    "accept_response",
    "negotiate",
    "parse_extensions",
]

EXTENSION = "permessage-deflate"
#: The end of a sync-flushed deflate stream: removed by the sender, restored by the receiver.
TAIL = b"\x00\x00\xff\xff"
MIN_WINDOW_BITS = 8
MAX_WINDOW_BITS = 15
#: Window sizes zlib can compress with (a request for 8 would silently become 9).
MIN_COMPRESS_WINDOW_BITS = 9
_PARAMETERS = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_WINDOW_BITS = re.compile(r"[89]|1[0-5]")  # 8-15, decimal, no leading zero

Extension = tuple[str, list[tuple[str, str | None]]]


class NegotiationError(ValueError):
    """An extension header or an agreed parameter set the RFC forbids."""


# --- the header grammar (RFC 6455 section 9.1) -----------------------------------------


def parse_extensions(values: list[str]) -> list[Extension]:
    """Every extension of the ``Sec-WebSocket-Extensions`` headers ``values``, in order,
    as ``(name, [(parameter, value or None), ...])``; names and parameters are
    lower-cased, quoted values unquoted. Raises ``NegotiationError`` on bad syntax."""
    extensions: list[Extension] = []
    for value in values:
        for item in _split(value, ","):
            if not item.strip():
                continue  # empty list elements are allowed by the # rule
            name, *params = _split(item, ";")
            name = name.strip()
            if not _TOKEN.fullmatch(name):
                raise NegotiationError(f"bad extension name {name!r}")
            parsed: list[tuple[str, str | None]] = []
            for param in params:
                key, equals, raw = param.partition("=")
                key = key.strip()
                if not _TOKEN.fullmatch(key):
                    raise NegotiationError(f"bad extension parameter {param.strip()!r}")
                parsed.append((key.lower(), _param_value(raw.strip()) if equals else None))
            extensions.append((name.lower(), parsed))
    return extensions


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quoted:
        raise NegotiationError("unterminated quoted string")
    parts.append("".join(current))
    return parts


def _param_value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])  # after unquoting it must still be a token
    if not _TOKEN.fullmatch(raw):
        raise NegotiationError(f"bad extension parameter value {raw!r}")
    return raw


def _window_bits(value: str | None, name: str) -> int:
    if value is None or not _WINDOW_BITS.fullmatch(value):
        raise NegotiationError(f"{name} must be 8..15, got {value!r}")
    return int(value)


# --- the agreed parameters --------------------------------------------------------------


def _header_parts(
    server_no_context_takeover: bool, client_no_context_takeover: bool, server_bits: int | None
) -> list[str]:
    """The start of a header value, which offers and responses share; the caller
    appends its own ``client_max_window_bits``."""
    parts = [EXTENSION]
    if server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if server_bits is not None:
        parts.append(f"server_max_window_bits={server_bits}")
    return parts


class DeflateParams(msgspec.Struct, frozen=True):
    """What a server's response agrees to (None: the parameter is absent, 15 applies)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None

    def header(self) -> str:
        """The response's ``Sec-WebSocket-Extensions`` value."""
        parts = _header_parts(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
        )
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    @classmethod
    def parse(cls, params: list[tuple[str, str | None]]) -> DeflateParams:
        """Read one offer's or response's parameters; NegotiationError if illegal.

        A ``client_max_window_bits`` without a value (legal in an offer only)
        becomes 0 here.
        """
        seen: set[str] = set()
        values: dict[str, bool | int] = {}
        for name, value in params:
            if name not in _PARAMETERS:
                raise NegotiationError(f"unknown parameter {name}")
            if name in seen:
                raise NegotiationError(f"repeated parameter {name}")
            seen.add(name)
            if name.endswith("no_context_takeover"):
                if value is not None:
                    raise NegotiationError(f"{name} takes no value")
                values[name] = True
            elif name == "client_max_window_bits" and value is None:
                values[name] = 0
            else:
                values[name] = _window_bits(value, name)
        return cls(**values)  # type: ignore[arg-type]


class ServerPolicy(msgspec.Struct, frozen=True):
    """What a server asks for beyond the client's offer.

    ``*_no_context_takeover`` True: always agree to it (a server may impose both;
    the server's side makes one compression per broadcast possible, the
    client's side lets a server inflate with no state kept per connection).
    ``*_max_window_bits``: the largest window the server allows (None: 15).
    """

    server_no_context_takeover: bool = True
    client_no_context_takeover: bool = True
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None


def negotiate(values: list[str], policy: ServerPolicy | None = None) -> DeflateParams | None:
    """The server's side: the agreed parameters for the first acceptable
    permessage-deflate offer in the ``Sec-WebSocket-Extensions`` headers
    ``values``, or None (no compression). Never raises: a malformed header
    declines compression."""
    policy = policy or ServerPolicy()
    try:
        extensions = parse_extensions(values)
    except NegotiationError:
        return None
    for name, params in extensions:
        if name != EXTENSION:
            continue
        try:
            offer = DeflateParams.parse(params)
        except NegotiationError:
            continue  # an illegal offer is declined; a later one may do
        agreed = _answer(offer, policy)
        if agreed is not None:
            return agreed
    return None


def _answer(offer: DeflateParams, policy: ServerPolicy) -> DeflateParams | None:
    server_bits = offer.server_max_window_bits
    if policy.server_max_window_bits is not None:
        server_bits = min(server_bits or MAX_WINDOW_BITS, policy.server_max_window_bits)
    if server_bits is not None and server_bits < MIN_COMPRESS_WINDOW_BITS:
        return None  # zlib cannot honour a 256-byte window
    client_bits: int | None = None
    if offer.client_max_window_bits is not None:  # the client may be limited only if it said so
        client_bits = offer.client_max_window_bits or None
        if policy.client_max_window_bits is not None:
            client_bits = min(client_bits or MAX_WINDOW_BITS, policy.client_max_window_bits)
    return DeflateParams(
        server_no_context_takeover=offer.server_no_context_takeover
        or policy.server_no_context_takeover,
        client_no_context_takeover=offer.client_no_context_takeover
        or policy.client_no_context_takeover,
        server_max_window_bits=server_bits,
        client_max_window_bits=client_bits,
    )


class ClientOffer(msgspec.Struct, frozen=True):
    """What a client offers. ``client_max_window_bits``: True offers the parameter
    without a value (the server may limit our window), an int offers that limit,
    None leaves it out."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | bool | None = True

    def header(self) -> str:
        """The request's ``Sec-WebSocket-Extensions`` value."""
        parts = _header_parts(
            self.server_no_context_takeover,
            self.client_no_context_takeover,
            self.server_max_window_bits,
        )
        bits = self.client_max_window_bits
        if bits is True:
            parts.append("client_max_window_bits")
        elif bits is not None and bits is not False:
            parts.append(f"client_max_window_bits={bits}")
        return "; ".join(parts)


def accept_response(values: list[str], offer: ClientOffer) -> DeflateParams | None:
    """The client's side: the agreed parameters in the server's
    ``Sec-WebSocket-Extensions`` headers ``values`` (None: the server declined).
    Raises ``NegotiationError`` when the response breaks RFC 7692 7.1: the client
    must then fail the WebSocket connection."""
    extensions = parse_extensions(values)
    if not extensions:
        return None
    if len(extensions) != 1 or extensions[0][0] != EXTENSION:
        raise NegotiationError(f"the server answered an extension not offered: {values}")
    agreed = DeflateParams.parse(extensions[0][1])
    if agreed.client_max_window_bits == 0:
        raise NegotiationError("client_max_window_bits needs a value in a response")
    offered_client_bits = offer.client_max_window_bits
    if agreed.client_max_window_bits is not None:
        if offered_client_bits is None or offered_client_bits is False:
            raise NegotiationError("client_max_window_bits answered but not offered")
        if offered_client_bits is not True and agreed.client_max_window_bits > offered_client_bits:
            raise NegotiationError("client_max_window_bits larger than offered")
    if offer.server_max_window_bits is not None and (
        agreed.server_max_window_bits is None
        or agreed.server_max_window_bits > offer.server_max_window_bits
    ):
        raise NegotiationError("server_max_window_bits not honoured")
    if offer.server_no_context_takeover and not agreed.server_no_context_takeover:
        raise NegotiationError("server_no_context_takeover not honoured")
    return agreed


# --- compression ------------------------------------------------------------------------


class Compressor:
    """Deflates whole messages for one sending direction.

    ``no_context_takeover``: each message is compressed alone, so this object
    may be shared by many connections (and a payload compressed once for all).
    Otherwise it belongs to one connection and later messages refer back to
    earlier ones (smaller output, one zlib state of about 256 KB kept).
    ``level`` is zlib's (-1 default, 0 stored, 1 fastest .. 9 best) or -2 for
    Huffman coding only.
    """

    __slots__ = ("_flush", "_zlib", "no_context_takeover", "window_bits")

    def __init__(
        self, *, window_bits: int = MAX_WINDOW_BITS, no_context_takeover: bool, level: int = 1
    ) -> None:
        if not MIN_COMPRESS_WINDOW_BITS <= window_bits <= MAX_WINDOW_BITS:
            raise ValueError(f"zlib compresses with 9..15 window bits, not {window_bits}")
        strategy = zlib.Z_DEFAULT_STRATEGY
        if level == -2:
            level, strategy = zlib.Z_DEFAULT_COMPRESSION, zlib.Z_HUFFMAN_ONLY
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        # Z_FULL_FLUSH also forgets the dictionary: the next message stands alone.
        self._flush = zlib.Z_FULL_FLUSH if no_context_takeover else zlib.Z_SYNC_FLUSH
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, -window_bits, 8, strategy)

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one message (send it with RSV1 set)."""
        data = self._zlib.compress(payload) + self._zlib.flush(self._flush)
        if data.endswith(TAIL):
            data = data[:-4]
        return data or b"\x00"  # an empty message: one empty stored block (RFC 7692 7.2.3.6)


class Decompressor:
    """Inflates whole messages for one receiving direction, bounded while it works.

    ``no_context_takeover``: the peer compresses each message alone; no zlib
    state is kept between messages (nothing per idle connection). ``max_size``
    (0: no bound) is the largest inflated message: bigger raises
    ``FrameError(1009)`` once ``max_size + 1`` bytes were produced.
    """

    __slots__ = ("_wbits", "_zlib", "max_size", "no_context_takeover")

    def __init__(
        self, *, window_bits: int = MAX_WINDOW_BITS, no_context_takeover: bool, max_size: int = 0
    ) -> None:
        # Inflating with a larger window than the peer's is always correct; zlib's
        # raw inflate does not take 8, so 9 stands for it.
        self._wbits = -max(window_bits, MIN_COMPRESS_WINDOW_BITS)
        self.no_context_takeover = no_context_takeover
        self.max_size = max_size
        self._zlib = None if no_context_takeover else zlib.decompressobj(self._wbits)

    def decompress(self, payload: bytes) -> bytes:
        """The inflated message; FrameError 1009 past ``max_size``, 1007 if corrupt."""
        inflater = self._zlib or zlib.decompressobj(self._wbits)
        limit = self.max_size
        try:
            data = inflater.decompress(payload + TAIL, limit + 1 if limit > 0 else 0)
        except zlib.error as exc:
            raise FrameError(INVALID_DATA, f"bad compressed data: {exc}") from None
        if limit > 0 and (len(data) > limit or inflater.unconsumed_tail):
            raise FrameError(TOO_BIG, "message too big once decompressed")
        if inflater.eof and self._zlib is not None:
            # The peer ended its stream with a final block: its next message starts afresh.
            self._zlib = zlib.decompressobj(self._wbits)
        return data

    def stream(self) -> InflateStream:
        """Inflate one message piece by piece (a text checked as it arrives)."""
        return InflateStream(self)


class InflateStream:
    """One message inflated as its compressed bytes arrive, bounded as a whole.

    ``feed`` returns what the bytes given so far inflate to (the same
    ``FrameError`` 1007/1009 as ``Decompressor.decompress``, as soon as they
    are known); ``end`` restores the tail the sender removed and returns the rest.
    """

    __slots__ = ("_inflater", "_left", "_owner")

    def __init__(self, owner: Decompressor) -> None:
        self._owner = owner
        self._inflater = owner._zlib or zlib.decompressobj(owner._wbits)
        # Bytes the message may still inflate to (0: no bound).
        self._left = owner.max_size if owner.max_size > 0 else -1

    def feed(self, data: bytes) -> bytes:
        inflater = self._inflater
        left = self._left
        try:
            out = inflater.decompress(data, left + 1 if left >= 0 else 0)
        except zlib.error as exc:
            raise FrameError(INVALID_DATA, f"bad compressed data: {exc}") from None
        if left >= 0:
            if len(out) > left or inflater.unconsumed_tail:
                raise FrameError(TOO_BIG, "message too big once decompressed")
            self._left = left - len(out)
        return out

    def end(self) -> bytes:
        out = self.feed(TAIL)
        owner = self._owner
        if self._inflater.eof and owner._zlib is not None:
            owner._zlib = zlib.decompressobj(owner._wbits)  # as in ``decompress``
        return out


class PerMessageDeflate:
    """The extension on one connection: a compressor for what we send, a
    decompressor for what we receive, chosen from ``params`` by role.

    ``min_size``: messages shorter than this are sent uncompressed (RSV1 clear).
    ``compressor``: share one (it must have our direction's window and no
    context takeover) instead of making one per connection. ``compressor`` is
    None when the peer limited our window to 8 bits, which zlib cannot
    produce: every message then goes out uncompressed, which the RFC allows.
    """

    __slots__ = ("compressor", "decompressor", "min_size")

    def __init__(
        self,
        params: DeflateParams,
        *,
        server: bool,
        level: int = 1,
        min_size: int = 0,
        max_size: int = 0,
        compressor: Compressor | None = None,
    ) -> None:
        ours_bits, ours_fresh, theirs_bits, theirs_fresh = (
            (
                params.server_max_window_bits,
                params.server_no_context_takeover,
                params.client_max_window_bits,
                params.client_no_context_takeover,
            )
            if server
            else (
                params.client_max_window_bits,
                params.client_no_context_takeover,
                params.server_max_window_bits,
                params.server_no_context_takeover,
            )
        )
        send_bits = ours_bits or MAX_WINDOW_BITS
        if send_bits < MIN_COMPRESS_WINDOW_BITS:
            compressor = None  # a 256-byte window: zlib cannot, so we send uncompressed
        elif compressor is None:
            compressor = Compressor(
                window_bits=send_bits, no_context_takeover=ours_fresh, level=level
            )
        elif not compressor.no_context_takeover or compressor.window_bits > send_bits:
            raise ValueError("a shared compressor needs no context takeover and our window")
        self.compressor = compressor
        self.decompressor = Decompressor(
            window_bits=theirs_bits or MAX_WINDOW_BITS,
            no_context_takeover=theirs_fresh,
            max_size=max_size,
        )
        self.min_size = min_size

    def compress(self, payload: bytes) -> bytes | None:
        """The compressed payload, or None when ``payload`` is below ``min_size``
        (send it as it is, RSV1 clear)."""
        compressor = self.compressor
        if compressor is None or len(payload) < self.min_size:
            return None
        return compressor.compress(payload)

    def decompress(self, payload: bytes) -> bytes:
        """Inflate one received message whose first frame had RSV1 set."""
        return self.decompressor.decompress(payload)

    def stream(self) -> InflateStream:
        """Inflate one received message piece by piece (see ``InflateStream``)."""
        return InflateStream(self.decompressor)
