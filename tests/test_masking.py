"""The mask-bit check follows frame boundaries however the bytes are split into reads."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.server.masking import CLOSE_PROTOCOL_ERROR, MaskCheck
from tests.rawws import build_frame


class Inner(asyncio.Protocol):
    def __init__(self) -> None:
        self.received = b""

    def data_received(self, data: bytes) -> None:
        self.received += data


class FakeSocket:
    """Records what MaskCheck writes and whether it closed (a stand-in for the kernel)."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def feed(stream: bytes, cuts: list[int]) -> tuple[Inner, FakeSocket]:
    inner, socket = Inner(), FakeSocket()
    check = MaskCheck(inner, socket)  # type: ignore[arg-type]
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    for a, b in itertools.pairwise(points):
        check.data_received(stream[a:b])
    return inner, socket


PAYLOADS = st.lists(
    st.one_of(st.binary(max_size=10), st.binary(min_size=120, max_size=300), st.just(b"x" * 70000)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(PAYLOADS, st.lists(st.integers(min_value=0), max_size=20))
def test_masked_frames_pass_whatever_the_splits(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(build_frame(p) for p in payloads)
    inner, socket = feed(stream, cuts)
    assert inner.received == stream and not socket.closed


@settings(max_examples=100, deadline=None)
@given(PAYLOADS, st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=20))
def test_an_unmasked_frame_after_valid_ones_is_refused(
    payloads: list[bytes], bad: bytes, cuts: list[int]
) -> None:
    valid = b"".join(build_frame(p) for p in payloads)
    inner, socket = feed(valid + build_frame(bad, mask=False), cuts)
    assert socket.closed and socket.written == CLOSE_PROTOCOL_ERROR
    assert len(inner.received) <= len(valid) + 14  # nothing of the bad frame's payload


def test_other_protocol_calls_pass_through() -> None:
    calls: list[Any] = []

    class Recording(Inner):
        def connection_lost(self, exc: Exception | None) -> None:
            calls.append(("lost", exc))

        def eof_received(self) -> bool | None:
            calls.append("eof")
            return None

    check = MaskCheck(Recording(), FakeSocket())  # type: ignore[arg-type]
    check.eof_received()
    check.connection_lost(None)
    assert calls == ["eof", ("lost", None)]
