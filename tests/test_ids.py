"""Client ids (hub/ids.py): uuid4().hex's form, unique, never shared with a forked child."""

from __future__ import annotations

import os
import uuid

from hubbub.hub.ids import IdSource


def test_ids_are_version_4_uuids_in_hex_and_unique_across_pool_refills() -> None:
    source = IdSource()
    ids = [source.new() for _ in range(1000)]  # about four pools of 4 KB
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert parsed.hex == value  # 32 lower-case hex digits, no dashes
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_a_forked_child_draws_new_bytes_not_the_parents_pool() -> None:
    source = IdSource()
    source.new()  # the parent has a pool with 255 ids left in it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, source.new().encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    assert len(child_id) == 32
    assert child_id != source.new()  # the parent's next id: what the child would have reused
