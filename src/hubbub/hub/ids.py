"""Client ids: random 128-bit ids spelled as ``uuid.uuid4().hex``, drawn from a pool.

Rule: an id is 16 bytes of ``os.urandom`` with the version-4 and RFC 4122
variant bits set, in 32 lower-case hex digits (the form clients have always
seen). The bytes are read 4 KB at a time: one system call per 256 ids instead
of one per connection, and no ``UUID`` object. A pool read before a fork is
never used by the child (the process id is checked), so two worker processes
never hand out the same id.
"""

from __future__ import annotations

import os

_POOL_BYTES = 4096


class IdSource:
    """Random ids for one hub's sessions."""

    __slots__ = ("_at", "_pid", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0
        self._pid = 0

    def new(self) -> str:
        at = self._at
        if at >= len(self._pool) or self._pid != os.getpid():
            self._pool = os.urandom(_POOL_BYTES)
            self._pid = os.getpid()
            at = 0
        self._at = at + 16
        raw = bytearray(self._pool[at : at + 16])
        raw[6] = raw[6] & 0x0F | 0x40  # version 4
        raw[8] = raw[8] & 0x3F | 0x80  # variant: RFC 4122
        return raw.hex()
