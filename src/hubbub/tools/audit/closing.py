"""Group 7: the closing handshake and close codes (RFC 6455 5.5.1, 7.1-7.4).

Rule: a close frame MUST be answered with a close frame and then the TCP
connection closed by the server (5.5.1, 7.1.1); nothing but that answer may
follow the server's close. A close frame whose payload is one byte, whose code
may not be sent (7.4: 0-999, 1004-1006, 1015, 1016-2999 unassigned, 5000 and
above), or whose reason is not UTF-8, is a protocol error the server MUST fail
on. Codes 1012-1014 were registered after RFC 6455: accepting or refusing them
is INFORMATIONAL.
"""

from __future__ import annotations

from hubbub.tools.audit.case import Case, CaseContext, CaseRun
from hubbub.tools.audit.framing import send_answer
from hubbub.websocket.frames import OP_CLOSE, OP_CONTINUATION, OP_PING

ANSWERED = "The server answers with a close frame, then closes the TCP connection."
MUST_FAIL = "The server fails the connection (close 1002, or a drop)."
VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999)
LATER_CODES = (1012, 1013, 1014)
OUT_OF_RANGE = (5000, 65535)


async def _echo_then_close(ctx: CaseContext) -> None:
    answer = ctx.probe.text(b"Hello, world!")
    await send_answer(ctx.ws, answer)
    await ctx.expect_answer(answer)
    await ctx.close_normally()


def _close_then(what: str) -> CaseRun:
    """Send a close and then something more: the server answers the close only."""

    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        late = "NON-STRICT"
        if what == "fragment":
            answer = ctx.probe.text(b"fragment1fragment2")
            first, second = answer.split(9)
            ws.send_frame(first, fin=False)
            ws.send_close(1000)
            ws.send_frame(second, opcode=OP_CONTINUATION)
        else:
            ws.send_close(1000)
            if what == "close":
                ws.send_frame(b"\x03\xe8", opcode=OP_CLOSE)
            elif what == "ping":
                ws.send_frame(b"after close", opcode=OP_PING)
            else:
                ws.send_frame(ctx.probe.text(b"after close").payload)
        await ctx.await_close_reply(late_data=late)

    return run


def _close_payload(payload: bytes, *, fails: bool, why: str = "") -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ctx.ws.send_frame(payload, opcode=OP_CLOSE)
        if fails:
            await ctx.expect_failure((1002, 1007), why=why)
        else:
            await ctx.await_close_reply()

    return run


def _later_code(code: int) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ctx.ws.send_frame(code.to_bytes(2, "big"), opcode=OP_CLOSE)
        await ctx.await_close_reply()
        reply = ctx.result.remote_close_code
        ctx.judge("INFORMATIONAL", f"code {code} (registered after RFC 6455) answered with {reply}")

    return run


def group7() -> list[Case]:
    cases = [
        Case("7.1.1", "Text message, then a close", "Echo; " + ANSWERED, _echo_then_close),
        Case("7.1.2", "Close, then a second close", ANSWERED + " The second is ignored.",
             _close_then("close")),
        Case("7.1.3", "Close, then a ping", ANSWERED + " No pong (NON-STRICT if one comes).",
             _close_then("ping")),
        Case("7.1.4", "Close, then a text message",
             ANSWERED + " No echo (NON-STRICT if one comes).", _close_then("text")),
        Case("7.1.5", "First fragment, close, last fragment",
             ANSWERED + " No echo (NON-STRICT if one comes).", _close_then("fragment")),
        Case("7.3.1", "Close without payload", ANSWERED, _close_payload(b"", fails=False)),
        Case("7.3.2", "Close with a 1-byte payload", MUST_FAIL,
             _close_payload(b"\x03", fails=True, why="a close payload of one byte (5.5.1)")),
        Case("7.3.3", "Close 1000 without reason", ANSWERED,
             _close_payload(b"\x03\xe8", fails=False)),
        Case("7.3.4", "Close 1000 with a short reason", ANSWERED,
             _close_payload(b"\x03\xe8Hello World!", fails=False)),
        Case("7.3.5", "Close 1000 with a 123-byte reason (the largest)", ANSWERED,
             _close_payload(b"\x03\xe8" + b"*" * 123, fails=False)),
        Case("7.3.6", "Close 1000 with a 124-byte reason (payload over 125)", MUST_FAIL,
             _close_payload(b"\x03\xe8" + b"*" * 124, fails=True,
                            why="a close frame of 126 bytes (control frames: 125 at most)")),
        Case("7.5.1", "Close 1000 with a reason that is not UTF-8", MUST_FAIL,
             _close_payload(b"\x03\xe8" + "κόσμε".encode() + b"\xed\xa0\x80", fails=True,
                            why="a close reason that is not UTF-8")),
    ]  # fmt: skip
    for number, code in enumerate(VALID_CODES, 1):
        cases.append(Case(f"7.7.{number}", f"Close with the valid code {code}", ANSWERED,
                          _close_payload(code.to_bytes(2, "big"), fails=False)))  # fmt: skip
    for number, code in enumerate(INVALID_CODES, 1):
        cases.append(Case(f"7.9.{number}", f"Close with code {code}, which may not be sent",
                          MUST_FAIL, _close_payload(code.to_bytes(2, "big"), fails=True,
                                                    why=f"close code {code}")))  # fmt: skip
    for number, code in enumerate(LATER_CODES, 1):
        cases.append(Case(f"7.11.{number}", f"Close with code {code} (registered after the RFC)",
                          "Answered or refused: INFORMATIONAL.", _later_code(code)))  # fmt: skip
    for number, code in enumerate(OUT_OF_RANGE, 1):
        cases.append(Case(f"7.13.{number}", f"Close with code {code} (out of range)", MUST_FAIL,
                          _close_payload(code.to_bytes(2, "big"), fails=True,
                                         why=f"close code {code}")))  # fmt: skip
    return cases
