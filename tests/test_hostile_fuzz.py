"""Hostile clients, in process: arbitrary frames (hypothesis) never raise.

Any sequence of frames sent to a session (``LocalClient``, no sockets) gets only
JSON objects back, never an internal error (100), a close code in 3000..3999 if
any, a reply to every answerable command; another session keeps publishing and
receiving, and its publication is in history. No case may make hubbub log a
traceback (``no_hubbub_tracebacks`` of tests/hostile_helpers.py).
"""

from __future__ import annotations

import asyncio
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.protocol.codec import METHODS as COMMAND_METHODS
from tests.conftest import DEFAULT_CONFIG
from tests.hostile_helpers import (
    no_hubbub_tracebacks,  # noqa: F401 (autouse fixture)
)

# --- in-process property test ----------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
METHODS = [*COMMAND_METHODS, "bogus"]
CHANNELS = st.sampled_from(["chat:a", "chat:b", "a", "$private", "chat:x#1", "", "locked:x"])
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "channel": CHANNELS | st.text(max_size=8),
        "data": JSON_VALUES,
        "token": st.sampled_from(["", "bad.token.here"]) | st.text(max_size=8),
        "limit": st.integers(min_value=-5, max_value=2000),
        "offset": st.integers(min_value=-5, max_value=2**64),
        "epoch": st.text(max_size=4),
        "recover": st.booleans(),
        "reverse": st.booleans(),
        "since": st.fixed_dictionaries(
            {"offset": st.integers(-1, 5), "epoch": st.text(max_size=3)}
        ),
        "method": st.text(max_size=5),
        "name": st.text(max_size=5),
    },
)
COMMANDS = st.builds(
    lambda command_id, method, params: {
        **({} if command_id is None else {"id": command_id}),
        method: params,
    },
    st.none() | st.integers(min_value=-2, max_value=2**64 + 1),
    st.sampled_from(METHODS),
    PARAMS | JSON_VALUES,
)
FRAMES = st.one_of(
    st.lists(COMMANDS, min_size=1, max_size=3).map(
        lambda commands: "\n".join(json.dumps(c) for c in commands)
    ),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.just("{}"),
)


def _answerable(frame: str | bytes) -> bool:
    """Whether the frame's first command is one that must get a reply (id > 0, not send)."""
    try:
        first = json.loads(frame.splitlines()[0]) if frame.strip() else None
    except (ValueError, UnicodeDecodeError, IndexError):
        return False
    if not isinstance(first, dict):
        return False
    command_id = first.get("id")
    methods = [m for m in METHODS if m in first]
    return (
        isinstance(command_id, int)
        and not isinstance(command_id, bool)
        and 0 < command_id < 2**63
        and len(first) == 2
        and len(methods) == 1
        and methods[0] not in ("send", "bogus")
    )


async def _run_frames(connect_first: bool, frames: list[str | bytes]) -> None:
    config = load_config(None, env={}, base=DEFAULT_CONFIG).config
    async with Hub(config) as hub:
        watcher = LocalClient(hub)
        await watcher.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:w"}}')
        client = LocalClient(hub)
        if connect_first:
            frames = [b'{"id":1,"connect":{}}', *frames[:4]]
        for frame in frames:
            was_open = client.close_code is None and not client.session.closed
            await client.send(frame)  # must never raise
            for _ in range(3):
                await asyncio.sleep(0)  # the flush is call_soon
            lines = [line for f in client.frames for line in f.split(b"\n") if line.strip()]
            client.frames.clear()
            messages = [json.loads(line) for line in lines]
            assert all(isinstance(m, dict) for m in messages), messages
            internal = [m for m in messages if m.get("error", {}).get("code") == 100]
            assert not internal, (frame, internal)
            if client.close_code is not None:
                assert 3000 <= client.close_code <= 3999, (frame, client.close_code)
            elif was_open and _answerable(frame):
                assert any("id" in m for m in messages), (frame, messages)
        # The other session is untouched: it publishes and receives its own publication.
        await watcher.send(b'{"id":3,"publish":{"channel":"chat:w","data":{"ok":1}}}')
        for _ in range(3):
            await asyncio.sleep(0)
        received = b"\n".join(watcher.frames)
        assert watcher.close_code is None, watcher.close_code
        assert b'{"id":3,"publish":' in received, received
        assert b'"error"' not in received, received
        assert b'"data":{"ok":1}' in received, received
        page = await hub.history("chat:w", limit=-1)
        assert b'{"ok":1}' in [bytes(p.data) for p in page.publications]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(connect_first=st.booleans(), frames=st.lists(FRAMES, min_size=1, max_size=5))
def test_arbitrary_frames_never_raise(connect_first: bool, frames: list[str | bytes]) -> None:
    asyncio.run(_run_frames(connect_first, frames))
