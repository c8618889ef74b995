"""RFC 6455 frames without I/O, for both roles: read the peer's frames, build ours.

Rule: ``FrameReader.feed`` takes bytes however the kernel split them and
returns complete messages in order; a violation raises ``FrameError`` with the
close code the RFC asks for (1002 protocol, 1007 bad UTF-8 or bad compressed
data, 1009 too big), decided from the header alone where it can be, before the
payload arrives. A client's frames must be masked, a server's must not. The
reserved bits must be clear, except RSV1 on the first frame of a text or
binary message when permessage-deflate was agreed (the reader is then given
an ``Inflater``, see ``hubbub.websocket.deflate``). Text messages come out as
``str`` (validated UTF-8, after inflating); the other kinds as bytes. A
fragmented text, or a text frame that arrives in several reads, compressed or
not, is validated as its bytes arrive, so invalid UTF-8 fails the connection
with the read that brings it, not when the message ends. hubbub's own frames
are never masked or fragmented.
"""

from __future__ import annotations

import codecs
import os
import struct
import sys
from collections.abc import Callable
from typing import NamedTuple, Protocol

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009
NO_STATUS = 1005  # "no code in the close frame": reported, never sent

_DATA_OPCODES = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY))
_CONTROL_OPCODES = frozenset((OP_CLOSE, OP_PING, OP_PONG))
#: Close codes a peer may send (RFC 6455 7.4 and the IANA registry; 3000-4999 private).
#: 1004, 1005, 1006 and 1015 are reserved: never in a close frame.
_SENDABLE_CLOSE = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)
RSV1 = 0x40


class FrameError(Exception):
    """The peer broke the framing rules; close the connection with ``code``.

    Raised by ``FrameReader.feed``, ``messages`` holds the messages the same
    bytes completed before the bad frame: they arrived first, and a server
    answers them before it fails the connection.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.messages: list[Message] = []


class InflatePieces(Protocol):
    """One compressed message inflated piece by piece (a text checked as it arrives)."""

    def feed(self, data: bytes) -> bytes: ...

    def end(self) -> bytes: ...


class Inflater(Protocol):
    """What the reader needs of permessage-deflate: inflate one whole message, or
    one message piece by piece, raising ``FrameError`` (1007 corrupt, 1009 too big
    once inflated)."""

    def decompress(self, payload: bytes) -> bytes: ...

    def stream(self) -> InflatePieces: ...


class Message(NamedTuple):
    """One complete message: a text (``str``), or binary/ping/pong/close bytes."""

    opcode: int
    data: str | bytes


def unmask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key``: one big-integer XOR, no Python loop."""
    size = len(data)
    if not size:
        return b""
    repeated = (key * ((size >> 2) + 1))[:size]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(size, "little")


class FrameReader:
    """Incremental reader of one connection's frames.

    ``masked``: the peer is a client, whose frames must be masked (the server's
    role); False reads a server's frames, which must not be (a client's role:
    the load generator, the audit, the tests). ``inflater``: permessage-deflate
    was agreed; messages whose first frame has RSV1 set are inflated by it.
    ``max_message`` bounds the bytes received per message (compressed ones
    as they arrive); the inflater bounds what they inflate to. ``observer``,
    when given, is called with each complete frame's first header byte (FIN,
    RSV, opcode) and its (unmasked) payload before the frame is interpreted: a
    wire log for the audit, at no cost to readers without one.

    UTF-8 fails fast: a text message that is fragmented, or whose frame arrives
    in several reads, is decoded as its bytes arrive (inflated first when it is
    compressed), so invalid UTF-8 raises 1007 with the read that brings it. A
    whole unfragmented text frame in one read, what a server reads most, is
    decoded once when complete, as before.
    """

    __slots__ = (
        "_chunks",
        "_compressed",
        "_consumed",
        "_decoder",
        "_fragments",
        "_have",
        "_inflater",
        "_limit",
        "_mask_bit",
        "_need",
        "_observer",
        "_opcode",
        "_piece_key",
        "_size",
        "_stream",
        "_texts",
    )

    def __init__(
        self,
        max_message: int,
        *,
        masked: bool = True,
        inflater: Inflater | None = None,
        observer: Callable[[int, bytes], None] | None = None,
    ) -> None:
        # 0 (or less) means no limit, as for aiohttp and Centrifugo.
        self._limit = max_message if max_message > 0 else sys.maxsize
        self._mask_bit = 0x80 if masked else 0
        # Bytes received and not yet parsed (None: none; an idle reader holds no list).
        self._chunks: list[bytes] | None = None
        self._have = 0  # their total length
        self._need = 2  # parsing cannot progress before this many bytes are there
        self._fragments: list[bytes] | None = None  # an unfinished message (texts: empty)
        self._opcode = 0  # opcode of that message
        self._size = 0  # its size so far
        self._compressed = 0  # RSV1 of its first frame
        # A text decoded as it arrives (fragmented, or a frame in several reads):
        self._decoder: codecs.IncrementalDecoder | None = None
        self._texts: list[str] | None = None  # what it decoded so far (no list per idle reader)
        self._stream: InflatePieces | None = None  # its inflater, when it is compressed
        # The frame of such a text that is still arriving: its mask key (b"" when
        # unmasked; None: no such frame) and how many of its payload bytes were decoded.
        self._piece_key: bytes | None = None
        self._consumed = 0
        self._inflater = inflater
        self._observer = observer

    @property
    def at_rest(self) -> bool:
        """Nothing received waits for more bytes (no partial frame, no unfinished
        fragmented message): a new reader would continue exactly as this one."""
        return self._chunks is None and self._fragments is None

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete."""
        self._have += len(data)
        chunks = self._chunks
        if chunks is None:
            if self._have < self._need:
                self._chunks = [data]
                return []
            buffer = data
        else:
            chunks.append(data)
            if self._have < self._need:
                if self._piece_key is not None:  # more of a text frame: check it now
                    self._decode_arriving(data)
                return []  # a large frame is collected in pieces, joined once
            buffer = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        messages: list[Message] = []
        try:
            position = self._parse(buffer, messages)
        except FrameError as exc:
            exc.messages = messages
            raise
        rest = buffer[position:] if position else buffer
        self._chunks = [rest] if rest else None
        self._have = len(rest)
        return messages

    def _parse(self, buffer: bytes, messages: list[Message]) -> int:
        """Parse whole frames from ``buffer``; return where the first incomplete one starts."""
        end_of_buffer = len(buffer)
        position = 0
        while True:
            available = end_of_buffer - position
            if available < 2:
                self._need = 2
                return position
            first = buffer[position]
            second = buffer[position + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            header = 6 if self._mask_bit else 2
            if length == 126:
                header += 2
                if available < 4:
                    self._need = header
                    return position
                length = int.from_bytes(buffer[position + 2 : position + 4], "big")
            elif length == 127:
                header += 8
                if available < 10:
                    self._need = header
                    return position
                length = int.from_bytes(buffer[position + 2 : position + 10], "big")
                if length >> 63:
                    raise FrameError(PROTOCOL_ERROR, "64-bit length with the high bit set")
            self._check_header(first, second, opcode, length)
            start = position + header
            end = start + length
            if end > end_of_buffer:
                if available < header:  # parse again once the mask key is here
                    self._need = header
                    return position
                self._need = header + length
                if opcode == OP_TEXT or (opcode == OP_CONTINUATION and self._decoder is not None):
                    self._text_arriving(first, buffer, start, end_of_buffer)
                return position
            if self._piece_key is None:  # the usual case: the frame came whole
                payload = buffer[start:end]
                if self._mask_bit:
                    payload = unmask(payload, buffer[start - 4 : start])
                if self._observer is not None:
                    self._observer(first, payload)
            else:
                payload = self._rest_of_frame(first, buffer, start, end)
            position = end
            message = self._message(first, opcode, payload, length)
            if message is not None:
                messages.append(message)

    def _check_header(self, first: int, second: int, opcode: int, length: int) -> None:
        if second & 0x80 != self._mask_bit:
            raise FrameError(
                PROTOCOL_ERROR, "unmasked client frame" if self._mask_bit else "masked server frame"
            )
        reserved = first & 0x70
        if reserved and (
            reserved != RSV1 or self._inflater is None or opcode not in (OP_TEXT, OP_BINARY)
        ):
            raise FrameError(PROTOCOL_ERROR, "reserved bits set")
        if opcode in _CONTROL_OPCODES:
            if length > 125 or not first & 0x80:
                raise FrameError(PROTOCOL_ERROR, "bad control frame")
        elif opcode not in _DATA_OPCODES:
            raise FrameError(PROTOCOL_ERROR, "reserved opcode")
        elif opcode == OP_CONTINUATION:
            if self._fragments is None:
                raise FrameError(PROTOCOL_ERROR, "continuation without a message")
            if self._size + length > self._limit:
                raise FrameError(TOO_BIG, "message too big")
        elif self._fragments is not None:
            raise FrameError(PROTOCOL_ERROR, "new message inside a fragmented one")
        elif length > self._limit:
            raise FrameError(TOO_BIG, "message too big")

    # --- a text frame that arrives in several reads ----------------------------------------

    def _text_arriving(self, first: int, buffer: bytes, start: int, available_end: int) -> None:
        """The header of a text frame is here, not all its payload: decode what is."""
        if self._piece_key is None:
            self._piece_key = buffer[start - 4 : start] if self._mask_bit else b""
            if self._decoder is None:  # its first frame: the message starts
                self._open_text(first & RSV1)
        self._decode_arriving(buffer[start + self._consumed : available_end])

    def _decode_arriving(self, data: bytes) -> None:
        """Decode the next received bytes of the frame that is arriving."""
        if not data:
            return
        key = self._piece_key
        consumed = self._consumed
        if key:
            shift = consumed & 3  # the mask continues where the previous piece ended
            data = unmask(data, key[shift:] + key[:shift])
        self._consumed = consumed + len(data)
        self._decode(data, False)

    def _rest_of_frame(self, first: int, buffer: bytes, start: int, end: int) -> bytes:
        """The arriving frame is complete: its payload bytes not decoded yet."""
        key = self._piece_key
        consumed = self._consumed
        self._piece_key = None
        self._consumed = 0
        if self._observer is not None:  # the wire log shows the whole frame
            whole = buffer[start:end]
            self._observer(first, unmask(whole, buffer[start - 4 : start]) if key else whole)
        rest = buffer[start + consumed : end]
        if key:
            shift = consumed & 3
            rest = unmask(rest, key[shift:] + key[:shift])
        return rest

    # --- messages --------------------------------------------------------------------------

    def _message(self, first: int, opcode: int, payload: bytes, length: int) -> Message | None:
        fin = first & 0x80
        if opcode >= OP_CLOSE:
            if opcode == OP_CLOSE:
                parse_close(payload)  # validates before anyone answers it
            return Message(opcode, payload)
        if self._decoder is not None:  # a text decoded as it arrives
            return self._text_frame(opcode, payload, fin, length)
        compressed = first & RSV1
        if opcode == OP_CONTINUATION:  # of a binary message (a text has a decoder)
            fragments = self._fragments
            assert fragments is not None  # checked with the header
            if payload:  # empty fragments would grow the list without counting as size
                fragments.append(payload)
                self._size += length
            if not fin:
                return None
            opcode = self._opcode
            compressed = self._compressed
            payload = b"".join(fragments)
            self._fragments = None
            self._size = 0
        elif not fin:
            if opcode == OP_TEXT:
                self._open_text(compressed)
                return self._text_frame(opcode, payload, fin, length)
            self._opcode = opcode
            self._compressed = compressed
            self._size = length
            self._fragments = [payload]
            return None
        if compressed:
            assert self._inflater is not None  # checked with the header
            payload = self._inflater.decompress(payload)
        if opcode == OP_TEXT:
            try:
                return Message(OP_TEXT, payload.decode())
            except UnicodeDecodeError:
                raise FrameError(INVALID_DATA, "text is not UTF-8") from None
        return Message(opcode, payload)

    def _open_text(self, compressed: int) -> None:
        """A text message starts that is decoded as it arrives."""
        self._decoder = _utf8_decoder()
        self._texts = []
        if compressed:
            assert self._inflater is not None  # checked with the header
            self._stream = self._inflater.stream()

    def _text_frame(self, opcode: int, payload: bytes, fin: int, length: int) -> Message | None:
        """A complete frame of a text decoded as it arrives (``payload``: what is left of it)."""
        if opcode == OP_TEXT:  # the first frame: the message is open from now on
            self._fragments = []
            self._size = 0
        self._size += length
        self._decode(payload, bool(fin))
        if not fin:
            return None
        texts = self._texts
        assert texts is not None  # set with the decoder
        text = texts[0] if len(texts) == 1 else "".join(texts)
        self._decoder = self._stream = None
        self._texts = self._fragments = None
        self._size = 0
        return Message(OP_TEXT, text)

    def _decode(self, data: bytes, final: bool) -> None:
        stream = self._stream
        if stream is not None:
            data = stream.feed(data) if data else b""
            if final:
                data += stream.end()
        decoder = self._decoder
        texts = self._texts
        assert decoder is not None and texts is not None  # set together
        text = _decoded(decoder, data, final)
        if text:  # empty pieces must not grow the list
            texts.append(text)


_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _decoded(decoder: codecs.IncrementalDecoder, data: bytes, final: bool) -> str:
    try:
        return decoder.decode(data, final)
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "text is not UTF-8") from None


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a close frame's payload (1005 when it has no code)."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame of one byte")
    code = int.from_bytes(payload[:2], "big")
    if code not in _SENDABLE_CLOSE and not 3000 <= code <= 4999:
        raise FrameError(PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None


#: Headers of text frames under 126 bytes, by length: a lookup instead of a build.
SMALL_TEXT_HEADERS = tuple(bytes((0x81, length)) for length in range(126))


def text_header(length: int) -> bytes:
    """Header of a final, unmasked text frame carrying ``length`` bytes."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


def binary_header(length: int) -> bytes:
    """Header of a final, unmasked binary frame carrying ``length`` bytes (Protobuf)."""
    if length < 126:
        return bytes((0x82, length))
    if length < 65536:
        return struct.pack("!BBH", 0x82, 126, length)
    return struct.pack("!BBQ", 0x82, 127, length)


def compressed_text_header(length: int) -> bytes:
    """Header of a final, unmasked text frame with RSV1 set (permessage-deflate)."""
    if length < 126:
        return bytes((0xC1, length))
    if length < 65536:
        return struct.pack("!BBH", 0xC1, 126, length)
    return struct.pack("!BBQ", 0xC1, 127, length)


def control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """An unmasked control frame (close, ping, pong); ``payload`` at most 125 bytes."""
    return bytes((0x80 | opcode, len(payload))) + payload


def cut_reason(reason: str, max_bytes: int) -> bytes:
    """``reason`` as UTF-8, cut to ``max_bytes`` on a character boundary (a split
    sequence would make the peer fail the close with 1007)."""
    return reason.encode()[:max_bytes].decode("utf-8", "ignore").encode()


def close_frame(code: int, reason: str = "", *, max_reason: int = 123) -> bytes:
    """A close frame; the reason is cut to ``max_reason`` bytes on a character boundary."""
    return control_frame(OP_CLOSE, code.to_bytes(2, "big") + cut_reason(reason, max_reason))


def build_frame(
    payload: bytes | str = b"",
    *,
    opcode: int = OP_TEXT,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
    mask_key: bytes | None = None,
) -> bytes:
    """Any frame, valid or not, as a client (masked) or a server (``mask=False``) sends it.

    ``rsv`` is the three reserved bits as a number 0-7 (4 = RSV1, 2 = RSV2,
    1 = RSV3); ``length`` is the declared payload length, independent of the
    payload actually appended (default: the payload's length); ``mask_key``
    defaults to four random bytes.
    """
    data = payload.encode() if isinstance(payload, str) else payload
    declared = len(data) if length is None else length
    first = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mask_bit = 0x80 if mask else 0
    if declared < 126:
        header = struct.pack("!BB", first, mask_bit | declared)
    elif declared < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if not mask:
        return header + data
    key = mask_key if mask_key is not None else os.urandom(4)
    if key == b"\x00\x00\x00\x00":  # XOR with zeros: the load generator's free mask
        return header + key + data
    return header + key + unmask(data, key)
