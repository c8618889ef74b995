"""Fossil deltas (the delta format of the Fossil SCM), the encoder side.

Rule 1: the output is what the SDKs' Fossil decoders accept: the target's
length in Fossil's base-64 digits and a newline, then commands, then the
target's checksum and ``;``. A command copies ``N@OFFSET,`` bytes of the
source or inserts ``N:`` literal bytes.
Rule 2: the encoder indexes the source in blocks of ``BLOCK`` bytes (by their
content, so a hit is a real match), walks the target looking each window up,
and grows every hit backwards and forwards as far as both agree.
Rule 3: with ``text=True`` every command starts and ends on a UTF-8 character
boundary of the target, so the delta itself is valid UTF-8 when the target
is: the JSON protocol carries a delta inside a JSON string.
"""

from __future__ import annotations

from typing import Final

#: Fossil's digits for integers, least significant value first.
DIGITS: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
#: Bytes per indexed source block: shorter matches are not worth a copy command.
BLOCK: Final = 16
_MASK32: Final = 0xFFFFFFFF


def encode_int(value: int) -> bytes:
    """``value`` (>= 0) in Fossil's base-64 digits, most significant first."""
    if value == 0:
        return b"0"
    out = bytearray()
    while value:
        out.append(DIGITS[value & 63])
        value >>= 6
    out.reverse()
    return bytes(out)


def checksum(data: bytes) -> int:
    """Fossil's 32-bit checksum: four byte lanes summed, folded big-endian, tail added."""
    n = len(data) - len(data) % 4
    sums = [sum(data[lane:n:4]) for lane in range(4)]
    total = sums[3] + (sums[2] << 8) + (sums[1] << 16) + (sums[0] << 24)
    for shift, byte in zip((24, 16, 8), data[n:], strict=False):
        total += byte << shift
    return total & _MASK32


def create(source: bytes, target: bytes, *, text: bool = False) -> bytes:
    """A delta that turns ``source`` into ``target``."""
    out = [encode_int(len(target)), b"\n"]
    size = len(target)
    index: dict[bytes, int] = {}
    for start in range(0, len(source) - BLOCK + 1, BLOCK):
        index.setdefault(source[start : start + BLOCK], start)
    literal = 0  # target bytes before this are covered by commands already
    position = 0
    while index and position + BLOCK <= size:
        found = index.get(target[position : position + BLOCK])
        if found is None:
            position += 1
            continue
        begin, end, origin = _grow(source, target, position, found, literal)
        if text:
            begin, end, origin = _on_characters(target, begin, end, origin)
        if end - begin < BLOCK:
            position += 1
            continue
        if begin > literal:
            _insert(out, target[literal:begin])
        out += (encode_int(end - begin), b"@", encode_int(origin), b",")
        literal = position = end
    if literal < size:
        _insert(out, target[literal:])
    out += (encode_int(checksum(target)), b";")
    return b"".join(out)


def _grow(
    source: bytes, target: bytes, position: int, found: int, floor: int
) -> tuple[int, int, int]:
    """The longest agreement around a block match: target [begin, end) = source from origin."""
    end, far = position + BLOCK, found + BLOCK
    limit = min(len(target) - end, len(source) - far)
    step = 0
    while step < limit and target[end + step] == source[far + step]:
        step += 1
    end += step
    back = 0
    reach = min(position - floor, found)
    while back < reach and target[position - back - 1] == source[found - back - 1]:
        back += 1
    return position - back, end, found - back


def _on_characters(target: bytes, begin: int, end: int, origin: int) -> tuple[int, int, int]:
    """Shrink [begin, end) to UTF-8 character boundaries of ``target`` (Rule 3)."""
    while begin < end and 0x80 <= target[begin] < 0xC0:
        begin += 1
        origin += 1
    while end > begin and end < len(target) and 0x80 <= target[end] < 0xC0:
        end -= 1
    return begin, end, origin


def _insert(out: list[bytes], data: bytes) -> None:
    out += (encode_int(len(data)), b":", data)
