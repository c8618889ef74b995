"""Gap detection in the hub: what a broker delivers, offset by offset.

The tests call ``hub.handle_publication`` (and ``handle_broker_lost``) directly,
as an engine does, with LocalClient subscribers on the memory engine: a jump in
offsets, an epoch change or a lost broker connection must make every positioned
subscriber resubscribe (unsubscribe push 2500), and nothing else may reach them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.protocol.messages import Publication, StreamPosition
from tests.conftest import DEFAULT_CONFIG

CHANNEL = "chat:gaps"  # recoverable (force_recovery, history) in DEFAULT_CONFIG
PLAIN = "plain"  # without namespace: no history, not positioned


def make_hub() -> Hub:
    return Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)


def pub(n: int, offset: int) -> Publication:
    return Publication(data=msgspec.Raw(json.dumps({"n": n}).encode()), offset=offset)


async def messages(hub: Hub, client: LocalClient) -> list[dict[str, Any]]:
    """Everything queued for ``client`` so far (flushes; bounded wait)."""
    hub.delivery.flush()
    async with asyncio.timeout(2):
        return relevant([json.loads(m) for m in await client.receive() if m])


def relevant(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without join/leave pushes (chat pushes them; they are not about the stream)."""
    push = "push"
    return [m for m in found if not ({"join", "leave"} & set(m.get(push, {})))]


def pending(hub: Hub, client: LocalClient) -> list[dict[str, Any]]:
    """What is queued for ``client`` now, without waiting (empty: nothing)."""
    hub.delivery.flush()
    found = [json.loads(m) for frame in client.frames for m in frame.split(b"\n") if m]
    client.frames.clear()
    return relevant(found)


async def subscribe(
    hub: Hub, channel: str, *, client: LocalClient | None = None, **extra: Any
) -> tuple[LocalClient, dict[str, Any]]:
    """Connect (when new) and subscribe; the subscribe reply."""
    frames = []
    if client is None:
        client = LocalClient(hub)
        frames.append(json.dumps({"id": 1, "connect": {}}))
    frames.append(json.dumps({"id": 2, "subscribe": {"channel": channel, **extra}}))
    await client.send("\n".join(frames))
    replies = await messages(hub, client)
    (reply,) = [m for m in replies if m.get("id") == 2]
    assert "error" not in reply, reply
    return client, reply["subscribe"]


def pub_offsets(found: list[dict[str, Any]]) -> list[int]:
    return [m["push"]["pub"].get("offset", 0) for m in found if "pub" in m.get("push", {})]


def unsubscribes(found: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [
        (m["push"]["channel"], m["push"]["unsubscribe"]["code"])
        for m in found
        if "unsubscribe" in m.get("push", {})
    ]


async def test_consecutive_offsets_are_delivered_in_order_and_nothing_else() -> None:
    async with make_hub() as hub:
        top = await hub.publish(CHANNEL, "before")
        a, reply = await subscribe(hub, CHANNEL)
        b, _ = await subscribe(hub, CHANNEL)
        assert reply["offset"] == top.offset and reply["epoch"] == top.epoch
        for k in range(1, 4):
            hub.handle_publication(
                CHANNEL, pub(k, top.offset + k), StreamPosition(top.offset + k, top.epoch)
            )
        for client in (a, b):
            found = await messages(hub, client)
            assert pub_offsets(found) == [top.offset + 1, top.offset + 2, top.offset + 3]
            assert len(found) == 3, found  # no unsubscribe, no other push
            assert [m["push"]["pub"]["data"]["n"] for m in found] == [1, 2, 3]
            assert pending(hub, client) == []


async def test_offset_jump_unsubscribes_positioned_subscribers_then_recovery_fills_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_hub() as hub:
        top = await hub.publish(CHANNEL, 0)
        a, reply = await subscribe(hub, CHANNEL)
        b, _ = await subscribe(hub, CHANNEL)
        assert reply["offset"] == top.offset == 1
        # The broker loses offset 2: it is in history, never delivered.
        with monkeypatch.context() as patch:
            patch.setattr(hub, "handle_publication", lambda *args: None)
            await hub.publish(CHANNEL, 1)
        third = await hub.publish(CHANNEL, 2)  # offset 3 arrives: top + 2
        assert third.offset == top.offset + 2
        for client in (a, b):
            found = await messages(hub, client)
            assert unsubscribes(found) == [(CHANNEL, 2500)], found
            assert pub_offsets(found) == []  # the publication after the gap is not delivered
            assert CHANNEL not in client.session.subscriptions
        # The SDK resubscribes with recover from what it had: both missed ones come back.
        _, again = await subscribe(
            hub, CHANNEL, client=a, recover=True, offset=top.offset, epoch=top.epoch
        )
        assert again["recovered"] is True
        assert [p["offset"] for p in again["publications"]] == [2, 3]
        assert [p["data"] for p in again["publications"]] == [1, 2]
        # Live again: the next consecutive offset is delivered.
        await hub.publish(CHANNEL, 3)
        assert pub_offsets(await messages(hub, a)) == [4]


async def test_epoch_change_unsubscribes_positioned_subscribers() -> None:
    async with make_hub() as hub:
        top = await hub.publish(CHANNEL, 0)
        a, _ = await subscribe(hub, CHANNEL)
        b, _ = await subscribe(hub, CHANNEL)
        # Consecutive offset, other epoch: the stream was reset (e.g. Redis lost its data).
        hub.handle_publication(CHANNEL, pub(1, top.offset + 1), StreamPosition(2, "other-epoch"))
        for client in (a, b):
            found = await messages(hub, client)
            assert unsubscribes(found) == [(CHANNEL, 2500)], found
            assert pub_offsets(found) == []


async def test_broker_lost_unsubscribes_live_and_joining_subscribers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with make_hub() as hub:
        await hub.publish(CHANNEL, 0)
        live, _ = await subscribe(hub, CHANNEL)
        # A second subscriber stays "joining" while its position is being read.
        entered, release = asyncio.Event(), asyncio.Event()
        real_history = hub.engine.history

        async def slow_history(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            await release.wait()
            return await real_history(*args, **kwargs)

        monkeypatch.setattr(hub.engine, "history", slow_history)
        joining = LocalClient(hub)
        await joining.send(json.dumps({"id": 1, "connect": {}}))
        await messages(hub, joining)
        task = asyncio.create_task(
            joining.send(json.dumps({"id": 2, "subscribe": {"channel": CHANNEL}}))
        )
        try:
            async with asyncio.timeout(2):
                await entered.wait()
            assert joining.session in hub.channels.entries[CHANNEL].joining
            hub.handle_broker_lost([CHANNEL])
            release.set()
            async with asyncio.timeout(2):
                await task
        finally:
            release.set()
            task.cancel()
        found = await messages(hub, live)
        assert unsubscribes(found) == [(CHANNEL, 2500)], found
        found = await messages(hub, joining)
        # The subscribe is answered, then dropped at once with 2500.
        assert [m.get("id") for m in found if "id" in m] == [2]
        assert unsubscribes(found) == [(CHANNEL, 2500)], found
        assert CHANNEL not in joining.session.subscriptions
        assert CHANNEL not in live.session.subscriptions


async def test_non_positioned_channel_ignores_offsets() -> None:
    async with make_hub() as hub:
        a, reply = await subscribe(hub, PLAIN)
        assert "epoch" not in reply and "offset" not in reply
        # Publications without a position, then arbitrary positions: all delivered.
        hub.handle_publication(PLAIN, pub(1, 0), StreamPosition(0, ""))
        hub.handle_publication(PLAIN, pub(2, 0), StreamPosition(0, ""))
        await hub.publish(PLAIN, 3)
        found = await messages(hub, a)
        assert [m["push"]["pub"]["data"]["n"] for m in found[:2]] == [1, 2]
        assert found[2]["push"]["pub"]["data"] == 3
        assert unsubscribes(found) == [] and len(found) == 3
        assert PLAIN in a.session.subscriptions


async def test_loss_before_first_delivered_publication_is_detected() -> None:
    """Subscribe at top N; the broker's first delivery is N+2 (N+1 lost): 2500."""
    async with make_hub() as hub:
        n = 3
        for k in range(n):
            top = await hub.publish(CHANNEL, k)
        assert top.offset == n
        a, reply = await subscribe(hub, CHANNEL)
        assert reply["offset"] == n and reply["epoch"] == top.epoch
        hub.handle_publication(CHANNEL, pub(99, n + 2), StreamPosition(n + 2, top.epoch))
        found = await messages(hub, a)
        assert unsubscribes(found) == [(CHANNEL, 2500)], found
        assert pub_offsets(found) == []
        assert CHANNEL not in a.session.subscriptions
