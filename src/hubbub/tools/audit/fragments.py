"""Group 5: fragmentation (RFC 6455 5.4): reassembly, control frames between fragments,
continuations without a message, a new message inside an unfinished one.

Rule: as in every group, the case states what it sends and the context judges.
Each sequence is sent three ways where the way matters: in one write, one
write per frame (with a short pause), and one byte per write.
"""

from __future__ import annotations

from hubbub.tools.audit.case import ECHO_ONLY, Case, CaseContext, CaseRun
from hubbub.websocket.frames import OP_BINARY, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT

MUST_FAIL = "The server fails the connection (close 1002, or a drop) and answers nothing after it."


async def _write(ctx: CaseContext, frames: list[bytes], style: str) -> None:
    """``one`` write, one write per ``frames`` (pausing 0.1 s), or ``octets``."""
    ws = ctx.ws
    if style == "one":
        ws.write_raw(b"".join(frames), f"(the {len(frames)} frames above, in one write)")
    elif style == "frames":
        for frame in frames:
            ws.write_raw(frame)
            await ws.drain()
            await ctx.poll_failure(0.1)
    else:
        await ws.send_chopped(b"".join(frames), 1)


def _fragmented_control(opcode: int) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        frames = [ws.build(b"fragment1", opcode=opcode, fin=False),
                  ws.build(b"fragment2", opcode=OP_CONTINUATION)]  # fmt: skip
        await _write(ctx, frames, "one")
        await ctx.expect_failure(why="a fragmented control frame (5.5: MUST NOT be fragmented)")

    return run


def _two_fragments(style: str, ping: bool) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        answer = ctx.probe.text(b"fragment1fragment2")
        first, second = answer.split(9)
        frames = [ws.build(first, fin=False)]
        if ping:
            frames.append(ws.build(b"between", opcode=OP_PING))
        frames.append(ws.build(second, opcode=OP_CONTINUATION))
        await _write(ctx, frames, style)
        if ping:
            await ctx.expect_pong(b"between")
        await ctx.expect_answer(answer)
        await ctx.close_normally()

    return run


def _orphan_continuation(fin: bool, style: str) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        answer = ctx.probe.text(b"fragment2")
        frames = [
            ws.build(b"fragment1", opcode=OP_CONTINUATION, fin=fin),
            ws.build(answer.payload),
        ]
        if not fin:
            frames.append(ws.build(b"fragment3", opcode=OP_CONTINUATION))
        await _write(ctx, frames, style)
        await ctx.expect_failure(why="a continuation frame with no message to continue")

    return run


async def _extra_continuation(ctx: CaseContext) -> None:
    ws = ctx.ws
    answer = ctx.probe.text(b"fragment1fragment2")
    first, second = answer.split(9)
    frames = [ws.build(first, fin=False), ws.build(second, opcode=OP_CONTINUATION),
              ws.build(b"fragment3", opcode=OP_CONTINUATION, fin=False),
              ws.build(b"fragment4", opcode=OP_CONTINUATION)]  # fmt: skip
    await _write(ctx, frames, "one")
    await ctx.expect_answer(answer, early_failure="NON-STRICT")
    await ctx.expect_failure(why="continuation frames after the message had ended")


def _continuation_first(fin: bool) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        frames = []
        for _ in range(2):
            frames += [ws.build(b"fragment1", opcode=OP_CONTINUATION, fin=fin),
                       ws.build(b"fragment2", fin=False),
                       ws.build(b"fragment3", opcode=OP_CONTINUATION)]  # fmt: skip
        await _write(ctx, frames, "one")
        await ctx.expect_failure(why="a continuation frame before any message")

    return run


async def _text_inside_text(ctx: CaseContext) -> None:
    ws = ctx.ws
    frames = [ws.build(b"fragment1", fin=False), ws.build(b"fragment2")]
    await _write(ctx, frames, "one")
    await ctx.expect_failure(why="a new text frame inside an unfinished message")


def _five_fragments(pause: float) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        answer = ctx.probe.text(b"fragment1fragment2fragment3fragment4fragment5")
        pieces = answer.split(9, 18, 27, 36)
        for index, piece in enumerate(pieces):
            opcode = OP_TEXT if index == 0 else OP_CONTINUATION
            ws.send_frame(piece, opcode=opcode, fin=index == len(pieces) - 1)
            if index in (1, 3):
                ws.send_frame(b"pongme %d" % index, opcode=OP_PING)
                if not await ctx.expect_pong(b"pongme %d" % index):
                    return
            await ctx.poll_failure(pause)
        await ctx.expect_answer(answer)
        await ctx.close_normally()

    return run


async def _binary_fragments(ctx: CaseContext) -> None:
    ws = ctx.ws
    content = bytes(range(256)) * 3
    ws.send_frame(content[:256], opcode=OP_BINARY, fin=False)
    ws.send_frame(content[256:512], opcode=OP_CONTINUATION, fin=False)
    ws.send_frame(content[512:], opcode=OP_CONTINUATION)
    await ctx.expect_answer(ctx.probe.binary(content))
    await ctx.close_normally()


def group5() -> list[Case]:
    whole = "The reassembled message comes back; clean close."
    with_pong = "A pong for the ping between the fragments, then the whole message; clean close."
    styles = (("one", "in one write"), ("frames", "one write per frame"),
              ("octets", "one byte per write"))  # fmt: skip
    cases = [
        Case("5.1", "Ping in two fragments", MUST_FAIL, _fragmented_control(OP_PING)),
        Case("5.2", "Pong in two fragments", MUST_FAIL, _fragmented_control(OP_PONG)),
    ]
    number = 3
    for ping in (False, True):
        for style, how in styles:
            what = "Text in two fragments" + (" with a ping between them" if ping else "")
            cases.append(Case(f"5.{number}", f"{what}, {how}", with_pong if ping else whole,
                              _two_fragments(style, ping)))  # fmt: skip
            number += 1
    for fin in (True, False):
        for style, how in styles:
            what = f"Continuation (FIN={int(fin)}) with nothing to continue, then a text message"
            cases.append(Case(f"5.{number}", f"{what}, {how}", MUST_FAIL,
                              _orphan_continuation(fin, style)))  # fmt: skip
            number += 1
    cases += [
        Case("5.15", "Text in two fragments, then two more continuation frames",
             "Echo of the message, then " + MUST_FAIL[0].lower() + MUST_FAIL[1:],
             _extra_continuation),
        Case("5.16", "Twice: continuation (FIN=0), text (FIN=0), continuation (FIN=1)",
             MUST_FAIL, _continuation_first(False)),
        Case("5.17", "Twice: continuation (FIN=1), text (FIN=0), continuation (FIN=1)",
             MUST_FAIL, _continuation_first(True)),
        Case("5.18", "Text (FIN=0), then another text frame instead of a continuation",
             MUST_FAIL, _text_inside_text),
        Case("5.19", "Text in five fragments with pings after the 2nd and 4th, 0.2 s apart",
             "Each ping answered at once, then the whole message; clean close.",
             _five_fragments(0.2)),
        Case("5.20", "Binary message in three fragments", whole, _binary_fragments,
             modes=ECHO_ONLY),
    ]  # fmt: skip
    return cases
