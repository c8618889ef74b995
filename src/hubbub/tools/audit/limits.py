"""Groups 9 and 10: large messages, many fragments, many round trips; automatic
fragmentation (RFC 6455 5.4, 10.4).

Rule: these cases time the server as much as they check it, so they run one at
a time (``serial``) after the others, each bounded. The RFC lets a server cap
the size of what it accepts (10.4): a close 1009 on a large message is
INFORMATIONAL (its limit), never FAILED; so is a close 1008 (a policy such as a
cap on the number of fragments). In Centrifugo mode the text cases run too,
each message an ``rpc`` command carrying the text (the probe's), cut into the
same fragments and writes; a close 3013 (too many requests: the server's
command rate limit) in the round trips is its limit too. Binary messages have
no answer in the JSON protocol: echo mode only.
"""

from __future__ import annotations

import time

from hubbub.tools.audit.case import BOTH, CENTRIFUGO, ECHO_ONLY, Case, CaseContext, CaseRun
from hubbub.websocket.frames import OP_BINARY, OP_CONTINUATION, OP_TEXT

MB = 1 << 20
KB = 1 << 10
ECHO = "The message comes back unchanged (or a close 1009: the server's limit, INFORMATIONAL)."
#: Closes that announce a limit of the server's own: 1009 (too big), 1008 (policy: Node's
#: ws, for one, caps the number of fragments of a message).
LIMIT_CODES = (1009, 1008)
#: Centrifugo mode: also 3013, a client protocol's command rate limit.
RATE_LIMITED = 3013


def _limit_codes(ctx: CaseContext) -> tuple[int, ...]:
    return (*LIMIT_CODES, RATE_LIMITED) if ctx.options.mode == CENTRIFUGO else LIMIT_CODES


def _budget(size: int) -> float:
    """Seconds a server gets to echo ``size`` bytes: generous, bounded."""
    return 10.0 + size / MB


def _fill(size: int, binary: bool) -> bytes:
    return (b"\xfe" if binary else b"*") * size


def _big(
    size: int, binary: bool, *, fragment: int | None = None, chop: int | None = None
) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        content = _fill(size, binary)
        answer = ctx.probe.binary(content) if binary else ctx.probe.text(content)
        payload = answer.payload  # the content itself, or a command carrying it
        opcode = OP_BINARY if binary else OP_TEXT
        started = time.monotonic()
        if fragment is not None:
            count = max(1, -(-len(payload) // fragment))
            ws.wire.add(">", f"(a {len(payload)}-byte message in {count} fragments of {fragment})")
            frames = []
            for index in range(count):
                piece = payload[index * fragment : (index + 1) * fragment]
                frames.append(ws.build(piece, opcode=opcode if index == 0 else OP_CONTINUATION,
                                       fin=index == count - 1, log=index < 3))  # fmt: skip
            ws.write_raw(b"".join(frames), f"(all {count} frames in one write)")
        elif chop is not None:
            await ws.send_chopped(ws.build(payload, opcode=opcode), chop)
        else:
            ws.send_frame(payload, opcode=opcode)
        await ws.drain()
        if await ctx.expect_answer(answer, within=_budget(size), limit_codes=_limit_codes(ctx)):
            seconds = time.monotonic() - started
            rate = 2 * size / MB / max(seconds, 1e-6)
            ctx.note(f"round trip {seconds * 1000:.0f} ms ({rate:.1f} MB/s both ways)")
        await ctx.close_normally()

    return run


def _round_trips(size: int, binary: bool, count: int = 1000) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        content = _fill(size, binary)
        answer = ctx.probe.binary(content) if binary else ctx.probe.text(content)
        started = time.monotonic()
        for index in range(count):
            ctx.ws.send_frame(answer.payload, opcode=answer.opcode, log=index < 3)
            if not await ctx.expect_answer(answer, log=index < 3, limit_codes=_limit_codes(ctx)):
                ctx.note(f"after {index} round trips")
                break
        else:
            seconds = time.monotonic() - started
            ctx.note(f"{count} round trips in {seconds * 1000:.0f} ms "
                     f"({seconds / count * 1e6:.0f} us each)")  # fmt: skip
        await ctx.close_normally()

    return run


def group9() -> list[Case]:
    cases: list[Case] = []
    sizes = (64 * KB, 256 * KB, MB, 4 * MB, 8 * MB, 16 * MB)
    fragments = (64, 256, KB, 4 * KB, 16 * KB, 64 * KB, 256 * KB, MB, 4 * MB)
    chops = (64, 128, 256, 512, 1024, 2048)
    small = (0, 16, 64, 256, KB, 4 * KB)
    for binary, kind in ((False, "Text"), (True, "Binary")):
        section = 2 if binary else 1
        for number, size in enumerate(sizes, 1):
            cases.append(Case(f"9.{section}.{number}", f"{kind} message of {size // KB} KiB",
                              ECHO, _big(size, binary)))  # fmt: skip
        for number, fragment in enumerate(fragments, 1):
            cases.append(Case(f"9.{section + 2}.{number}",
                              f"{kind} message of 4 MiB in fragments of {fragment} bytes",
                              ECHO, _big(4 * MB, binary, fragment=fragment)))  # fmt: skip
        for number, chop in enumerate(chops, 1):
            cases.append(Case(f"9.{section + 4}.{number}",
                              f"{kind} message of 1 MiB in one frame, {chop} bytes per write",
                              ECHO, _big(MB, binary, chop=chop)))  # fmt: skip
        for number, size in enumerate(small, 1):
            cases.append(Case(f"9.{section + 6}.{number}",
                              f"1000 {kind.lower()} messages of {size} bytes, one round trip each",
                              "Every message comes back, in order.",
                              _round_trips(size, binary)))  # fmt: skip
    return [_serial(c, limit=90.0) for c in cases]


def group10() -> list[Case]:
    async def run(ctx: CaseContext) -> None:
        await _big(64 * KB, False, fragment=1300)(ctx)

    return [_serial(Case("10.1.1", "Text message of 64 KiB sent in fragments of 1300 bytes",
                         "The reassembled message comes back.", run), limit=30.0)]  # fmt: skip


def _serial(case: Case, *, limit: float) -> Case:
    binary = case.description.startswith(("Binary", "1000 binary"))
    return Case(case.id, case.description, case.expectation, case.run,
                modes=ECHO_ONLY if binary else BOTH, serial=True, limit=limit)  # fmt: skip
