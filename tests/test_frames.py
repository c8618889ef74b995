"""``hubbub.websocket.frames`` reads RFC 6455 client frames correctly, however the bytes arrive.

What this file proves, without any socket:

* Splitting is invisible: a stream of valid masked frames (unicode text, binary,
  pings, pongs, closes, fragmented messages with control frames between the
  fragments, payloads on both sides of the 125/126 and 65535/65536 length
  encodings) gives exactly the messages a model predicts, the same whether it is
  fed whole, in arbitrary pieces or one byte at a time; text comes out as ``str``,
  everything else as ``bytes``, fragments are reassembled, and nothing is left
  behind in the reader.
* ``unmask`` is its own inverse and agrees with the test client's ``apply_mask``.
* Every framing violation raises ``FrameError`` with the RFC's close code: 1002
  (unmasked, reserved bits, reserved opcodes, bad control frames, orphan or
  interrupted fragments), 1007 (invalid UTF-8, also split across fragments),
  1009 (too big, decided from the header alone, before any payload); a message
  exactly at the limit passes.
* ``parse_close``, ``close_frame``, ``text_header`` and ``control_frame`` build and
  read what RFC 6455 says, and ``close_frame`` never cuts a character in half.
* A 1 MB frame arriving in 4 KB reads is returned once, intact.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hubbub.websocket.frames import (
    INVALID_DATA,
    NO_STATUS,
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
    close_frame,
    control_frame,
    parse_close,
    text_header,
    unmask,
)
from tests.rawws import apply_mask, build_frame

LIMIT = 1 << 20
KEY = b"\x37\xfa\x21\x3d"
#: Payload sizes on both sides of each length encoding (7-bit, 16-bit, 64-bit).
BOUNDARY_SIZES = (0, 1, 125, 126, 127, 65535, 65536, 65537)
#: Close codes a client may legitimately send.
VALID_CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 4999)


# --- helpers -------------------------------------------------------------------------


def feed_in_pieces(reader: FrameReader, data: bytes, sizes: Iterable[int]) -> list[Message]:
    """Feed ``data`` in consecutive pieces whose sizes cycle through ``sizes``."""
    messages: list[Message] = []
    position = 0
    for size in itertools.cycle(sizes):
        if position >= len(data):
            break
        messages.extend(reader.feed(data[position : position + size]))
        position += size
    return messages


def error_of(data: bytes, *, limit: int = LIMIT, prefix: bytes = b"") -> FrameError:
    """The ``FrameError`` a fresh reader raises on ``prefix`` then ``data`` (fails if none)."""
    reader = FrameReader(limit)
    if prefix:
        reader.feed(prefix)
    with pytest.raises(FrameError) as caught:
        reader.feed(data)
    return caught.value


def assert_kinds(messages: list[Message]) -> None:
    """Text messages carry ``str``; binary, ping, pong and close carry ``bytes``."""
    for message in messages:
        if message.opcode == OP_TEXT:
            assert isinstance(message.data, str), message
        else:
            assert message.opcode in (OP_BINARY, OP_PING, OP_PONG, OP_CLOSE), message
            assert isinstance(message.data, bytes), message


def header_length(header: bytes) -> tuple[int, int]:
    """(payload length, header size) of an unmasked server frame header, read per RFC 6455."""
    assert not header[1] & 0x80, "server frames are never masked"
    short = header[1] & 0x7F
    if short < 126:
        return short, 2
    if short == 126:
        return (header[2] << 8) | header[3], 4
    assert short == 127
    value = 0
    for byte in header[2:10]:
        value = (value << 8) | byte
    return value, 10


# --- strategies ----------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """Client bytes and the messages they must produce, in order."""

    data: bytes
    expected: tuple[Message, ...]


masks: st.SearchStrategy[bytes] = st.binary(min_size=4, max_size=4)
sizes: st.SearchStrategy[int] = st.one_of(st.integers(0, 300), st.sampled_from(BOUNDARY_SIZES))


@st.composite
def binaries(draw: st.DrawFn, size: int) -> bytes:
    """``size`` bytes: a drawn seed repeated (cheap even for 64 KB)."""
    seed = draw(st.binary(min_size=1, max_size=32))
    return (seed * (size // len(seed) + 1))[:size]


@st.composite
def texts(draw: st.DrawFn, size: int) -> str:
    """Arbitrary unicode of about ``size`` UTF-8 bytes (exactly, unless the draw is longer)."""
    seed = draw(st.text(max_size=24))
    encoded = len(seed.encode())
    if not encoded or encoded >= size:
        return seed + "a" * max(0, size - encoded)
    repeated = seed * (size // encoded)
    return repeated + "a" * (size - len(repeated.encode()))


@st.composite
def control_frames(draw: st.DrawFn) -> tuple[bytes, Message]:
    """A masked ping, pong or valid close frame and the message it yields."""
    opcode = draw(st.sampled_from((OP_PING, OP_PONG, OP_CLOSE)))
    if opcode == OP_CLOSE:
        payload = b""
        if draw(st.booleans()):
            code = draw(st.sampled_from(VALID_CLOSE_CODES))
            payload = struct.pack("!H", code) + draw(st.text(max_size=30)).encode()
    else:
        payload = draw(binaries(draw(st.sampled_from((0, 1, 124, 125)) | st.integers(0, 125))))
    frame = build_frame(payload, opcode=opcode, mask_key=draw(masks))
    return frame, Message(opcode, payload)


@st.composite
def data_messages(draw: st.DrawFn) -> tuple[bytes, list[Message]]:
    """A text or binary message, maybe fragmented with control frames between fragments."""
    opcode = draw(st.sampled_from((OP_TEXT, OP_BINARY)))
    size = draw(sizes)
    content: str | bytes
    if opcode == OP_TEXT:
        content = draw(texts(size))
        payload = content.encode()
    else:
        content = payload = draw(binaries(size))
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    bounds = [0, *cuts, len(payload)]
    pieces = [payload[start:end] for start, end in itertools.pairwise(bounds)]
    frames: list[bytes] = []
    produced: list[Message] = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        frames.append(
            build_frame(
                piece,
                opcode=opcode if index == 0 else OP_CONTINUATION,
                fin=last,
                mask_key=draw(masks),
            )
        )
        if not last:  # controls may come between fragments
            for frame, message in draw(st.lists(control_frames(), max_size=2)):
                frames.append(frame)
                produced.append(message)
    produced.append(Message(opcode, content))
    return b"".join(frames), produced


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    """Up to five messages or control frames back to back."""
    alone = control_frames().map(lambda pair: (pair[0], [pair[1]]))
    parts = draw(st.lists(st.one_of(data_messages(), alone), min_size=1, max_size=5))
    data: list[bytes] = []
    expected: list[Message] = []
    for frame, produced in parts:
        data.append(frame)
        expected.extend(produced)
    return Stream(b"".join(data), tuple(expected))


piece_sizes: st.SearchStrategy[list[int]] = st.lists(
    st.one_of(st.integers(1, 16), st.integers(1, 70000)), min_size=1, max_size=8
)


# --- property tests ------------------------------------------------------------------


def check_stream(stream: Stream, pieces: list[int]) -> None:
    whole = FrameReader(LIMIT).feed(stream.data)
    assert tuple(whole) == stream.expected
    assert_kinds(whole)
    reader = FrameReader(LIMIT)
    split = feed_in_pieces(reader, stream.data, pieces)
    assert split == whole
    # Nothing was left over: the next frame alone is exactly the next message.
    assert reader.feed(build_frame("end", mask_key=KEY)) == [Message(OP_TEXT, "end")]


@settings(max_examples=200, deadline=None)
@given(stream=streams(), pieces=piece_sizes)
def test_any_split_yields_the_same_messages(stream: Stream, pieces: list[int]) -> None:
    check_stream(stream, pieces)


@settings(max_examples=60, deadline=None)
@given(stream=streams())
def test_one_byte_pieces_yield_the_same_messages(stream: Stream) -> None:
    check_stream(stream, [1])


@settings(max_examples=200, deadline=None)
@given(stream=streams(), pieces=piece_sizes)
def test_a_reader_at_rest_can_be_replaced_by_a_new_one(stream: Stream, pieces: list[int]) -> None:
    """What the server's connection does to hold no reader while idle: whenever the
    reader is at rest it is dropped, and the next bytes go to a fresh one."""
    reader: FrameReader | None = None
    messages: list[Message] = []
    position = 0
    for size in itertools.cycle(pieces):
        if position >= len(stream.data):
            break
        reader = reader or FrameReader(LIMIT)
        messages.extend(reader.feed(stream.data[position : position + size]))
        position += size
        if reader.at_rest:
            reader = None
    assert tuple(messages) == stream.expected
    assert reader is None  # the stream ends with whole messages: nothing is left partial


def test_at_rest_only_without_a_partial_frame_or_message() -> None:
    reader = FrameReader(LIMIT)
    assert reader.at_rest
    frame = build_frame("hello", mask_key=KEY)
    assert reader.feed(frame[:3]) == [] and not reader.at_rest  # a partial frame
    assert reader.feed(frame[3:]) == [Message(OP_TEXT, "hello")] and reader.at_rest
    first = build_frame("hel", fin=False, mask_key=KEY)
    assert reader.feed(first) == [] and not reader.at_rest  # an unfinished message
    last = build_frame("lo", opcode=0, mask_key=KEY)
    assert reader.feed(last) == [Message(OP_TEXT, "hello")] and reader.at_rest


@settings(max_examples=100, deadline=None)
@given(stream=streams(), bad=st.binary(max_size=200), pieces=piece_sizes)
def test_an_unmasked_frame_after_valid_ones_is_refused_whatever_the_splits(
    stream: Stream, bad: bytes, pieces: list[int]
) -> None:
    """(What the removed aiohttp mask-check wrapper was tested for, now the reader's.)"""
    reader = FrameReader(LIMIT)
    data = stream.data + build_frame(bad, mask=False)
    got: list[Message] = []
    position = 0
    with pytest.raises(FrameError) as caught:
        for size in itertools.cycle(pieces):
            got += reader.feed(data[position : position + size])
            position += size
            assert position < len(data), "the unmasked frame was not refused"
    assert caught.value.code == PROTOCOL_ERROR
    assert tuple(got) == stream.expected[: len(got)]  # valid messages only, in order


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=600), key=masks)
def test_unmask_is_an_involution_and_agrees_with_apply_mask(data: bytes, key: bytes) -> None:
    masked = unmask(data, key)
    assert len(masked) == len(data)
    assert unmask(masked, key) == data
    assert masked == apply_mask(key, data)
    assert masked == bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


def test_unmask_edge_cases() -> None:
    assert unmask(b"", KEY) == b""
    assert unmask(b"\x00" * 9, KEY) == (KEY * 3)[:9]
    # leading/trailing zero bytes survive the big-integer round trip
    assert unmask(KEY + b"\x00", KEY) == b"\x00\x00\x00\x00" + KEY[:1]


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_boundary_sizes_whole_and_split(size: int, opcode: int) -> None:
    payload = bytes(index % 251 for index in range(size))
    content: str | bytes = payload
    if opcode == OP_TEXT:
        content = "é" * (size // 2) + "x" * (size % 2)
        payload = content.encode()
    assert len(payload) == size
    frame = build_frame(payload, opcode=opcode, mask_key=KEY)
    assert FrameReader(LIMIT).feed(frame) == [Message(opcode, content)]
    assert feed_in_pieces(FrameReader(LIMIT), frame, [1, 3, 1000]) == [Message(opcode, content)]


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


# --- parse_close ---------------------------------------------------------------------


def test_parse_close_empty_payload_has_no_status() -> None:
    assert parse_close(b"") == (NO_STATUS, "")


def test_parse_close_one_byte_is_a_protocol_error() -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(b"\x03")
    assert caught.value.code == PROTOCOL_ERROR


@pytest.mark.parametrize("code", [1000, 1001, 1012, 1013, 1014, 3000, 4999])
def test_parse_close_accepts_sendable_codes(code: int) -> None:
    assert parse_close(struct.pack("!H", code)) == (code, "")
    assert parse_close(struct.pack("!H", code) + "bye ✓".encode()) == (code, "bye ✓")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2000, 2999, 5000, 65535])
def test_parse_close_refuses_reserved_codes(code: int) -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(struct.pack("!H", code) + b"reason")
    assert caught.value.code == PROTOCOL_ERROR


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc3", b"\xed\xa0\x80"])
def test_parse_close_non_utf8_reason_is_invalid_data(reason: bytes) -> None:
    with pytest.raises(FrameError) as caught:
        parse_close(struct.pack("!H", 1000) + reason)
    assert caught.value.code == INVALID_DATA


# --- frames we build -----------------------------------------------------------------


def read_close_frame(frame: bytes) -> tuple[int, bytes]:
    """Code and raw reason bytes of an unmasked server close frame, parsed by hand."""
    assert frame[0] == 0x80 | OP_CLOSE
    length, size = header_length(frame)
    assert length <= 125
    assert len(frame) == size + length
    return struct.unpack("!H", frame[size : size + 2])[0], frame[size + 2 :]


def test_close_frame_cut_never_splits_a_character() -> None:
    code, reason = read_close_frame(close_frame(1008, "é" * 40, max_reason=32))
    assert code == 1008
    assert len(reason) <= 32
    assert reason.decode() == "é" * 16
    # an odd budget would split the 16th "é": it is dropped whole
    _, reason = read_close_frame(close_frame(1008, "é" * 40, max_reason=31))
    assert reason.decode() == "é" * 15


@settings(max_examples=200, deadline=None)
@given(reason=st.text(max_size=80), max_reason=st.integers(0, 123), code=st.integers(1000, 4999))
@example(reason="€" * 50, max_reason=32, code=1000)
@example(reason="😀" * 40, max_reason=123, code=4999)
def test_close_frame_reason_is_the_longest_whole_prefix(
    reason: str, max_reason: int, code: int
) -> None:
    got_code, raw = read_close_frame(close_frame(code, reason, max_reason=max_reason))
    assert got_code == code
    assert len(raw) <= max_reason
    cut = raw.decode()  # valid UTF-8
    assert reason.startswith(cut)
    if cut != reason:  # nothing more would have fitted
        assert len(cut.encode()) + len(reason[len(cut)].encode()) > max_reason


def test_close_frame_default_fits_a_control_frame() -> None:
    frame = close_frame(1000, "x" * 500)
    code, reason = read_close_frame(frame)
    assert (code, reason) == (1000, b"x" * 123)
    assert len(frame) == 2 + 125


@pytest.mark.parametrize(
    ("length", "header_size"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (2**32 + 7, 10)],
)
def test_text_header_decodes_back_to_its_length(length: int, header_size: int) -> None:
    header = text_header(length)
    assert header[0] == 0x81  # FIN + text, no reserved bits
    assert len(header) == header_size  # the minimal encoding
    assert header_length(header) == (length, header_size)


def test_text_header_frame_reads_back_through_a_reader() -> None:
    payload = "héllo ✓".encode() * 30  # > 125 bytes: 16-bit length
    frame = text_header(len(payload)) + payload
    # mask it the way a client would, then read it with the server's reader
    masked = bytes((frame[0], frame[1] | 0x80)) + frame[2:4] + KEY + apply_mask(KEY, payload)
    assert FrameReader(LIMIT).feed(masked) == [Message(OP_TEXT, payload.decode())]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_bytes(opcode: int) -> None:
    assert control_frame(opcode) == bytes((0x80 | opcode, 0))
    payload = bytes(range(125))
    assert control_frame(opcode, payload) == bytes((0x80 | opcode, 125)) + payload


# --- a large frame in small reads ----------------------------------------------------


@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT])
def test_large_frame_in_4k_chunks_is_returned_once_intact(opcode: int) -> None:
    size = 1 << 20
    payload = bytes(32 + index % 95 for index in range(size))  # printable ASCII: valid text too
    frame = build_frame(payload, opcode=opcode, mask_key=KEY)
    reader = FrameReader(2 << 20)
    results = [reader.feed(frame[start : start + 4096]) for start in range(0, len(frame), 4096)]
    assert all(result == [] for result in results[:-1])
    content = payload.decode() if opcode == OP_TEXT else payload
    assert results[-1] == [Message(opcode, content)]


def test_empty_continuation_frames_are_not_kept() -> None:
    reader = FrameReader(1000)
    reader.feed(build_frame(b"a", fin=False))  # text: decoded fragment by fragment
    for _ in range(1000):
        assert reader.feed(build_frame(b"", opcode=0x0, fin=False)) == []
    assert reader._texts == ["a"] and reader._fragments == []
    (message,) = reader.feed(build_frame(b"b", opcode=0x0))
    assert message.data == "ab"
    reader.feed(build_frame(b"a", opcode=OP_BINARY, fin=False))  # binary: kept as bytes
    for _ in range(1000):
        assert reader.feed(build_frame(b"", opcode=0x0, fin=False)) == []
    assert reader._fragments == [b"a"]
    (message,) = reader.feed(build_frame(b"b", opcode=0x0))
    assert message.data == b"ab"


def test_invalid_utf8_fails_when_its_fragment_arrives() -> None:
    """Autobahn 6.4.1: the close comes before the message ends (fail fast)."""
    reader = FrameReader(1000)
    assert reader.feed(build_frame("κόσμε".encode(), fin=False)) == []
    with pytest.raises(FrameError) as caught:
        reader.feed(build_frame(b"\xf4\x90\x80\x80", opcode=0x0, fin=False))
    assert caught.value.code == INVALID_DATA


def test_a_character_split_over_three_fragments_is_fine() -> None:
    reader = FrameReader(1000)
    euro = "€".encode()
    frames = [build_frame(euro[:1], fin=False), build_frame(euro[1:2], opcode=0x0, fin=False)]
    frames.append(build_frame(euro[2:], opcode=0x0))
    assert reader.feed(b"".join(frames)) == [Message(OP_TEXT, "€")]
    with pytest.raises(FrameError) as caught:  # a truncated character at the end is not
        reader.feed(build_frame(euro[:2], fin=False) + build_frame(b"", opcode=0x0))
    assert caught.value.code == INVALID_DATA


def test_a_zero_limit_means_no_limit() -> None:
    (message,) = FrameReader(0).feed(build_frame(b"x" * 100_000))
    assert message.data == "x" * 100_000


def test_the_client_role_reads_unmasked_frames_and_refuses_masked_ones() -> None:
    reader = FrameReader(LIMIT, masked=False)
    big = b"x" * 70000
    stream = build_frame("hi", mask=False) + build_frame(big, opcode=OP_BINARY, mask=False)
    assert reader.feed(stream[:3]) == []
    assert reader.feed(stream[3:]) == [Message(OP_TEXT, "hi"), Message(OP_BINARY, big)]
    assert error_of_client(build_frame("hi")).reason == "masked server frame"


def error_of_client(data: bytes) -> FrameError:
    with pytest.raises(FrameError) as caught:
        FrameReader(LIMIT, masked=False).feed(data)
    assert caught.value.code == PROTOCOL_ERROR
    return caught.value


def test_observer_sees_every_frame_before_its_message() -> None:
    seen: list[tuple[int, bytes]] = []
    reader = FrameReader(
        LIMIT, masked=False, observer=lambda first, data: seen.append((first, data))
    )
    stream = (
        build_frame(b"ab", fin=False, mask=False)
        + build_frame(b"pp", opcode=OP_PING, mask=False)
        + build_frame(b"cd", opcode=OP_CONTINUATION, mask=False)
    )
    messages = reader.feed(stream)
    assert seen == [(0x01, b"ab"), (0x89, b"pp"), (0x80, b"cd")]
    assert messages == [Message(OP_PING, b"pp"), Message(OP_TEXT, "abcd")]


def test_observer_sees_the_frame_that_breaks_a_rule() -> None:
    seen: list[int] = []
    reader = FrameReader(LIMIT, masked=False, observer=lambda first, data: seen.append(first))
    with pytest.raises(FrameError):
        reader.feed(build_frame(b"\xff", mask=False))
    assert seen == [0x81]  # logged, then refused as invalid UTF-8
