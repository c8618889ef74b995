"""One audited WebSocket connection: handshake, frames out, events in, a wire log.

Rule: every frame goes out through the codec's ``build_frame`` and every byte
that comes in goes through the codec's ``FrameReader`` in the client role
(``masked=False``), whose observer writes the wire log; nothing here parses a
frame by hand. The connection answers the server's pings and closes as a
client must, and turns everything else into ``Event`` values for the case to
judge. A server's violation of the framing rules ends parsing (the reader's
state is gone) and becomes a ``violation`` event; the socket is still watched
for EOF. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from hubbub.tools.audit.verdicts import WireEntry
from hubbub.websocket.deflate import (
    ClientOffer,
    DeflateParams,
    NegotiationError,
    PerMessageDeflate,
    accept_response,
)
from hubbub.websocket.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    build_frame,
    parse_close,
)
from hubbub.websocket.handshake import (
    HEAD_END,
    ResponseHead,
    client_request,
    new_key,
    parse_response,
    upgrade_problem,
)

#: Largest message the audit accepts from a server (it never sends more than 16 MiB).
READ_LIMIT = 64 << 20
MAX_HEAD = 16384
OPCODE_NAMES = {
    OP_CONTINUATION: "cont",
    OP_TEXT: "text",
    OP_BINARY: "binary",
    OP_CLOSE: "close",
    OP_PING: "ping",
    OP_PONG: "pong",
}
#: Wire log entries kept per case: the first ones and the last ones.
WIRE_HEAD = 150
WIRE_TAIL = 50


class AuditTarget:
    """The server under audit: host, port, request path, the Host header, and TLS.

    ``wss://`` URLs are audited over TLS, verifying the server's certificate
    against the system's authorities, or only against ``ca`` (a PEM file) when
    given: a server with a certificate of its own authority is audited by
    trusting that authority, never by skipping the check.
    """

    def __init__(self, url: str, *, ca: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "http", "wss", "https"):
            raise ValueError(f"only ws:// and wss:// URLs can be audited, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        secure = parts.scheme in ("wss", "https")
        self.url = url
        self.host = parts.hostname
        default_port = 443 if secure else 80
        self.port = parts.port or default_port
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = self.port == default_port
        self.host_header = self.host if default else f"{self.host}:{self.port}"
        self.origin = f"{'https' if secure else 'http'}://{self.host_header}"
        self.tls: ssl.SSLContext | None = None
        if secure:
            try:
                self.tls = ssl.create_default_context(cafile=ca or None)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"--ca {ca}: cannot load it: {exc}") from None
        elif ca:
            raise ValueError("--ca is for wss:// URLs")

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"

    async def open_stream(
        self, *, limit: int = 1 << 16
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to the server (TLS, with the handshake done, for wss://)."""
        return await asyncio.open_connection(
            self.host,
            self.port,
            limit=limit,
            ssl=self.tls,
            server_hostname=self.host if self.tls is not None else None,
        )


class HandshakeError(ConnectionError):
    """The server did not complete the opening handshake."""

    def __init__(self, problem: str, head: ResponseHead | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.head = head


class NegotiationFailed(HandshakeError):
    """The server's ``Sec-WebSocket-Extensions`` answer breaks RFC 7692 (7.1): a client
    MUST fail the connection."""


@dataclass(frozen=True)
class Event:
    """What the server did: ``message`` (opcode, data), ``close`` (code, reason),
    ``eof`` (TCP closed), ``violation`` (a framing rule broken: code, reason)."""

    kind: str
    opcode: int = 0
    data: str | bytes = b""
    code: int = 0
    reason: str = ""


def preview(data: bytes | str, size: int = 48) -> str:
    """A short, printable view of a payload for the wire log."""
    raw = data.encode() if isinstance(data, str) else data
    if not raw:
        return ""
    try:
        text = raw[:size].decode()
        shown = repr(text)
    except UnicodeDecodeError:
        shown = "0x" + raw[:size].hex()
    return shown + ("..." if len(raw) > size else "")


def describe_frame(first: int, payload: bytes, *, masked: bool = False) -> str:
    """``text fin=1 rsv=0 len=5 'hello'`` from a frame's first byte and payload."""
    opcode = first & 0x0F
    name = OPCODE_NAMES.get(opcode, f"op{opcode:#x}")
    rsv = (first >> 4) & 7
    fin = first >> 7
    extra = " masked" if masked else ""
    return f"{name} fin={fin} rsv={rsv} len={len(payload)}{extra} {preview(payload)}".rstrip()


class WireLog:
    """A bounded wire log: the first ``WIRE_HEAD`` and the last ``WIRE_TAIL`` entries."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.head: list[WireEntry] = []
        self.tail: list[WireEntry] = []
        self.omitted = 0

    def add(self, direction: str, text: str) -> None:
        entry = WireEntry((time.monotonic() - self.start) * 1000, direction, text)
        if len(self.head) < WIRE_HEAD:
            self.head.append(entry)
            return
        self.tail.append(entry)
        if len(self.tail) > WIRE_TAIL:
            del self.tail[0]
            self.omitted += 1

    def entries(self) -> list[WireEntry]:
        if self.omitted:
            gap = WireEntry(self.tail[0].ms, "!", f"... {self.omitted} entries omitted ...")
            return [*self.head, gap, *self.tail]
        return [*self.head, *self.tail]


class AuditConnection:
    """A client connection whose every frame is logged and whose events are queued."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        wire: WireLog,
        head: ResponseHead,
        agreed: DeflateParams | None = None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.wire = wire
        self.head = head
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        #: permessage-deflate, when the server agreed to the case's offer.
        self.agreed = agreed
        self.deflate = (
            PerMessageDeflate(agreed, server=False, max_size=READ_LIMIT) if agreed else None
        )
        inflater = self.deflate.decompressor if self.deflate is not None else None
        self.frames = FrameReader(
            READ_LIMIT, masked=False, inflater=inflater, observer=self._observe
        )
        self.parsing = True
        self.close_sent = False
        self.close_received: tuple[int, str] | None = None
        self.eof = False
        self.auto_pong = True
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        target: AuditTarget,
        wire: WireLog,
        *,
        origin: str | None = None,
        extensions: str | None = None,
        protocols: str | None = None,
        offer: ClientOffer | None = None,
        within: float = 10.0,
    ) -> AuditConnection:
        """Connect and complete the opening handshake, or raise ``HandshakeError``/``OSError``.

        ``offer``: offer permessage-deflate; the answer is checked (``NegotiationFailed``
        when it breaks RFC 7692) and, when agreed, frames with RSV1 are inflated."""
        if offer is not None:
            extensions = offer.header()
        reader, writer = await asyncio.wait_for(target.open_stream(limit=1 << 20), within)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = new_key()
        request = client_request(
            target.host_header,
            target.path,
            key,
            origin=origin,
            extensions=extensions,
            protocols=protocols,
        )
        wire.add(">", request.decode("latin-1").split("\r\n")[0] + " (opening handshake)")
        writer.write(request)
        try:
            raw = await asyncio.wait_for(reader.readuntil(HEAD_END), within)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            writer.close()
            raise HandshakeError(f"no complete handshake answer ({type(exc).__name__})") from None
        head = parse_response(raw[:MAX_HEAD] if len(raw) <= MAX_HEAD else b"")
        if head is None:
            writer.close()
            raise HandshakeError("the answer is not an HTTP/1.1 response")
        wire.add("<", f"HTTP {head.status} {head.reason}".rstrip())
        problem = upgrade_problem(head, key)
        if problem is not None:
            writer.close()
            raise HandshakeError(problem, head)
        agreed: DeflateParams | None = None
        if offer is not None:
            answer = head.get("sec-websocket-extensions")
            try:
                agreed = accept_response([answer] if answer else [], offer)
            except NegotiationError as exc:
                writer.close()
                raise NegotiationFailed(
                    f"permessage-deflate answer {answer!r}: {exc}", head
                ) from None
            wire.add("<", f"extensions: {answer or 'none (compression declined)'}")
        conn = cls(reader, writer, wire, head, agreed)
        conn._task = asyncio.create_task(conn._read())
        return conn

    # -- receiving ------------------------------------------------------------------------
    def _observe(self, first: int, payload: bytes) -> None:
        self.wire.add("<", describe_frame(first, payload))

    async def _read(self) -> None:
        while True:
            try:
                data = await self.reader.read(262144)
            except (ConnectionError, OSError) as exc:
                self.wire.add("!", f"read error: {exc}")
                data = b""
            if not data:
                self.eof = True
                self.wire.add("!", "TCP connection closed by the server")
                self.events.put_nowait(Event("eof"))
                return
            if not self.parsing:
                continue
            try:
                messages = self.frames.feed(data)
            except FrameError as exc:
                for opcode, payload in exc.messages:  # what came before the bad frame
                    self._dispatch(opcode, payload)
                self.parsing = False
                self.wire.add("!", f"server broke a framing rule: {exc.reason}")
                self.events.put_nowait(Event("violation", code=exc.code, reason=exc.reason))
                continue
            for opcode, payload in messages:
                self._dispatch(opcode, payload)

    def _dispatch(self, opcode: int, payload: str | bytes) -> None:
        if opcode == OP_PING and self.auto_pong and not self.close_sent:
            assert isinstance(payload, bytes)
            self.send_frame(payload, opcode=OP_PONG)
        if opcode == OP_CLOSE:
            assert isinstance(payload, bytes)
            code, reason = parse_close(payload)  # already validated by the reader
            self.close_received = (code, reason)
            if not self.close_sent:
                self.send_close(1000 if code == 1005 else code)
            self.events.put_nowait(Event("close", code=code, reason=reason))
            return
        self.events.put_nowait(Event("message", opcode=opcode, data=payload))

    async def next_event(self, within: float) -> Event | None:
        """The next event, or None when nothing happened within ``within`` seconds."""
        try:
            return await asyncio.wait_for(self.events.get(), within)
        except TimeoutError:
            return None

    # -- sending --------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def send_frame(
        self,
        payload: bytes | str = b"",
        *,
        opcode: int = OP_TEXT,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
        log: bool = True,
    ) -> bytes:
        """Build one frame with the codec, send it, log it; return its bytes."""
        frame = self._frame(payload, opcode, fin, rsv, mask, "" if log else None)
        self._write(frame)
        return frame

    def compressed_frames(
        self, payload: bytes, opcode: int, *, pieces: int = 1, log: bool = True
    ) -> bytes:
        """``payload`` deflated with the agreed parameters, as one message of ``pieces``
        frames (RSV1 on the first only, RFC 7692 6.1); built, logged, not sent."""
        assert self.deflate is not None, "permessage-deflate was not agreed"
        data = self.deflate.compress(payload)
        if data is None:  # a window the codec cannot compress with: sent as it is
            return self.build(payload, opcode=opcode, log=log)
        size = max(1, -(-len(data) // pieces))
        chunks = [data[i : i + size] for i in range(0, len(data), size)] or [b""]
        frames = []
        for index, chunk in enumerate(chunks):
            frames.append(
                self.build(
                    chunk,
                    opcode=opcode if index == 0 else OP_CONTINUATION,
                    fin=index == len(chunks) - 1,
                    rsv=4 if index == 0 else 0,
                    log=log,
                )
            )
        return b"".join(frames)

    def send_close(self, code: int | None = 1000, reason: bytes = b"") -> None:
        payload = b"" if code is None else code.to_bytes(2, "big") + reason
        self.send_frame(payload, opcode=OP_CLOSE)

    async def send_chopped(self, data: bytes, chop: int, *, pause: float = 0.0) -> None:
        """Write already built frames in pieces of ``chop`` bytes (TCP_NODELAY: one segment
        each), yielding to the loop between pieces so that they are not coalesced."""
        self.wire.add(">", f"(the {len(data)} bytes above, written in pieces of {chop})")
        for start in range(0, len(data), chop):
            self._write(data[start : start + chop])
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()
            if pause:
                await asyncio.sleep(pause)

    def build(
        self,
        payload: bytes | str = b"",
        *,
        opcode: int = OP_TEXT,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
        log: bool = True,
    ) -> bytes:
        """A frame built and logged, not sent (for chopped or split writes)."""
        return self._frame(payload, opcode, fin, rsv, mask, " (built)" if log else None)

    def _frame(
        self, payload: bytes | str, opcode: int, fin: bool, rsv: int, mask: bool, note: str | None
    ) -> bytes:
        """One frame built with the codec and logged with ``note`` after it (None: not
        logged); a close frame marks the close as sent."""
        data = payload.encode() if isinstance(payload, str) else payload
        frame = build_frame(data, opcode=opcode, fin=fin, rsv=rsv, mask=mask)
        if note is not None:
            self.wire.add(">", describe_frame(frame[0], data, masked=mask) + note)
        if opcode == OP_CLOSE:
            self.close_sent = True
        return frame

    def write_raw(self, data: bytes, note: str | None = None) -> None:
        """Write bytes already built (and logged when built); ``note`` adds a log line."""
        if note is not None:
            self.wire.add(">", note)
        self._write(data)

    async def drain(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def abort(self) -> None:
        """Drop the TCP connection and stop reading."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        transport = self.writer.transport
        transport.abort()
