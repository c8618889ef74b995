"""``hubbub.websocket.frames``: close frames and the frames hubbub builds.

``parse_close``, ``close_frame``, ``text_header`` and ``control_frame`` build and
read what RFC 6455 says, and ``close_frame`` never cuts a character in half.
No sockets.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from hubbub.websocket.frames import (
    INVALID_DATA,
    NO_STATUS,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PROTOCOL_ERROR,
    FrameError,
    FrameReader,
    Message,
    close_frame,
    control_frame,
    parse_close,
    text_header,
)
from tests.frames_helpers import KEY, LIMIT, header_length
from tests.rawws import apply_mask

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
