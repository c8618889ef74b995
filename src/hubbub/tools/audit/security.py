"""Groups S1-S6: security checks, in both modes, bounded in count and time.

Rule: a check FAILS only where RFC 6455 has a MUST (an unmasked client frame
MUST make the server close the connection, 5.1); otherwise what the server
allows is reported as INFORMATIONAL with what it means (a foreign Origin
accepted: any web page can open this endpoint with its visitors' cookies).
Every load is bounded: ``--flood`` connections, ``--slow-seconds`` of
dribbling, at most 16 MiB sent per check; the runner allows only loopback
targets unless the user names a host with ``--allow-remote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from hubbub.tools.audit import compression
from hubbub.tools.audit.case import CENTRIFUGO, Case, CaseContext, CaseRun
from hubbub.tools.audit.connection import AuditConnection, HandshakeError, WireLog
from hubbub.websocket.frames import OP_CONTINUATION, OP_TEXT, build_frame
from hubbub.websocket.handshake import client_request, new_key

FOREIGN_ORIGIN = "http://audit-foreign-origin.invalid"
CHUNK = 64 << 10
MAX_SENT = 16 << 20


async def _origin(ctx: CaseContext) -> None:
    try:
        await ctx.open(origin=FOREIGN_ORIGIN)
    except HandshakeError as exc:
        ctx.note(f"a foreign Origin is refused ({exc.problem})")
        return
    ctx.judge("INFORMATIONAL", f"the handshake with Origin {FOREIGN_ORIGIN} was accepted: a "
              "page on any site can open this endpoint with its visitors' cookies (cross-site "
              "WebSocket hijacking) unless the server authenticates otherwise")  # fmt: skip


async def _stopped(ws: AuditConnection, within: float) -> bool:
    """Whether the server closes or drops the connection within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not ws.eof and time.monotonic() < deadline:
        event = await ws.next_event(deadline - time.monotonic())
        if event is not None and event.kind in ("close", "eof", "violation"):
            return True
    return ws.eof


async def _send_bounded(ws: AuditConnection, pieces: list[bytes]) -> int:
    """Write ``pieces`` until the server stops the connection; the bytes written."""
    sent = 0
    for piece in pieces:
        if ws.eof or ws.close_received is not None or ws.writer.is_closing():
            break
        ws.writer.write(piece)
        sent += len(piece)
        try:
            await asyncio.wait_for(ws.writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            break
    return sent


def _declared(length: int, label: str) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        header = build_frame(b"", length=length)[:-4]  # the header without its mask key
        frame_start = header + b"\x00\x00\x00\x00"
        ws.write_raw(frame_start, f"text frame header declaring {label}")
        sent = await _send_bounded(ws, [b"*" * CHUNK] * (MAX_SENT // CHUNK // 4))
        if await _stopped(ws, 3.0):
            ctx.note(f"the connection was stopped after {sent} bytes of a frame declaring {label}")
            return
        ctx.judge("INFORMATIONAL", f"still open after {sent} bytes of a frame declaring {label}: "
                  "the server waits for (and may buffer) the whole frame")  # fmt: skip

    return run


async def _big_message(ctx: CaseContext) -> None:
    ws = ctx.ws
    pieces = [build_frame(b"*" * CHUNK, opcode=OP_TEXT, fin=False)]
    pieces += [build_frame(b"*" * CHUNK, opcode=OP_CONTINUATION, fin=False)
               for _ in range(MAX_SENT // CHUNK - 1)]  # fmt: skip
    ws.wire.add(">", f"a text message in {CHUNK}-byte fragments, up to {MAX_SENT} bytes, no FIN")
    sent = await _send_bounded(ws, pieces)
    if await _stopped(ws, 3.0):
        code = ws.close_received[0] if ws.close_received else "none"
        ctx.note(f"the message was refused after {sent} bytes (close code {code})")
        return
    ctx.judge("INFORMATIONAL", f"a message of {sent} bytes in fragments was accepted unfinished: "
              "no message size limit up to that size")  # fmt: skip


async def _slowloris(ctx: CaseContext) -> None:
    """Five handshakes dribbled one byte every 0.5 s: does the server cut them off?"""
    target = ctx.target
    seconds = ctx.options.slow_seconds
    request = client_request(target.host_header, target.path, new_key(), origin=target.origin)

    async def dribble() -> float | None:
        reader, writer = await target.open_stream()
        started = time.monotonic()
        try:
            for byte in request[:-2]:  # never the final CRLF: the head stays incomplete
                if time.monotonic() - started > seconds:
                    return None
                writer.write(bytes((byte,)))
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 0.5) == b"":
                        return time.monotonic() - started
                if writer.is_closing():
                    return time.monotonic() - started
            return None
        except ConnectionError:
            return time.monotonic() - started
        finally:
            writer.transport.abort()

    ctx.wire.add(">", f"5 handshakes, one byte every 0.5 s, for up to {seconds:g} s")
    cut = await asyncio.gather(*(dribble() for _ in range(5)))
    held = [c for c in cut if c is None]
    if held:
        ctx.judge("INFORMATIONAL", f"{len(held)} of 5 dribbled handshakes still open after "
                  f"{seconds:g} s: no handshake deadline (slowloris)")  # fmt: skip
    else:
        ctx.note(f"all dribbled handshakes were cut off, after {max(c or 0 for c in cut):.1f} s")


async def _unmasked(ctx: CaseContext) -> None:
    answer = ctx.probe.text(b"unmasked")
    ctx.ws.send_frame(answer.payload, mask=False)
    await ctx.expect_failure(why="an unmasked client frame (5.1: the server MUST close)")


async def _flood(ctx: CaseContext) -> None:
    count = ctx.options.flood
    opened: list[AuditConnection] = []
    semaphore = asyncio.Semaphore(50)

    async def one() -> None:
        async with semaphore:
            with contextlib.suppress(OSError, HandshakeError, TimeoutError):
                conn = await AuditConnection.open(ctx.target, WireLog(), within=10)
                opened.append(conn)

    ctx.wire.add(">", f"{count} idle connections (handshake, then nothing)")
    await asyncio.gather(*(one() for _ in range(count)))
    try:
        ctx.note(f"{len(opened)} of {count} idle connections open")
        probe_ws = await ctx.open(origin=ctx.target.origin)
        ctx.conn = probe_ws
        if ctx.options.mode == CENTRIFUGO:
            await ctx.protocol_connect(probe_ws)
        answer = ctx.probe.text(b"still there?")
        probe_ws.send_frame(answer.payload)
        if await ctx.expect_answer(answer, early_failure="INFORMATIONAL"):
            ctx.note("the server still answers a new client while they are open")
    finally:
        for conn in opened:
            await conn.abort()


def cases() -> list[Case]:
    return [
        Case("S1.1", "Handshake with a foreign Origin",
             "Refused (403), unless the server means to serve every site: INFORMATIONAL.",
             _origin, connect=False),
        Case("S2.1", "A frame header declaring 1 GiB, then data",
             "The server stops it early (1009 or a drop); waiting: INFORMATIONAL.",
             _declared(1 << 30, "1 GiB"), limit=60.0),
        Case("S2.2", "A frame header declaring 2^63 bytes (the length's top bit set)",
             "The server stops it (the top bit MUST be 0); waiting: INFORMATIONAL.",
             _declared(1 << 63, "2^63 bytes"), limit=60.0),
        Case("S2.3", "A message that never ends: 64 KiB fragments up to 16 MiB",
             "The server stops it at its message limit; no limit: INFORMATIONAL.",
             _big_message, limit=60.0),
        Case("S3.1", "Compression bomb (permessage-deflate)",
             "No deflate, or a decompressed-size limit (close 1009); none: INFORMATIONAL.",
             compression.bomb, connect=False, limit=60.0),
        Case("S4.1", "Slow handshakes (slowloris): 5 requests dribbled byte by byte",
             "The server cuts them off; none: INFORMATIONAL.", _slowloris, connect=False,
             limit=120.0),
        Case("S5.1", "An unmasked client frame", "The server fails the connection (5.1 MUST).",
             _unmasked),
        Case("S6.1", "Idle connection flood (--flood connections)",
             "The server still answers a new client.", _flood, connect=False, limit=120.0),
    ]  # fmt: skip
