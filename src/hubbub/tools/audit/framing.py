"""Groups 1-4: framing, pings and pongs, reserved bits, opcodes (RFC 6455 5.2-5.6).

Rule: each case states what it sends and what RFC 6455 requires; the judging
is the context's (``CaseContext.expect_*``). Ids follow Autobahn|Testsuite's
numbering so that results compare line by line; the cases are written from
the RFC. In Centrifugo mode text payloads are carried by a command the server
answers; binary payloads and empty messages have no answer there and run in
echo mode only.
"""

from __future__ import annotations

from hubbub.tools.audit.case import (
    BOTH,
    ECHO_ONLY,
    Answer,
    Case,
    CaseContext,
    CaseRun,
)
from hubbub.tools.audit.connection import AuditConnection
from hubbub.websocket.frames import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT

SIZES = (0, 125, 126, 127, 128, 65535, 65536)
ECHO_THEN_CLOSE = "The same message comes back; the closing handshake is answered."
MUST_FAIL = "The server fails the connection (close 1002, or a drop) and answers nothing after it."


async def send_answer(ws: AuditConnection, answer: Answer, chop: int | None = None) -> None:
    """Send ``answer`` as one frame, whole or written in ``chop``-byte pieces."""
    if chop is None:
        ws.send_frame(answer.payload, opcode=answer.opcode)
    else:
        await ws.send_chopped(ws.build(answer.payload, opcode=answer.opcode), chop)


def _round_trip(size: int, *, binary: bool = False, chop: int | None = None) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        answer = ctx.probe.binary(b"\xfe" * size) if binary else ctx.probe.sized(size)
        await send_answer(ctx.ws, answer, chop)
        await ctx.expect_answer(answer)
        await ctx.close_normally()

    return run


def group1() -> list[Case]:
    cases: list[Case] = []
    for kind, section, binary in (("Text", "1.1", False), ("Binary", "1.2", True)):
        for number, size in enumerate(SIZES, 1):
            cases.append(
                Case(
                    f"{section}.{number}",
                    f"{kind} message of {size} bytes in one frame",
                    ECHO_THEN_CLOSE,
                    _round_trip(size, binary=binary),
                    modes=ECHO_ONLY if binary or size == 0 else BOTH,
                )
            )
        cases.append(
            Case(
                f"{section}.8",
                f"{kind} message of 65536 bytes in one frame, written in 997-byte pieces",
                ECHO_THEN_CLOSE,
                _round_trip(65536, binary=binary, chop=997),
                modes=ECHO_ONLY if binary else BOTH,
            )
        )
    return cases


# -- group 2: pings and pongs ---------------------------------------------------------------


def _ping(payload: bytes, chop: int | None = None) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        if chop is None:
            ctx.ws.send_frame(payload, opcode=OP_PING)
        else:
            await ctx.ws.send_chopped(ctx.ws.build(payload, opcode=OP_PING), chop)
        await ctx.expect_pong(payload)
        await ctx.close_normally()

    return run


async def _oversized_ping(ctx: CaseContext) -> None:
    ctx.ws.send_frame(b"\xfe" * 126, opcode=OP_PING)
    await ctx.expect_failure(why="a ping with 126 bytes of payload (control frames: 125 at most)")


def _unsolicited_pong(payload: bytes, then_ping: bool) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ctx.ws.send_frame(payload, opcode=OP_PONG)
        if then_ping:
            ctx.ws.send_frame(b"ping after pong", opcode=OP_PING)
            await ctx.expect_pong(b"ping after pong")
        else:
            await ctx.expect_nothing(0.5, "an unsolicited pong")
        await ctx.close_normally()

    return run


def _ping_burst(chop: int | None) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        payloads = [b"ping %d" % i for i in range(10)]
        frames = b"".join(ctx.ws.build(p, opcode=OP_PING) for p in payloads)
        if chop is None:
            ctx.ws.write_raw(frames, "(the 10 pings above, in one write)")
        else:
            await ctx.ws.send_chopped(frames, chop)
        seen: list[bytes] = []
        while payloads[-1] not in seen:
            event = await ctx.await_event(5.0)
            if event is None or event.kind != "message" or event.opcode != OP_PONG:
                ctx.judge("FAILED", f"pongs seen: {len(seen)} of 10, the last ping not answered")
                break
            assert isinstance(event.data, bytes)
            seen.append(event.data)
        else:
            if seen == payloads:
                ctx.note("ten pongs, in order")
            elif all(p in payloads for p in seen):
                ctx.note(f"{len(seen)} pongs including the last ping's (RFC 6455 5.5.3 allows it)")
            else:
                ctx.judge("FAILED", f"pong payloads not those of the pings: {seen}")
        await ctx.close_normally()

    return run


def group2() -> list[Case]:
    pong = "A pong with the ping's payload (5.5.2 MUST); clean close."
    return [
        Case("2.1", "Ping without payload", pong, _ping(b"")),
        Case("2.2", "Ping with a short text payload", pong, _ping(b"Hello, world!")),
        Case("2.3", "Ping with a short binary payload", pong, _ping(b"\x00\xff\xfe\xfd\xfc\x00")),
        Case("2.4", "Ping with 125 bytes of payload (the largest allowed)", pong,
             _ping(b"\xfe" * 125)),
        Case("2.5", "Ping with 126 bytes of payload (over the control-frame limit)", MUST_FAIL,
             _oversized_ping),
        Case("2.6", "Ping with 125 bytes, written one byte at a time", pong,
             _ping(b"\xfe" * 125, chop=1)),
        Case("2.7", "Unsolicited pong without payload", "Ignored (5.5.3); clean close.",
             _unsolicited_pong(b"", False)),
        Case("2.8", "Unsolicited pong with payload", "Ignored (5.5.3); clean close.",
             _unsolicited_pong(b"unsolicited", False)),
        Case("2.9", "Unsolicited pong, then a ping", "Only the ping is answered; clean close.",
             _unsolicited_pong(b"unsolicited", True)),
        Case("2.10", "Ten pings in one write",
             "A pong for each, or at least for the last (5.5.3 MAY); clean close.",
             _ping_burst(None)),
        Case("2.11", "Ten pings written one byte at a time",
             "A pong for each, or at least for the last (5.5.3 MAY); clean close.",
             _ping_burst(1)),
    ]  # fmt: skip


# -- groups 3 and 4: what the server must refuse after a valid message ---------------------


def _refuse_after_valid(
    bad: tuple[bytes, int, int], why: str, *, style: str = "one", lead: bool = True
) -> CaseRun:
    """Send a valid text (``lead``), a bad frame, a ping: echo of the valid text (the
    server failing before it is NON-STRICT), then the connection failed.
    ``style``: ``one`` write, ``frames`` one write per frame with pauses, ``octets``."""
    payload, opcode, rsv = bad

    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        answer = ctx.probe.text(b"Hello, world!") if lead else None
        frames = []
        if answer is not None:
            frames.append(ws.build(answer.payload))
        frames.append(ws.build(payload, opcode=opcode, rsv=rsv))
        if lead:
            frames.append(ws.build(b"ping after", opcode=OP_PING))
        for frame in frames:
            if style == "octets":
                await ws.send_chopped(frame, 1)
            else:
                ws.write_raw(frame)
                if style == "frames":
                    await ws.drain()
                    await ctx.poll_failure(0.1)
        if answer is not None:
            await ctx.expect_answer(answer, early_failure="NON-STRICT")
        await ctx.expect_failure(why=why)

    return run


def group3() -> list[Case]:
    bad = "a frame with a reserved bit set and no extension negotiated (5.2 MUST fail)"
    expect = "Echo of the valid message, then " + MUST_FAIL[0].lower() + MUST_FAIL[1:]
    return [
        Case("3.1", "Text frame with RSV3 set", MUST_FAIL,
             _refuse_after_valid((b"Hello, world!", OP_TEXT, 1), bad, lead=False)),
        Case("3.2", "Valid text, text frame with RSV2 set, ping", expect,
             _refuse_after_valid((b"Hello, world!", OP_TEXT, 2), bad)),
        Case("3.3", "Valid text, text with RSV2+RSV3, ping; one write per frame", expect,
             _refuse_after_valid((b"Hello, world!", OP_TEXT, 3), bad, style="frames")),
        Case("3.4", "Valid text, text with RSV2+RSV3, ping; one byte at a time", expect,
             _refuse_after_valid((b"Hello, world!", OP_TEXT, 3), bad, style="octets")),
        Case("3.5", "Binary frame with RSV1+RSV3 set", MUST_FAIL,
             _refuse_after_valid((b"\x00\xff\xfe\xfd", OP_BINARY, 5), bad, lead=False)),
        Case("3.6", "Ping with RSV1+RSV2 set", MUST_FAIL,
             _refuse_after_valid((b"Hello, world!", OP_PING, 6), bad, lead=False)),
        Case("3.7", "Close frame with all three reserved bits set", MUST_FAIL,
             _refuse_after_valid((b"\x03\xe8", OP_CLOSE, 7), bad, lead=False)),
        Case("3.8", "Text frame with RSV1 set although no extension was negotiated", MUST_FAIL,
             _refuse_after_valid((b"Hello, world!", OP_TEXT, 4), bad, lead=False)),
    ]  # fmt: skip


def group4() -> list[Case]:
    cases: list[Case] = []
    expect = "Echo of the valid message, then " + MUST_FAIL[0].lower() + MUST_FAIL[1:]
    for section, opcodes, kind in (("4.1", (3, 4, 5, 6, 7), "data"),
                                   ("4.2", (11, 12, 13, 14, 15), "control")):  # fmt: skip
        why = f"a frame with the reserved {kind} opcode"
        first, second, third, fourth, fifth = opcodes
        cases += [
            Case(f"{section}.1", f"Frame with reserved {kind} opcode {first}, no payload",
                 MUST_FAIL, _refuse_after_valid((b"", first, 0), f"{why} {first}", lead=False)),
            Case(f"{section}.2", f"Frame with reserved {kind} opcode {second} and a payload",
                 MUST_FAIL,
                 _refuse_after_valid((b"reserved", second, 0), f"{why} {second}", lead=False)),
            Case(f"{section}.3", f"Valid text, reserved {kind} opcode {third}, ping", expect,
                 _refuse_after_valid((b"", third, 0), f"{why} {third}")),
            Case(f"{section}.4",
                 f"Valid text, reserved {kind} opcode {fourth} with payload, ping", expect,
                 _refuse_after_valid((b"reserved", fourth, 0), f"{why} {fourth}")),
            Case(f"{section}.5",
                 f"Valid text, reserved {kind} opcode {fifth}, ping; one byte at a time", expect,
                 _refuse_after_valid((b"reserved", fifth, 0), f"{why} {fifth}", style="octets")),
        ]  # fmt: skip
    return cases
