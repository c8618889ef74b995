"""Invalid UTF-8 fails fast: with the read that brings the first byte no text can follow.

Autobahn's 6.4 cases (and ``hubbub audit``) send a text whose bytes stop being
UTF-8 in the middle, then wait: a strict server fails the connection (1007)
before the rest arrives. The reader decodes a text as its bytes arrive when the
message is fragmented or its frame comes in several reads, in both roles
(masked client frames, unmasked server frames), and for compressed texts once
the bytes are inflated. What is proved here, without sockets:

* for any valid prefix, any invalid continuation and any way the frame is cut
  into reads, ``feed`` raises 1007 on exactly the read that holds the first
  byte after which the text cannot be UTF-8, and not before;
* a mask key split across reads still decodes the pieces correctly;
* a compressed text in fragments fails on the fragment whose inflated bytes are
  invalid, and a compressed text frame in several reads on the read that
  inflates to them; a compression bomb in fragments is refused (1009) before
  its last fragment;
* valid texts come out whole and identical whatever the cuts (the property
  tests of test_frames.py cover every kind of message; these add compressed
  fragments in pieces).
"""

from __future__ import annotations

import codecs
import itertools
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.websocket.deflate import DeflateParams, PerMessageDeflate
from hubbub.websocket.frames import (
    INVALID_DATA,
    OP_CONTINUATION,
    OP_TEXT,
    TOO_BIG,
    FrameError,
    FrameReader,
    Message,
    build_frame,
)

LIMIT = 1 << 20
GREEK = "κόσμε".encode()
#: Byte sequences after which no UTF-8 text can go on (each alone, at any valid point).
INVALID = [b"\xf4\x90\x80\x80", b"\xed\xa0\x80", b"\xc0\xaf", b"\xff", b"\x80", b"\xe0\x80"]


def first_bad_byte(content: bytes) -> int:
    """Index of the byte with which ``content`` stops being a prefix of UTF-8 text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    for index in range(len(content)):
        try:
            decoder.decode(content[index : index + 1], False)
        except UnicodeDecodeError:
            return index
    raise AssertionError("the content is a valid prefix")


def failing_read(reader: FrameReader, data: bytes, cuts: list[int]) -> int:
    """Feed ``data`` cut at ``cuts``; the index of the read that raised 1007."""
    bounds = [0, *cuts, len(data)]
    for index, (start, end) in enumerate(itertools.pairwise(bounds)):
        try:
            reader.feed(data[start:end])
        except FrameError as exc:
            assert exc.code == INVALID_DATA, exc
            return index
    raise AssertionError("no read raised")


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(
    head=texts,
    bad=st.sampled_from(INVALID),
    tail=st.binary(max_size=30),
    masked=st.booleans(),
    big=st.booleans(),
    data=st.data(),
)
def test_a_frame_in_pieces_fails_on_the_read_with_the_first_bad_byte(
    head: bytes, bad: bytes, tail: bytes, masked: bool, big: bool, data: st.DataObject
) -> None:
    content = head + bad + tail
    if big:  # a 16-bit length: a longer header
        content = content + b"x" * 200
    frame = build_frame(content, mask=masked)
    header = len(frame) - len(content)
    bad_at = header + first_bad_byte(content)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(frame) - 1), max_size=6))))
    reader = FrameReader(LIMIT, masked=masked)
    expected = sum(1 for cut in cuts if cut <= bad_at)  # the read holding byte ``bad_at``
    assert failing_read(reader, frame, cuts) == expected


@settings(max_examples=200, deadline=None)
@given(head=texts, bad=st.sampled_from(INVALID), data=st.data())
def test_fragments_in_pieces_fail_on_the_read_with_the_first_bad_byte(
    head: bytes, bad: bytes, data: st.DataObject
) -> None:
    content = GREEK + head + bad + b"edited"
    split = data.draw(st.integers(0, len(content)))
    frames = [build_frame(content[:split], fin=False)]
    frames.append(build_frame(content[split:], opcode=OP_CONTINUATION))
    stream = b"".join(frames)
    bad_byte = first_bad_byte(content)
    # Where that byte is in the stream: after the first frame's header (and the second's).
    first_header = len(frames[0]) - split
    second_header = len(frames[1]) - (len(content) - split)
    bad_at = first_header + bad_byte + (second_header if bad_byte >= split else 0)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream) - 1), max_size=6))))
    expected = sum(1 for cut in cuts if cut <= bad_at)
    assert failing_read(FrameReader(LIMIT), stream, cuts) == expected


def test_the_audit_cases_6_4_3_and_6_4_4_fail_before_the_rest_arrives() -> None:
    for head, bad, tail in [
        (GREEK, b"\xf4\x90\x80\x80", b"edited"),
        (GREEK + b"\xf4", b"\x90", b"\x80\x80edited"),
    ]:
        frame = build_frame(head + bad + tail)
        header = len(frame) - len(head + bad + tail)
        reader = FrameReader(LIMIT)
        assert reader.feed(frame[: header + len(head)]) == []
        with pytest.raises(FrameError) as caught:
            reader.feed(frame[header + len(head) : header + len(head) + len(bad)])
        assert caught.value.code == INVALID_DATA


def test_a_mask_key_split_across_reads_still_decodes_the_pieces() -> None:
    content = "€uro ünïcødé".encode() * 20
    frame = build_frame(content, mask_key=b"\x01\x02\x03\x04")
    for cut in range(1, 12):  # inside the 16-bit length, inside the key, just after it
        reader = FrameReader(LIMIT)
        got = reader.feed(frame[:cut])
        for start in range(cut, len(frame), 7):
            got += reader.feed(frame[start : start + 7])
        assert got == [Message(OP_TEXT, content.decode())]


def test_a_valid_frame_in_pieces_then_more_frames_in_the_same_read() -> None:
    first = build_frame("αβγ" * 50)
    second = build_frame("next")
    reader = FrameReader(LIMIT)
    assert reader.feed(first[:10]) == []
    assert reader.feed(first[10:51]) == []
    assert reader.feed(first[51:] + second) == [
        Message(OP_TEXT, "αβγ" * 50),
        Message(OP_TEXT, "next"),
    ]


# --- compressed texts ---------------------------------------------------------------------


def deflate_parts(payload: bytes, parts: int) -> list[bytes]:
    """``payload`` compressed so that each part ends on a flush: each part alone
    inflates to its share of the payload (the tail is left off, as senders do)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    step = -(-len(payload) // parts)
    out = [
        compressor.compress(payload[i : i + step]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        for i in range(0, len(payload), step)
    ]
    assert out[-1].endswith(b"\x00\x00\xff\xff")
    out[-1] = out[-1][:-4]
    return out


def server_reader(max_size: int = 0) -> FrameReader:
    params = DeflateParams(True, True)
    return FrameReader(LIMIT, inflater=PerMessageDeflate(params, server=True, max_size=max_size))


def compressed_fragments(parts: list[bytes]) -> list[bytes]:
    return [
        build_frame(part, opcode=OP_TEXT if i == 0 else OP_CONTINUATION, rsv=4 if i == 0 else 0,
                    fin=i == len(parts) - 1)
        for i, part in enumerate(parts)
    ]  # fmt: skip


def test_compressed_fragments_fail_on_the_fragment_that_inflates_to_invalid_utf8() -> None:
    content = b"valid text " * 20 + b"\xed\xa0\x80" + b" the rest " * 20
    frames = compressed_fragments(deflate_parts(content, 3))
    reader = server_reader()
    assert reader.feed(frames[0]) == []
    with pytest.raises(FrameError) as caught:
        reader.feed(frames[1])  # holds the surrogate; the third never comes
    assert caught.value.code == INVALID_DATA


def test_a_compressed_frame_in_pieces_fails_before_the_frame_is_complete() -> None:
    content = b"valid text " * 10 + b"\xff" + b" the rest " * 40  # in the first part
    parts = deflate_parts(content, 2)
    frame = build_frame(b"".join(parts), rsv=4)
    header = len(frame) - len(b"".join(parts))
    reader = server_reader()
    with pytest.raises(FrameError) as caught:  # within the bytes that inflate to the \xff
        for start in range(0, header + len(parts[0]), 3):
            reader.feed(frame[start : min(start + 3, header + len(parts[0]))])
    assert caught.value.code == INVALID_DATA


def test_a_compression_bomb_in_fragments_is_refused_before_its_last_fragment() -> None:
    parts = deflate_parts(bytes(8 << 20), 4)  # 8 MB of zeros: 2 MB per fragment
    frames = compressed_fragments(parts)
    reader = server_reader(max_size=1 << 20)
    with pytest.raises(FrameError) as caught:
        for frame in frames[:-1]:
            reader.feed(frame)
    assert caught.value.code == TOO_BIG


@settings(max_examples=100, deadline=None)
@given(
    text=st.text(max_size=300).map(str.encode),
    parts=st.integers(1, 4),
    pieces=st.integers(1, 40),
    takeover=st.booleans(),
)
def test_compressed_fragments_in_pieces_come_out_whole(
    text: bytes, parts: int, pieces: int, takeover: bool
) -> None:
    params = DeflateParams(server_no_context_takeover=True, client_no_context_takeover=not takeover)
    client = PerMessageDeflate(params, server=False)
    reader = FrameReader(LIMIT, inflater=PerMessageDeflate(params, server=True))
    for _ in range(2):  # the second message may use the first's context
        compressed = client.compress(text)
        assert compressed is not None
        step = max(1, -(-len(compressed) // parts))
        chunks = [compressed[i : i + step] for i in range(0, len(compressed), step)] or [b""]
        stream = b"".join(compressed_fragments(chunks))
        got: list[Message] = []
        for start in range(0, len(stream), pieces):
            got += reader.feed(stream[start : start + pieces])
        assert got == [Message(OP_TEXT, text.decode())]
