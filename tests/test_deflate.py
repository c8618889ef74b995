"""permessage-deflate (RFC 7692): the sans-I/O codec in both roles, then the server.

Without sockets: the extension header grammar; the server's answer to legal
and illegal offers (declined, never a failed handshake); the client's check of
a response; every parameter combination round-trips compressible,
incompressible, empty and fragmented messages through the frame reader in both
roles, with and without context takeover; a zip bomb stops at the limit
(memory bounded while inflating), corrupt data is 1007, RSV1 anywhere but the
first frame of a data message is 1002.

Over sockets, on every door (serve, attach, tls): a client offering each legal
combination gets the right response and exchanges large compressible and
incompressible messages both ways; a bomb closes 1009, corrupt data 1007; an
illegal offer is declined and RSV1 is then refused; small messages stay
uncompressed below ``websocket.compression_min_size``; a channel's broadcast is
compressed once for all its deflate subscribers.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import tracemalloc
import zlib
from typing import Any

import pytest

from hubbub.websocket import deflate as deflate_module
from hubbub.websocket.deflate import (
    ClientOffer,
    Compressor,
    DeflateParams,
    NegotiationError,
    PerMessageDeflate,
    accept_response,
    negotiate,
    parse_extensions,
)
from hubbub.websocket.frames import (
    INVALID_DATA,
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    PROTOCOL_ERROR,
    TOO_BIG,
    FrameError,
    FrameReader,
    Message,
    build_frame,
)
from tests.conftest import RunningServer
from tests.doors import Door
from tests.rawws import RawWS, handshake_request, read_http_head

SERVER_DEFAULT = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
COMPRESSIBLE = json.dumps({"text": "all work and no play makes jack a dull boy " * 5000})
INCOMPRESSIBLE = base64.b64encode(os.urandom(30_000)).decode()

# --- the header grammar --------------------------------------------------------------


def test_extensions_are_parsed_with_quoted_values_and_several_headers() -> None:
    parsed = parse_extensions(
        ['permessage-deflate; client_max_window_bits; server_max_window_bits="10"', "x-foo, bar"]
    )
    assert parsed == [
        (
            "permessage-deflate",
            [("client_max_window_bits", None), ("server_max_window_bits", "10")],
        ),
        ("x-foo", []),
        ("bar", []),
    ]


@pytest.mark.parametrize(
    "value",
    ["permessage-deflate; a b", "permessage deflate", 'p; x="unterminated', 'p; x="a b"', "p; =1"],
)
def test_bad_extension_syntax_is_an_error(value: str) -> None:
    with pytest.raises(NegotiationError):
        parse_extensions([value])


# --- the server's answer -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate", SERVER_DEFAULT),
        ("permessage-deflate; client_max_window_bits", SERVER_DEFAULT),
        (
            "permessage-deflate; client_max_window_bits=10",
            SERVER_DEFAULT + "; client_max_window_bits=10",
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            SERVER_DEFAULT + "; client_max_window_bits=8",
        ),
        (
            "permessage-deflate; server_max_window_bits=12",
            SERVER_DEFAULT + "; server_max_window_bits=12",
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            SERVER_DEFAULT + "; server_max_window_bits=9",
        ),
        (
            'permessage-deflate; server_max_window_bits="11"',
            SERVER_DEFAULT + "; server_max_window_bits=11",
        ),
        ("permessage-deflate; server_no_context_takeover", SERVER_DEFAULT),
        ("permessage-deflate; client_no_context_takeover", SERVER_DEFAULT),
        ("Permessage-Deflate; Server_No_Context_Takeover", SERVER_DEFAULT),
        # zlib cannot compress with a 256-byte window: declined, the next offer taken
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits=8, permessage-deflate", SERVER_DEFAULT),
        # illegal offers are declined
        ("permessage-deflate; foo", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; client_no_context_takeover=true", None),
        ("permessage-deflate; foo, permessage-deflate; client_max_window_bits", SERVER_DEFAULT),
        ("x-webkit-deflate-frame", None),
        ('permessage-deflate; x="', None),  # a malformed header declines, never raises
    ],
)
def test_the_server_answers_legal_offers_and_declines_illegal_ones(
    offer: str, answer: str | None
) -> None:
    agreed = negotiate([offer])
    assert (agreed.header() if agreed else None) == answer


# --- the client's check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "response", "agreed"),
    [
        (ClientOffer(), [SERVER_DEFAULT], DeflateParams(True, True)),
        (ClientOffer(), [], None),
        (
            ClientOffer(),
            ["permessage-deflate; client_max_window_bits=9"],
            DeflateParams(False, False, None, 9),
        ),
        (
            ClientOffer(server_max_window_bits=10),
            ["permessage-deflate; server_max_window_bits=9"],
            DeflateParams(False, False, 9, None),
        ),
    ],
)
def test_the_client_accepts_legal_responses(
    offer: ClientOffer, response: list[str], agreed: DeflateParams | None
) -> None:
    assert accept_response(response, offer) == agreed


@pytest.mark.parametrize(
    ("offer", "response"),
    [
        (
            ClientOffer(client_max_window_bits=None),
            ["permessage-deflate; client_max_window_bits=10"],
        ),
        (ClientOffer(client_max_window_bits=10), ["permessage-deflate; client_max_window_bits=12"]),
        (ClientOffer(), ["permessage-deflate; client_max_window_bits"]),
        (ClientOffer(server_max_window_bits=10), ["permessage-deflate"]),
        (ClientOffer(server_max_window_bits=10), ["permessage-deflate; server_max_window_bits=11"]),
        (ClientOffer(server_no_context_takeover=True), ["permessage-deflate"]),
        (ClientOffer(), ["permessage-deflate; foo"]),
        (ClientOffer(), ["x-other"]),
        (ClientOffer(), ["permessage-deflate, permessage-deflate"]),
    ],
)
def test_the_client_refuses_responses_the_rfc_forbids(
    offer: ClientOffer, response: list[str]
) -> None:
    with pytest.raises(NegotiationError):
        accept_response(response, offer)


def test_a_client_offer_header() -> None:
    offer = ClientOffer(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=True,
    )
    assert offer.header() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits"
    )
    assert negotiate([offer.header()]) == DeflateParams(True, True, 10, None)


# --- round trips through the frame reader, both roles ----------------------------------------

MESSAGES = [COMPRESSIBLE, INCOMPRESSIBLE, "", "x", "é" * 1000]
COMBINATIONS = [
    DeflateParams(server_ctx, client_ctx, server_bits, client_bits)
    for server_ctx, client_ctx in itertools.product((False, True), repeat=2)
    for server_bits in (None, 9, 12, 15)
    for client_bits in (None, 8, 9, 15)
]


def send(ext: PerMessageDeflate, text: str, *, masked: bool, fragments: int = 1) -> bytes:
    """Frames of one text message as ``ext``'s side sends it (RSV1 on the first only)."""
    payload = text.encode()
    data = ext.compress(payload)
    rsv = 4 if data is not None else 0
    data = payload if data is None else data
    if fragments == 1:
        return build_frame(data, mask=masked, rsv=rsv)
    step = max(1, len(data) // fragments + 1)
    pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    frames = [build_frame(pieces[0], mask=masked, rsv=rsv, fin=len(pieces) == 1)]
    for i, piece in enumerate(pieces[1:], 1):
        frames.append(
            build_frame(piece, opcode=OP_CONTINUATION, mask=masked, fin=i == len(pieces) - 1)
        )
    return b"".join(frames)


@pytest.mark.parametrize("params", COMBINATIONS, ids=str)
def test_every_combination_round_trips_both_ways(params: DeflateParams) -> None:
    server = PerMessageDeflate(params, server=True, level=6)
    client = PerMessageDeflate(params, server=False, level=6)
    at_server = FrameReader(0, masked=True, inflater=server)
    at_client = FrameReader(0, masked=False, inflater=client)
    for rounds in range(2):  # the second round uses (or must not use) the kept context
        for text in MESSAGES:
            fragments = 3 if rounds else 1
            assert at_server.feed(send(client, text, masked=True, fragments=fragments)) == [
                Message(OP_TEXT, text)
            ]
            assert at_client.feed(send(server, text, masked=False, fragments=fragments)) == [
                Message(OP_TEXT, text)
            ]


def test_context_takeover_makes_repeats_smaller_and_no_takeover_does_not() -> None:
    text = os.urandom(3000).hex().encode()  # compresses about 2:1 alone
    kept = Compressor(no_context_takeover=False)
    fresh = Compressor(no_context_takeover=True)
    first = kept.compress(text)
    assert len(first) > 10 * len(kept.compress(text))  # the repeat refers to the first
    alone = fresh.compress(text)
    assert fresh.compress(text) == alone and len(alone) > len(text) // 3  # each one alone


def test_a_shared_compressor_gives_the_bytes_of_a_fresh_one() -> None:
    shared = Compressor(no_context_takeover=True, level=1)
    for payload in (b"a" * 500, COMPRESSIBLE.encode(), b"", os.urandom(300)):
        once = zlib.compressobj(1, zlib.DEFLATED, -15)
        expected = once.compress(payload) + once.flush(zlib.Z_SYNC_FLUSH)
        assert shared.compress(payload) == (expected[:-4] or b"\x00")


def test_below_the_threshold_nothing_is_compressed() -> None:
    ext = PerMessageDeflate(DeflateParams(True, True), server=True, min_size=100)
    assert ext.compress(b"x" * 99) is None
    assert ext.compress(b"x" * 100) is not None


def test_a_window_of_8_bits_for_our_side_means_sending_uncompressed() -> None:
    ext = PerMessageDeflate(DeflateParams(client_max_window_bits=8), server=False)
    assert ext.compressor is None and ext.compress(b"x" * 1000) is None


def test_binary_messages_are_inflated_too() -> None:
    client = PerMessageDeflate(DeflateParams(True, True), server=False)
    reader = FrameReader(0, inflater=PerMessageDeflate(DeflateParams(True, True), server=True))
    data = client.compress(b"\x00\x01" * 1000)
    assert data is not None
    assert reader.feed(build_frame(data, opcode=OP_BINARY, rsv=4)) == [
        Message(OP_BINARY, b"\x00\x01" * 1000)
    ]


# --- refusals -----------------------------------------------------------------------------


def bomb(size: int) -> bytes:
    """``size`` bytes of zeros, deflated (about 1000 to 1): a decompression bomb."""
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    data = b"".join(raw.compress(zeros) for _ in range(size >> 20)) + raw.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def test_a_zip_bomb_stops_at_the_limit_without_inflating_it_all() -> None:
    limit = 65536
    payload = bomb(256 << 20)  # 256 MB of zeros in about 250 KB
    assert len(payload) < 300_000
    reader = FrameReader(
        0, inflater=PerMessageDeflate(DeflateParams(True, True), server=True, max_size=limit)
    )
    frame = build_frame(payload, opcode=OP_BINARY, rsv=4)
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as caught:
            reader.feed(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.code == TOO_BIG
    # The frame's own copies (unmasking) dominate; the 256 MB are never made.
    assert peak < 8 << 20, peak


def test_a_message_inflating_to_exactly_the_limit_is_accepted() -> None:
    client = PerMessageDeflate(DeflateParams(True, True), server=False)
    server = PerMessageDeflate(DeflateParams(True, True), server=True, max_size=1000)
    reader = FrameReader(0, inflater=server)
    exact = client.compress(b"a" * 1000)
    over = client.compress(b"a" * 1001)
    assert exact is not None and over is not None
    assert reader.feed(build_frame(exact, rsv=4)) == [Message(OP_TEXT, "a" * 1000)]
    with pytest.raises(FrameError) as caught:
        reader.feed(build_frame(over, rsv=4))
    assert caught.value.code == TOO_BIG


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x07garbage", b"\x06"])
def test_corrupt_compressed_data_is_invalid_data(payload: bytes) -> None:
    reader = FrameReader(0, inflater=PerMessageDeflate(DeflateParams(True, True), server=True))
    with pytest.raises(FrameError) as caught:
        reader.feed(build_frame(payload, rsv=4))
    assert caught.value.code == INVALID_DATA


def test_inflated_text_must_be_utf8() -> None:
    client = PerMessageDeflate(DeflateParams(True, True), server=False)
    reader = FrameReader(0, inflater=PerMessageDeflate(DeflateParams(True, True), server=True))
    data = client.compress(b"ok \xff")
    assert data is not None
    with pytest.raises(FrameError) as caught:
        reader.feed(build_frame(data, rsv=4))
    assert caught.value.code == INVALID_DATA


@pytest.mark.parametrize(
    "frames",
    [
        build_frame(b"x", opcode=OP_PING, rsv=4),  # control frames never carry RSV1
        build_frame(b"a", fin=False) + build_frame(b"b", opcode=OP_CONTINUATION, rsv=4),
        build_frame(b"x", rsv=2),  # RSV2/RSV3: no extension defines them
        build_frame(b"x", rsv=6),
    ],
    ids=["ping-rsv1", "continuation-rsv1", "rsv2", "rsv1-and-rsv2"],
)
def test_rsv1_is_only_for_the_first_frame_of_a_data_message(frames: bytes) -> None:
    reader = FrameReader(0, inflater=PerMessageDeflate(DeflateParams(True, True), server=True))
    with pytest.raises(FrameError) as caught:
        reader.feed(frames)
    assert caught.value.code == PROTOCOL_ERROR


# --- the server, over sockets ----------------------------------------------------------------

COMPRESSION = {"websocket": {"compression": True}}


class DeflateClient:
    """A raw WebSocket with permessage-deflate on the client's side."""

    def __init__(self, ws: RawWS, agreed: DeflateParams | None) -> None:
        self.ws = ws
        self.agreed = agreed
        self.ext = PerMessageDeflate(agreed, server=False) if agreed else None
        self.compressed_frames = 0
        self.last_compressed = False  # whether the last frame read had RSV1

    @classmethod
    async def open(cls, door: Door, server: RunningServer, offer: str | None) -> DeflateClient:
        reader, writer = await door.open_stream(server)
        extra = [f"Sec-WebSocket-Extensions: {offer}"] if offer else []
        writer.write(b"".join(handshake_request("127.0.0.1", server.port, extra=extra)))
        reply = await read_http_head(reader)
        assert reply.status == 101, reply
        value = reply.headers.get("sec-websocket-extensions")
        agreed = accept_response([value] if value else [], ClientOffer())
        return cls(RawWS(reader, writer, reply), agreed)

    async def send(self, command: dict[str, Any]) -> None:
        payload = json.dumps(command).encode()
        data = self.ext.compress(payload) if self.ext else None
        frame = build_frame(data, rsv=4) if data is not None else build_frame(payload)
        await self.ws.send(frame)

    async def messages(self) -> list[dict[str, Any]]:
        """The JSON messages of the next text frame (inflated if compressed; hubbub's
        frames are never fragmented)."""
        frame = await self.ws.read_frame()
        assert frame.opcode == OP_TEXT and frame.fin, frame
        data = frame.payload
        self.last_compressed = frame.rsv1
        if frame.rsv1:
            assert self.ext is not None, "RSV1 without permessage-deflate agreed"
            self.compressed_frames += 1
            data = self.ext.decompress(data)
        return [json.loads(line) for line in data.split(b"\n") if line]

    async def reply(self, command_id: int) -> dict[str, Any]:
        while True:
            for message in await self.messages():
                if message.get("id") == command_id:
                    return message


OFFERS = [
    "permessage-deflate",
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_max_window_bits=9",
    "permessage-deflate; server_max_window_bits=10",
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; server_max_window_bits=15; client_max_window_bits=15",
]


@pytest.mark.parametrize("offer", OFFERS)
async def test_each_offer_exchanges_large_messages_both_ways(door: Door, offer: str) -> None:
    server = await door.start(COMPRESSION)
    client = await DeflateClient.open(door, server, offer)
    try:
        assert client.agreed == negotiate([offer])
        await client.send({"id": 1, "connect": {}})
        assert "connect" in await client.reply(1)
        await client.send({"id": 2, "subscribe": {"channel": "chat:big"}})
        assert "subscribe" in await client.reply(2)
        for n, text in enumerate((COMPRESSIBLE, INCOMPRESSIBLE), start=3):
            data = {"n": n, "text": text}
            await client.send({"id": n, "publish": {"channel": "chat:big", "data": data}})
            seen: list[dict[str, Any]] = []
            while not any(m.get("push", {}).get("pub") for m in seen):
                seen += await client.messages()
            (pub,) = [m["push"]["pub"] for m in seen if m.get("push", {}).get("pub")]
            assert pub["data"] == data
        assert client.compressed_frames >= 2
    finally:
        client.ws.abort()


async def test_an_illegal_offer_is_declined_and_rsv1_then_refused(door: Door) -> None:
    server = await door.start(COMPRESSION)
    client = await DeflateClient.open(door, server, "permessage-deflate; bogus=1")
    try:
        assert client.agreed is None
        assert "sec-websocket-extensions" not in client.ws.handshake.headers
        await client.ws.send(build_frame(b'{"id":1,"connect":{}}', rsv=4))
        assert await client.ws.read_close_code() == PROTOCOL_ERROR
    finally:
        client.ws.abort()


async def test_without_compression_no_offer_is_answered(door: Door) -> None:
    server = await door.start()
    client = await DeflateClient.open(door, server, "permessage-deflate")
    try:
        assert client.agreed is None
    finally:
        client.ws.abort()


@pytest.mark.parametrize(
    ("payload", "code"),
    [(bomb(64 << 20), TOO_BIG), (b"\xff\xfe corrupt", INVALID_DATA)],
    ids=["zip-bomb", "corrupt"],
)
async def test_bad_compressed_messages_close_the_connection(
    door: Door, payload: bytes, code: int
) -> None:
    server = await door.start(merge_compression({"message_size_limit": 1 << 20}))
    client = await DeflateClient.open(door, server, "permessage-deflate")
    bystander = await DeflateClient.open(door, server, "permessage-deflate")
    try:
        await client.ws.send(build_frame(payload, rsv=4))
        assert await client.ws.read_close_code() == code
        await bystander.send({"id": 1, "connect": {}})
        assert "connect" in await bystander.reply(1)  # the others are served
    finally:
        client.ws.abort()
        bystander.ws.abort()


def merge_compression(extra: dict[str, Any]) -> dict[str, Any]:
    return {"websocket": {"compression": True, **extra}}


async def test_small_messages_stay_uncompressed_below_the_threshold(door: Door) -> None:
    server = await door.start(merge_compression({"compression_min_size": 200}))
    client = await DeflateClient.open(door, server, "permessage-deflate")
    try:
        await client.send({"id": 1, "connect": {}})
        assert "connect" in await client.reply(1)  # about 130 bytes
        await client.send({"id": 2, "subscribe": {"channel": "chat:t"}})
        assert "subscribe" in await client.reply(2)
        assert client.compressed_frames == 0  # every frame so far was under 200 bytes
        await client.send({"id": 3, "publish": {"channel": "chat:t", "data": {"x": "y" * 300}}})
        seen: list[dict[str, Any]] = []
        while not any("pub" in m.get("push", {}) for m in seen):
            seen = await client.messages()
        assert client.last_compressed  # the publication's frame is over 300 bytes
    finally:
        client.ws.abort()


async def test_a_broadcast_is_compressed_once_for_all_deflate_subscribers(
    door: Door, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await door.start(COMPRESSION)
    clients = [await DeflateClient.open(door, server, "permessage-deflate") for _ in range(5)]
    plain = await DeflateClient.open(door, server, None)
    try:
        for client in [*clients, plain]:
            await client.send({"id": 1, "connect": {}})
            assert "connect" in await client.reply(1)
            await client.send({"id": 2, "subscribe": {"channel": "chat:fan"}})
            assert "subscribe" in await client.reply(2)
        calls: list[int] = []
        original = deflate_module.Compressor.compress

        def counting(self: Compressor, payload: bytes) -> bytes:
            calls.append(len(payload))
            return original(self, payload)

        monkeypatch.setattr(deflate_module.Compressor, "compress", counting)
        await server.hub.publish("chat:fan", {"text": "to everyone " * 50})
        for client in [*clients, plain]:
            pushes: list[dict[str, Any]] = []
            while not any("pub" in m.get("push", {}) for m in pushes):
                pushes += await client.messages()
        assert len(calls) == 1, calls  # one compression for five subscribers
        assert all(c.compressed_frames >= 1 for c in clients) and plain.compressed_frames == 0
    finally:
        for client in [*clients, plain]:
            client.ws.abort()


async def test_the_decompressed_limit_key_is_enforced(door: Door) -> None:
    server = await door.start(merge_compression({"decompressed_message_size_limit": 1000}))
    client = await DeflateClient.open(door, server, "permessage-deflate")
    try:
        await client.send({"id": 1, "connect": {}, "pad": " " * 900})  # inflates under 1000
        assert "connect" in await client.reply(1)
        await client.send({"id": 2, "rpc": {}, "pad": " " * 1000})  # over 1000 inflated
        assert await client.ws.read_close_code() == TOO_BIG
    finally:
        client.ws.abort()


@pytest.mark.parametrize("level", [-2, -1, 0, 9])
async def test_every_compression_level_serves(door: Door, level: int) -> None:
    server = await door.start(merge_compression({"compression_level": level}))
    client = await DeflateClient.open(door, server, "permessage-deflate")
    try:
        await client.send({"id": 1, "connect": {}})
        assert "connect" in await client.reply(1)
        assert client.compressed_frames == 1
    finally:
        client.ws.abort()


@pytest.mark.parametrize("level", [-3, 10])
def test_a_compression_level_out_of_range_is_refused(level: int) -> None:
    from hubbub.config.loader import load_config
    from hubbub.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=merge_compression({"compression_level": level}))
    assert caught.value.key == "websocket.compression_level"
