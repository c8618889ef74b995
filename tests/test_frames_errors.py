"""``hubbub.websocket.frames``: every framing violation raises ``FrameError`` with
the RFC's close code.

1002 (unmasked, reserved bits, reserved opcodes, bad control frames, orphan or
interrupted fragments, a 64-bit length with its top bit set), 1007 (invalid
UTF-8, also split across fragments), 1009 (too big, decided from the header
alone, before any payload); a message exactly at the limit passes. No sockets.
"""

from __future__ import annotations

import struct

import pytest

from hubbub.websocket.frames import (
    INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    TOO_BIG,
    FrameError,
    FrameReader,
    Message,
)
from tests.frames_helpers import KEY, LIMIT, error_of, feed_in_pieces
from tests.rawws import build_frame

# --- errors --------------------------------------------------------------------------


def test_unmasked_frame_is_a_protocol_error() -> None:
    assert error_of(build_frame(b"hi", mask=False)).code == PROTOCOL_ERROR
    assert error_of(build_frame(b"", mask=False)[:2]).code == PROTOCOL_ERROR


@pytest.mark.parametrize("rsv", [4, 2, 1, 7])
def test_reserved_bits_are_a_protocol_error(rsv: int) -> None:
    assert error_of(build_frame(b"hi", rsv=rsv)).code == PROTOCOL_ERROR
    assert error_of(build_frame(b"", opcode=OP_PING, rsv=rsv)).code == PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_are_a_protocol_error(opcode: int) -> None:
    assert error_of(build_frame(b"x", opcode=opcode)).code == PROTOCOL_ERROR
    assert error_of(build_frame(b"", opcode=opcode, fin=False)).code == PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_without_fin_is_a_protocol_error(opcode: int) -> None:
    assert error_of(build_frame(b"", opcode=opcode, fin=False)).code == PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes_is_a_protocol_error(opcode: int) -> None:
    assert error_of(build_frame(b"\x03\xe8" + b"x" * 124, opcode=opcode)).code == PROTOCOL_ERROR
    # decided from the header: no payload needed
    header = build_frame(b"", opcode=opcode, length=126, mask_key=KEY)
    assert error_of(header).code == PROTOCOL_ERROR


def test_control_frame_of_exactly_125_bytes_is_fine() -> None:
    payload = bytes(range(125))
    frame = build_frame(payload, opcode=OP_PING, mask_key=KEY)
    assert FrameReader(LIMIT).feed(frame) == [Message(OP_PING, payload)]


def test_orphan_continuation_is_a_protocol_error() -> None:
    assert error_of(build_frame(b"x", opcode=OP_CONTINUATION)).code == PROTOCOL_ERROR
    # also after a fragmented message has been completed
    done = build_frame(b"a", fin=False) + build_frame(b"b", opcode=OP_CONTINUATION)
    late = build_frame(b"c", opcode=OP_CONTINUATION)
    assert error_of(late, prefix=done).code == PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("fin", [True, False])
def test_new_message_inside_a_fragmented_one_is_a_protocol_error(opcode: int, fin: bool) -> None:
    start = build_frame(b"part", fin=False)
    assert error_of(build_frame(b"new", opcode=opcode, fin=fin), prefix=start).code == (
        PROTOCOL_ERROR
    )


@pytest.mark.parametrize(
    "payload",
    [b"\xff", b"\xc3", b"a\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82(", b"\x80"],
)
def test_invalid_utf8_text_is_invalid_data(payload: bytes) -> None:
    assert error_of(build_frame(payload)).code == INVALID_DATA


def test_invalid_utf8_split_across_fragments_is_invalid_data() -> None:
    stream = build_frame(b"ok\xe2", fin=False) + build_frame(b"\x82(", opcode=OP_CONTINUATION)
    assert error_of(stream).code == INVALID_DATA
    # a final fragment that stops in the middle of a character
    stream = build_frame(b"ok", fin=False) + build_frame(b"\xe2\x82", opcode=OP_CONTINUATION)
    assert error_of(stream).code == INVALID_DATA


def test_valid_character_split_across_fragments_is_fine() -> None:
    euro = "€".encode()  # e2 82 ac
    stream = (
        build_frame(b"x" + euro[:1], fin=False)
        + build_frame(euro[1:2], opcode=OP_CONTINUATION, fin=False)
        + build_frame(b"", opcode=OP_PING)
        + build_frame(euro[2:] + b"y", opcode=OP_CONTINUATION)
    )
    expected = [Message(OP_PING, b""), Message(OP_TEXT, "x€y")]
    assert FrameReader(LIMIT).feed(stream) == expected
    assert feed_in_pieces(FrameReader(LIMIT), stream, [1]) == expected


def test_binary_is_not_checked_for_utf8() -> None:
    frame = build_frame(b"\xff\xfe", opcode=OP_BINARY)
    assert FrameReader(LIMIT).feed(frame) == [Message(OP_BINARY, b"\xff\xfe")]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_huge_declared_length_is_too_big_from_the_header_alone(opcode: int) -> None:
    header = build_frame(b"", opcode=opcode, length=2**40, mask_key=KEY)
    assert len(header) == 14  # 2 + 8 length bytes + 4 mask bytes, no payload
    assert error_of(header).code == TOO_BIG
    # byte by byte: it raises before (or on) the last header byte, with no payload at all
    reader = FrameReader(LIMIT)
    with pytest.raises(FrameError) as caught:
        for byte in header:
            assert reader.feed(bytes((byte,))) == []
    assert caught.value.code == TOO_BIG


@pytest.mark.parametrize("limit", [100, 125, 126, 65535, 65536])
def test_message_exactly_at_the_limit_is_accepted_one_more_byte_is_not(limit: int) -> None:
    payload = b"z" * limit
    assert FrameReader(limit).feed(build_frame(payload)) == [Message(OP_TEXT, payload.decode())]
    over = build_frame(b"", length=limit + 1, mask_key=KEY)  # the header alone
    assert error_of(over, limit=limit).code == TOO_BIG


def test_fragmented_total_over_the_limit_is_too_big() -> None:
    limit = 100
    first = build_frame(b"a" * 60, opcode=OP_BINARY, fin=False)
    second = build_frame(b"b" * 40, opcode=OP_CONTINUATION, fin=False)  # total 100: still fine
    reader = FrameReader(limit)
    assert reader.feed(first + second) == []
    # the next fragment's header alone (declaring 1 byte) is enough to refuse
    with pytest.raises(FrameError) as caught:
        reader.feed(build_frame(b"", opcode=OP_CONTINUATION, length=1, mask_key=KEY))
    assert caught.value.code == TOO_BIG


def test_fragmented_total_exactly_at_the_limit_is_accepted() -> None:
    limit = 100
    stream = (
        build_frame(b"a" * 60, fin=False)
        + build_frame(b"", opcode=OP_PONG)
        + build_frame(b"b" * 40, opcode=OP_CONTINUATION)
    )
    expected = [Message(OP_PONG, b""), Message(OP_TEXT, "a" * 60 + "b" * 40)]
    assert FrameReader(limit).feed(stream) == expected
    # and the count restarts for the next message
    again = build_frame(b"c" * 100)
    assert FrameReader(limit).feed(stream + again) == [*expected, Message(OP_TEXT, "c" * 100)]


@pytest.mark.parametrize("limit", [LIMIT, 2**63 - 1, 0])
@pytest.mark.parametrize("low", [0, 5, 2**40])
def test_length_with_the_64_bit_msb_set_is_a_protocol_error(limit: int, low: int) -> None:
    # RFC 6455 5.2: the most significant bit of a 64-bit length MUST be 0. With no
    # size limit (0) the reader used to wait for 2**63 bytes that never come.
    header = struct.pack("!BBQ", 0x80 | OP_BINARY, 0x80 | 127, (1 << 63) | low) + KEY
    assert error_of(header, limit=limit).code == PROTOCOL_ERROR


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", PROTOCOL_ERROR),
        (struct.pack("!H", 1005), PROTOCOL_ERROR),
        (struct.pack("!H", 1000) + b"\xff", INVALID_DATA),
    ],
)
def test_bad_close_frame_in_the_stream_raises(payload: bytes, code: int) -> None:
    assert error_of(build_frame(payload, opcode=OP_CLOSE)).code == code
