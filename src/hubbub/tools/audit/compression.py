"""Groups 12 and 13: permessage-deflate (RFC 7692): payloads, and parameter offers.

Rule: the client side of the extension is the codec's (``hubbub.websocket.
deflate``: ``ClientOffer``, ``accept_response``, ``PerMessageDeflate``); this
module only decides what to send. A server may decline any offer (RFC 7692 5:
no extension, no failure): UNIMPLEMENTED. An answer the RFC forbids (a
parameter not offered, a window larger than asked, a missing
``server_no_context_takeover`` that was required) is FAILED, as is a wrong echo
or a compressed frame the codec cannot inflate. Group 12 uses the plain offer
with payloads of every kind and size (one frame, fragments, compressed and
uncompressed messages mixed); group 13 makes each kind of offer and checks that
the agreed parameters carry ten messages each way (context takeover matters
across messages). Text payloads also run in Centrifugo mode (each one a
command the server answers); binary ones in echo mode only.
"""

from __future__ import annotations

import os

from hubbub.tools.audit.case import BOTH, ECHO_ONLY, Answer, Case, CaseContext, CaseRun
from hubbub.tools.audit.connection import HandshakeError, NegotiationFailed
from hubbub.websocket.deflate import ClientOffer
from hubbub.websocket.frames import OP_BINARY, OP_TEXT

SIZES = (16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072)
OFFER_SIZES = (16, 1024, 65536)
MESSAGES = 10
ECHO = ("permessage-deflate agreed (or declined: UNIMPLEMENTED); every message comes back "
        "unchanged, compressed or not.")  # fmt: skip
WORDS = b"the quick brown fox jumps over the lazy dog while permessage-deflate squeezes it "


def _content(kind: str, size: int, index: int) -> bytes:
    if kind == "random":
        return os.urandom(size)
    if kind == "zeros":
        return b"\x00" * size
    stamp = b"%d:" % index  # every message differs: an echo of the wrong one shows
    return (stamp + WORDS * (size // len(WORDS) + 1))[:size]


def _deflate_case(
    kind: str, size: int, *, offer: ClientOffer, pieces: int = 1, mixed: bool = False
) -> CaseRun:
    binary = kind != "text"

    async def run(ctx: CaseContext) -> None:
        try:
            ws = await ctx.open(origin=ctx.target.origin, offer=offer)
        except NegotiationFailed as exc:
            extensions = exc.head.get("sec-websocket-extensions") if exc.head else None
            if offer.server_max_window_bits == 15 and "server_max_window_bits" not in (
                extensions or ""
            ):
                # Accepting means echoing the parameter (7.1.2.1); left out, the server
                # compresses with the default window, 15: what was asked, so no harm done.
                ctx.judge("NON-STRICT", f"{exc.problem}: the default window equals the offer")
                return
            ctx.judge("FAILED", f"{exc.problem} (RFC 7692 7.1: the client must fail)")
            return
        except HandshakeError as exc:
            ctx.judge("FAILED", f"the handshake with a permessage-deflate offer failed: "
                      f"{exc.problem}")  # fmt: skip
            return
        ctx.conn = ws
        if ws.agreed is None:
            ctx.judge("UNIMPLEMENTED", f"the server declined the offer {offer.header()!r}")
            await ctx.close_normally()
            return
        ctx.note(f"agreed: {ws.agreed.header()}")
        if ctx.options.mode == "centrifugo":
            await ctx.protocol_connect(ws)
        for index in range(MESSAGES):
            content = _content(kind, size, index)
            answer = ctx.probe.binary(content) if binary else ctx.probe.text(content)
            opcode = OP_BINARY if binary else OP_TEXT
            log = index < 3
            if mixed and index % 2:
                frame = ws.build(answer.payload, opcode=opcode, log=log)
                note = "(uncompressed)"
            else:
                frame = ws.compressed_frames(answer.payload, opcode, pieces=pieces, log=log)
                note = "(compressed)"
            ws.write_raw(frame, note) if log else ws.writer.write(frame)
            if not await ctx.expect_answer(answer, log=log):
                ctx.note(f"after {index} messages")
                return
        ctx.note(f"{MESSAGES} messages of {size} bytes came back unchanged")
        await ctx.close_normally()

    return run


def group12() -> list[Case]:
    cases: list[Case] = []
    offer = ClientOffer()
    sections = (
        ("12.1", "text", 1, False, "Compressible text"),
        ("12.2", "random", 1, False, "Random (incompressible) binary"),
        ("12.3", "text", 3, False, "Compressible text in 3 fragments"),
        ("12.4", "zeros", 1, False, "Binary zeros (very compressible)"),
        ("12.5", "text", 1, True, "Compressible text, compressed and uncompressed alternating"),
    )
    for section, kind, pieces, mixed, title in sections:
        for number, size in enumerate(SIZES, 1):
            cases.append(Case(
                f"{section}.{number}", f"{title}: {MESSAGES} messages of {size} bytes", ECHO,
                _deflate_case(kind, size, offer=offer, pieces=pieces, mixed=mixed),
                modes=BOTH if kind == "text" else ECHO_ONLY, connect=False, limit=60.0,
            ))  # fmt: skip
    return cases


OFFERS = (
    ("13.1", ClientOffer()),
    ("13.2", ClientOffer(client_no_context_takeover=True)),
    ("13.3", ClientOffer(client_max_window_bits=9)),
    ("13.4", ClientOffer(client_max_window_bits=15)),
    ("13.5", ClientOffer(server_no_context_takeover=True)),
    ("13.6", ClientOffer(server_max_window_bits=9)),
    ("13.7", ClientOffer(server_max_window_bits=15)),
    ("13.8", ClientOffer(server_no_context_takeover=True, client_no_context_takeover=True,
                         server_max_window_bits=9, client_max_window_bits=9)),
)  # fmt: skip


def group13() -> list[Case]:
    cases: list[Case] = []
    for section, offer in OFFERS:
        for number, size in enumerate(OFFER_SIZES, 1):
            cases.append(Case(
                f"{section}.{number}",
                f"Offer {offer.header()!r}: {MESSAGES} text messages of {size} bytes",
                "The answer honours the offer (RFC 7692 7.1), or declines it "
                "(UNIMPLEMENTED); every message comes back unchanged.",
                _deflate_case("text", size, offer=offer), connect=False, limit=60.0,
            ))  # fmt: skip
    return cases


BOMB = 32 << 20


async def bomb(ctx: CaseContext) -> None:
    """S3.1: a 32 MiB message of spaces deflated to a few KiB: the server must bound
    what it inflates (a close 1009) rather than build it."""
    try:
        ws = await ctx.open(origin=ctx.target.origin, offer=ClientOffer())
    except HandshakeError as exc:
        ctx.note(f"handshake with a permessage-deflate offer refused ({exc.problem})")
        return
    if ws.agreed is None:
        ctx.note("the server does not negotiate permessage-deflate: no decompression to abuse")
        return
    ctx.conn = ws
    if ctx.options.mode == "centrifugo":
        await ctx.protocol_connect(ws)
    frame = ws.compressed_frames(b" " * BOMB, OP_TEXT)
    ws.write_raw(frame, f"({len(frame)} bytes on the wire, {BOMB} once inflated)")
    answer = Answer(b" " * BOMB, OP_TEXT, None)
    event = await ctx.await_event(10.0)
    if event is None or event.kind == "message":
        what = "echoed it" if event is not None and answer.matches(event) else "kept the connection"
        ctx.judge("INFORMATIONAL", f"the server inflated a {BOMB >> 20} MiB message from "
                  f"{len(frame)} bytes and {what}: no decompressed-size limit")  # fmt: skip
        return
    ctx.note(f"the server stopped the bomb ({ctx.result.remote_close_code or 'dropped'})")
