"""``hubbub.websocket.frames`` reads RFC 6455 frames correctly, however the bytes arrive.

What this file proves, without any socket:

* Splitting is invisible: a stream of valid masked frames (unicode text, binary,
  pings, pongs, closes, fragmented messages with control frames between the
  fragments, payloads on both sides of the 125/126 and 65535/65536 length
  encodings) gives exactly the messages a model predicts, the same whether it is
  fed whole, in arbitrary pieces or one byte at a time; text comes out as ``str``,
  everything else as ``bytes``, fragments are reassembled, and nothing is left
  behind in the reader.
* ``unmask`` is its own inverse and agrees with the test client's ``apply_mask``.
* A 1 MB frame arriving in 4 KB reads is returned once, intact; empty
  continuations are not kept; a zero limit means none; the client role reads
  unmasked frames; the observer sees every frame before its message.

Framing violations are in test_frames_errors.py, close frames and the frames
hubbub builds in test_frames_close.py.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.websocket.frames import (
    INVALID_DATA,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    FrameError,
    FrameReader,
    Message,
    unmask,
)
from tests.frames_helpers import (
    BOUNDARY_SIZES,
    KEY,
    LIMIT,
    VALID_CLOSE_CODES,
    assert_kinds,
    feed_in_pieces,
)
from tests.rawws import apply_mask, build_frame

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
