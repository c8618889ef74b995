"""Group 6: UTF-8 in text messages (RFC 6455 5.6 and 8.1, RFC 3629).

Rule: a text message that is not valid UTF-8 MUST fail the connection (8.1),
with 1007 as the code it SHOULD carry (7.4.1); a valid one, however it is cut
into fragments or TCP writes, MUST be accepted whole. Validity is decided by
the strict decoder of the standard library (RFC 3629: no surrogates, no
overlong forms, nothing above U+10FFFF) over tables of byte sequences written
here. Fail-fast (6.4): a server that fails as soon as the bytes cannot be
UTF-8, before the message or even the frame is complete, is OK; one that
waits for the end is NON-STRICT (the RFC allows it).
"""

from __future__ import annotations

from hubbub.tools.audit.case import BOTH, ECHO_ONLY, Case, CaseContext, CaseRun
from hubbub.websocket.frames import OP_CONTINUATION, OP_TEXT

GREEK = "κόσμε".encode()  # 11 bytes: 2, 3, 2, 2, 2-byte characters
MIXED = "Hello-µ@ßöäüàá-UTF-8!!".encode()
FAIL_1007 = "The server fails the connection (close 1007, or a drop): invalid UTF-8 (8.1 MUST)."
ECHO = "The text comes back unchanged; clean close."


def valid(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _whole(content: bytes) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        answer = ctx.probe.text(content)
        ctx.ws.send_frame(answer.payload)
        if valid(content):
            await ctx.expect_answer(answer)
            await ctx.close_normally()
        else:
            await ctx.expect_failure((1007,), why="a text message that is not UTF-8")

    return run


def _fragments(content: bytes, cuts: list[int]) -> CaseRun:
    """Send ``content`` as a text message cut into fragments at body positions ``cuts``."""

    async def run(ctx: CaseContext) -> None:
        answer = ctx.probe.text(content)
        pieces = answer.split(*cuts)
        for index, piece in enumerate(pieces):
            ctx.ws.send_frame(
                piece,
                opcode=OP_TEXT if index == 0 else OP_CONTINUATION,
                fin=index == len(pieces) - 1,
            )
        if valid(content):
            await ctx.expect_answer(answer)
            await ctx.close_normally()
        else:
            await ctx.expect_failure((1007,), why="a fragmented text message that is not UTF-8")

    return run


def _fail_fast(head: bytes, bad: bytes, tail: bytes, *, frames: bool) -> CaseRun:
    """Send ``head``, then ``bad`` (after which no UTF-8 text can follow), pause 1 s, then
    ``tail``: as three fragments (``frames``) or as one frame in three TCP writes."""

    async def run(ctx: CaseContext) -> None:
        ws = ctx.ws
        answer = ctx.probe.text(head + bad + tail)
        first, second, third = answer.split(len(head), len(head) + len(bad))
        if frames:
            ws.send_frame(first, fin=False)
            ws.send_frame(second, opcode=OP_CONTINUATION, fin=False)
            last = ws.build(third, opcode=OP_CONTINUATION)
        else:
            frame = ws.build(answer.payload)
            start = len(frame) - len(answer.payload)  # the header's size
            cut1, cut2 = start + len(first), start + len(first) + len(second)
            ws.write_raw(frame[:cut1], f"(frame bytes 0-{cut1})")
            await ws.drain()
            await ctx.poll_failure(0.1)
            ws.write_raw(frame[cut1:cut2], f"(frame bytes {cut1}-{cut2}: the bytes that cannot "
                                           "be UTF-8)")  # fmt: skip
            last = frame[cut2:]
        await ws.drain()
        what = "fragment" if frames else "piece of the frame"
        why = f"the {what} that made the text invalid UTF-8"
        if await ctx.poll_failure(1.0):
            await ctx.expect_failure((1007,), why=why)
            return
        ctx.note(f"still open 1 s after the {what} that cannot be UTF-8: sending the rest")
        ws.write_raw(last, "(the rest)")
        await ctx.expect_failure((1007,), why=why, late=True)

    return run


def _sequence_cases(section: str, title: str, sequences: list[bytes]) -> list[Case]:
    cases = []
    for number, data in enumerate(sequences, 1):
        verdict = "valid" if valid(data) else "invalid"
        cases.append(
            Case(
                f"6.{section}.{number}",
                f"{title}: {data.hex(' ')} ({verdict} UTF-8)",
                ECHO if valid(data) else FAIL_1007,
                _whole(data),
            )
        )
    return cases


def _hex(*items: str) -> list[bytes]:
    return [bytes.fromhex(item) for item in items]


def group6() -> list[Case]:
    cases = [
        Case("6.1.1", "Empty text message", ECHO, _whole(b""), modes=ECHO_ONLY),
        Case("6.1.2", "Empty text message in three empty fragments", ECHO,
             _fragments(b"", [0, 0]), modes=ECHO_ONLY),
        Case("6.1.3", "Text in three fragments, the first and last empty", ECHO,
             _fragments(b"middle frame payload", [0, 20])),
        Case("6.2.1", "Valid UTF-8 with 2-byte characters, one frame", ECHO, _whole(MIXED)),
        Case("6.2.2", "The same text in two fragments cut between characters", ECHO,
             _fragments(MIXED, [8])),
        Case("6.2.3", "The same text, one byte per fragment (characters cut across fragments)",
             ECHO, _fragments(MIXED, list(range(1, len(MIXED))))),
        Case("6.2.4", "Three 4-byte characters, one byte per fragment", ECHO,
             _fragments("𝄞𝄞𝄞".encode(), list(range(1, 12)))),
        Case("6.3.1", "Text with an encoded surrogate in the middle, one frame", FAIL_1007,
             _whole(GREEK + bytes.fromhex("eda080") + b"edited")),
        Case("6.3.2", "The same text, one byte per fragment", FAIL_1007,
             _fragments(GREEK + bytes.fromhex("eda080") + b"edited", list(range(1, 20)))),
    ]  # fmt: skip
    fast = (
        "Fails at once (1007) after the bytes that cannot be UTF-8 (OK); after the end: NON-STRICT."
    )
    cases += [
        Case("6.4.1", "Fail-fast: 3 fragments, the 2nd holds a code point above U+10FFFF",
             fast, _fail_fast(GREEK, bytes.fromhex("f4908080"), b"edited", frames=True)),
        Case("6.4.2", "Fail-fast: 3 fragments, the invalid sequence split between fragments",
             fast, _fail_fast(GREEK + b"\xf4", b"\x90", b"\x80\x80edited", frames=True)),
        Case("6.4.3", "Fail-fast: one frame in 3 writes, the 2nd holds the invalid code point",
             fast, _fail_fast(GREEK, bytes.fromhex("f4908080"), b"edited", frames=False)),
        Case("6.4.4", "Fail-fast: one frame in 3 writes, the invalid sequence split between them",
             fast, _fail_fast(GREEK + b"\xf4", b"\x90", b"\x80\x80edited", frames=False)),
    ]  # fmt: skip
    cases += _sequence_cases("5", "Valid text", [
        GREEK, "Hello, 世界".encode(), "𝄞 clef".encode(), "aß中𝄞".encode(), b"\x7f"])  # fmt: skip
    cases += _sequence_cases("6", "A prefix of a Greek word", [
        GREEK[:n] for n in range(1, len(GREEK) + 1)])  # fmt: skip
    cases += _sequence_cases(
        "7", "First code point of each length", _hex("00", "c280", "e0a080", "f0908080")
    )
    cases += _sequence_cases(
        "8", "First 5- and 6-byte forms (not UTF-8)", _hex("f888808080", "fc8480808080")
    )
    cases += _sequence_cases(
        "9", "Last code point of each length", _hex("7f", "dfbf", "efbfbf", "f48fbfbf")
    )
    cases += _sequence_cases(
        "10",
        "Largest 4-, 5- and 6-byte forms (out of range)",
        _hex("f7bfbfbf", "fbbfbfbfbf", "fdbfbfbfbfbf"),
    )
    cases += _sequence_cases(
        "11",
        "Around the edges of the ranges",
        _hex("ed9fbf", "ee8080", "efbfbd", "f48fbfbf", "f4908080"),
    )
    cases += _sequence_cases("12", "Continuation bytes without a start", [
        *_hex("80", "bf", "80bf", "80bf80", "80bf80bf", "80bf80bf80", "80bf80bf80bf"),
        bytes(range(0x80, 0xC0))])  # fmt: skip
    cases += _sequence_cases("13", "Start bytes each followed by a space", [
        b"".join(bytes((b, 0x20)) for b in range(lo, hi))
        for lo, hi in ((0xC0, 0xE0), (0xE0, 0xF0), (0xF0, 0xF8), (0xF8, 0xFC),
                       (0xFC, 0xFE))])  # fmt: skip
    truncated = _hex("c0", "e080", "f08080", "f8808080", "fc80808080",
                     "df", "efbf", "f7bfbf", "fbbfbfbf", "fdbfbfbfbf")  # fmt: skip
    cases += _sequence_cases("14", "Sequence missing its last byte", truncated)
    cases += _sequence_cases("15", "All the truncated sequences in a row", [b"".join(truncated)])
    cases += _sequence_cases("16", "Bytes that never appear in UTF-8", _hex("fe", "ff", "fefeffff"))
    cases += _sequence_cases(
        "17",
        "Overlong forms of '/'",
        _hex("c0af", "e080af", "f08080af", "f8808080af", "fc80808080af"),
    )
    cases += _sequence_cases(
        "18",
        "Largest overlong forms",
        _hex("c1bf", "e09fbf", "f08fbfbf", "f887bfbfbf", "fc83bfbfbfbf"),
    )
    cases += _sequence_cases(
        "19",
        "Overlong forms of NUL",
        _hex("c080", "e08080", "f0808080", "f880808080", "fc8080808080"),
    )
    cases += _sequence_cases("20", "A lone UTF-16 surrogate",
                             _hex("eda080", "edadbf", "edae80", "edafbf", "edb080", "edbe80",
                                  "edbfbf"))  # fmt: skip
    cases += _sequence_cases("21", "A UTF-16 surrogate pair encoded as two sequences", [
        bytes.fromhex(high + low)
        for high in ("eda080", "edadbf", "edae80", "edafbf")
        for low in ("edb080", "edbfbf")])  # fmt: skip
    cases += _sequence_cases("22", "Noncharacter (valid UTF-8)", [
        chr(plane * 0x10000 + low).encode()
        for plane in range(17) for low in (0xFFFE, 0xFFFF)])  # fmt: skip
    cases += _sequence_cases(
        "23",
        "Replacement character and byte order mark",
        _hex("efbfbd", "efbfbdefbfbdefbfbd", "efbbbf"),
    )
    for case in cases:
        assert case.modes in (BOTH, ECHO_ONLY)
    return cases
