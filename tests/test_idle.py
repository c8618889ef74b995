"""What an idle connection holds: only its state (memory per connection is the product too).

The figure (server RSS per idle subscribed connection) comes from ``hubbub bench
idle``; these tests pin down the structure behind it, over real sockets:
- an idle subscribed connection holds no frame reader, no outbox list, no copy
  of its handshake head (when no decider can ask for headers) and no closure
  for its ping deadline: the timer calls a method shared by every session;
- the head is kept when a decider may ask (an ``on_connect`` hook, any proxy),
  and the hook still sees the headers and the peer's address;
- a message arriving in pieces is read across them (a reader exists while a
  frame is partial) and the connection returns to holding none;
- ``TimerWheel.call_later_for`` calls ``f(arg)``, and a cancelled timer lets
  go of its argument at once.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hubbub.hub.hooks import ConnectEvent
from hubbub.hub.hub import Hub
from hubbub.hub.session import Session
from hubbub.hub.timers import TimerWheel
from hubbub.server.wsconn import WebSocketConnection
from tests.conftest import RunningServer, ServerFactory
from tests.rawws import RawWS, build_frame, text

HOST = "127.0.0.1"


async def idle_subscriber(server: RunningServer, **kwargs: Any) -> tuple[RawWS, Session]:
    ws = await RawWS.open(HOST, server.port, **kwargs)
    await ws.send(text({"id": 1, "connect": {}}))
    assert "connect" in await ws.reply(1)
    command_id = await ws.command("subscribe", {"channel": "chat:idle"})
    assert "subscribe" in await ws.reply(command_id)
    await asyncio.sleep(0.05)  # the flush of this turn
    (session,) = server.hub.sessions.values()
    return ws, session


async def test_an_idle_connection_holds_only_its_state(start_server: ServerFactory) -> None:
    server = await start_server()
    ws, session = await idle_subscriber(server, headers=["X-Tenant: acme"])
    try:
        connection = session.transport
        assert isinstance(connection, WebSocketConnection)
        assert connection._reader is None  # no frame reader at rest
        assert session.protocol.outbox is None  # no empty outbox list
        assert connection.headers == {}  # nobody can ask: the head was not kept
        timer = session.heartbeat_timer
        assert timer is not None and timer.arg is session
        assert timer.callback is server.hub.heartbeat._ping_for  # shared, not a closure
        assert session.remote == "127.0.0.1"
    finally:
        ws.abort()


async def test_the_head_is_kept_when_a_decider_may_ask(start_server: ServerFactory) -> None:
    seen: list[ConnectEvent] = []

    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def connect(event: ConnectEvent) -> None:
            seen.append(event)

    server = await start_server(setup=setup)
    ws, session = await idle_subscriber(server, headers=["X-Tenant: acme"])
    try:
        assert seen[0].headers["x-tenant"] == "acme" and seen[0].remote == "127.0.0.1"
        assert session.transport.headers["x-tenant"] == "acme"
    finally:
        ws.abort()


async def test_the_head_is_kept_with_a_proxy(start_server: ServerFactory) -> None:
    # A proxy that is never called (RPC only): its presence is what matters.
    rpc = {
        "rpc": {
            "proxy": {"endpoint": "http://127.0.0.1:9/rpc"},
            "without_namespace": {"proxy_enabled": True},
        }
    }
    server = await start_server(rpc)
    ws, session = await idle_subscriber(server, headers=["X-Tenant: acme"])
    try:
        assert session.transport.headers["x-tenant"] == "acme"
    finally:
        ws.abort()


async def test_a_message_in_pieces_then_no_reader(start_server: ServerFactory) -> None:
    server = await start_server()
    ws, session = await idle_subscriber(server)
    try:
        connection = session.transport
        assert isinstance(connection, WebSocketConnection)
        command = json.dumps({"id": 9, "publish": {"channel": "chat:idle", "data": {"x": 1}}})
        frame = build_frame(command, mask_key=b"abcd")
        ws.writer.write(frame[:5])
        await ws.writer.drain()
        for _ in range(100):  # the server read the piece: a reader holds it
            if connection._reader is not None:
                break
            await asyncio.sleep(0.01)
        assert connection._reader is not None
        ws.writer.write(frame[5:])
        await ws.writer.drain()
        assert "publish" in await ws.reply(9)
        assert connection._reader is None
    finally:
        ws.abort()


def test_call_later_for_calls_with_the_argument_and_cancel_drops_it() -> None:
    now = [0.0]
    wheel = TimerWheel(resolution=1.0, clock=lambda: now[0])
    seen: list[object] = []
    first, second = object(), object()
    wheel.call_later_for(1.0, seen.append, first)
    cancelled = wheel.call_later_for(1.0, seen.append, second)
    cancelled.cancel()
    assert cancelled.arg is None and cancelled.callback is None  # nothing held
    now[0] = 1.0
    wheel.advance()
    assert seen == [first]
