"""The edges of a subscription's life: every failure undone, every await re-checked.

Each test names the item of issue 9 it pins down. They drive the hub through
``LocalClient`` (the real command path without sockets) on ``FaultyEngine``,
the memory engine with failures and pauses injected at the await points of a
subscribe, a connect, a leave and a disconnect; the HTTP API ones use a real
server on a socket.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import time
from typing import Any

import aiohttp
import jwt
import msgspec
import pytest

from hubbub.config.loader import load_config
from hubbub.hub.hooks import SubscribeEvent
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.hub.session import Session
from hubbub.protocol.messages import Publication, StreamPosition
from tests.conftest import CHAT_NAMESPACE, DEFAULT_CONFIG, SECRET, RunningServer, merge
from tests.faults import FaultyEngine
from tests.wsclient import connected_client

Message = dict[str, Any]


def make_hub(engine: FaultyEngine | None = None, extra: dict[str, Any] | None = None) -> Hub:
    config = load_config(None, env={}, base=merge(DEFAULT_CONFIG, extra or {})).config
    return Hub(config, engine=engine or FaultyEngine())


def token(user: str, *, ttl: float = 3600, **claims: Any) -> str:
    payload = {"sub": user, "exp": int(time.time() + ttl), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


async def settle(hub: Hub) -> None:
    """Let background work (leave, presence, hooks) and the flush run."""
    for _ in range(3):
        await asyncio.sleep(0)
        await hub.wait_idle()
    hub.delivery.flush()


def taken(client: LocalClient) -> list[Message]:
    """Every message written to ``client`` so far (and forget them)."""
    found = [json.loads(m) for frame in client.frames for m in frame.split(b"\n") if m]
    client.frames.clear()
    return found


async def command(client: LocalClient, hub: Hub, command_id: int, method: str, **params: Any):
    """Send one command; the messages written in reply (settled)."""
    await client.send(json.dumps({"id": command_id, method: params}))
    await settle(hub)
    return taken(client)


def reply(found: list[Message], command_id: int) -> Message:
    (only,) = [m for m in found if m.get("id") == command_id]
    return only


def pushes(found: list[Message], kind: str) -> list[Message]:
    return [m["push"] for m in found if kind in m.get("push", {})]


async def connected(hub: Hub, **params: Any) -> LocalClient:
    client = LocalClient(hub)
    found = await command(client, hub, 1, "connect", **params)
    assert "connect" in reply(found, 1), found
    return client


# --- 1. API data is compacted at the boundary ----------------------------------------


@pytest.mark.parametrize("method", ["publish", "broadcast"])
async def test_1_pretty_printed_api_data_reaches_subscribers_as_valid_json(
    server: RunningServer, method: str
) -> None:
    channel = "chat:pretty"
    target = '"channel": "chat:pretty"' if method == "publish" else '"channels": ["chat:pretty"]'
    body = "{\n  " + target + ',\n  "data": {\n    "text": "a\\nb",\n    "n": [1,\r\n 2]\n  }\n}'
    async with connected_client(server.ws_url) as client:
        await client.call("subscribe", {"channel": channel})
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.api_url}/{method}",
                data=body.encode(),
                headers={"X-API-Key": server.api_key},
            ) as response,
        ):
            assert response.status == 200, await response.text()
        push = await client.push(channel, "pub")
        assert push["data"] == {"text": "a\nb", "n": [1, 2]}
    # what history keeps (and recovery gives back) is one line of JSON too
    page = await server.hub.history(channel, limit=-1)
    (stored,) = page.publications
    assert b"\n" not in bytes(stored.data) and b"\r" not in bytes(stored.data)
    assert msgspec.json.decode(stored.data) == {"text": "a\nb", "n": [1, 2]}


# --- 2. server-side subscriptions that lose state disconnect with 3010 -----------------


async def test_2_a_gap_in_a_server_side_subscription_disconnects_with_3010() -> None:
    hub = make_hub()
    async with hub:
        position = await hub.publish("chat:gaps", 1)
        client = await connected(hub, token=token("u1", channels=["chat:gaps"]))
        taken(client)
        # the broker skipped offsets: the client can only recover by reconnecting
        hub.handle_publication(
            "chat:gaps",
            Publication(data=msgspec.Raw(b"9"), offset=position.offset + 3),
            StreamPosition(position.offset + 3, position.epoch),
        )
        await settle(hub)
        assert client.close_code == 3010
        assert not pushes(taken(client), "unsubscribe")


async def test_2_a_client_side_subscription_still_gets_2500() -> None:
    hub = make_hub()
    async with hub:
        position = await hub.publish("chat:gaps", 1)
        client = await connected(hub)
        await command(client, hub, 2, "subscribe", channel="chat:gaps")
        hub.handle_publication(
            "chat:gaps",
            Publication(data=msgspec.Raw(b"9"), offset=position.offset + 3),
            StreamPosition(position.offset + 3, position.epoch),
        )
        await settle(hub)
        assert [p["unsubscribe"]["code"] for p in pushes(taken(client), "unsubscribe")] == [2500]
        assert client.close_code is None


# --- 4. a failed presence add undoes the subscribe -------------------------------------


async def test_4_a_failed_presence_add_undoes_the_subscribe() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    async with hub:
        client = await connected(hub)
        engine.fail_next("add_presence")
        found = await command(client, hub, 2, "subscribe", channel="chat:a")
        assert reply(found, 2)["error"]["code"] == 100
        assert "chat:a" not in client.session.subscriptions
        assert hub.channel_counts() == {}  # nothing joining, nothing buffering
        for n in range(50):
            await hub.publish("chat:a", n)
        found = await command(client, hub, 3, "subscribe", channel="chat:a")
        assert "subscribe" in reply(found, 3)  # a retry works: not 105
        assert list(await engine.presence("chat:a")) == [client.session.client_id]


# --- 5. no duplicate for a late joiner while pub/sub lags ------------------------------


async def test_5_a_late_joiner_gets_no_duplicate_while_pubsub_lags() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    async with hub:
        early = await connected(hub)
        await command(early, hub, 2, "subscribe", channel="chat:lag")
        engine.lag()
        for n in (1, 2, 3):
            await hub.publish("chat:lag", n)
        late = await connected(hub)
        found = await command(late, hub, 2, "subscribe", channel="chat:lag")
        assert reply(found, 2)["subscribe"]["offset"] == 3  # positioned after all three
        engine.catch_up()  # now 1, 2, 3 reach this node
        await hub.publish("chat:lag", 4)
        await settle(hub)
        offsets = {
            name: [p["pub"]["offset"] for p in pushes(taken(c), "pub")]
            for name, c in (("early", early), ("late", late))
        }
        assert offsets == {"early": [1, 2, 3, 4], "late": [4]}


# --- 6. the disconnect cleanup goes on after a failure ---------------------------------


async def test_6_disconnect_cleanup_goes_on_after_a_failure() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    disconnected: list[int] = []

    @hub.on_disconnect
    async def record(event: Any) -> None:
        disconnected.append(event.code)

    async with hub:
        watcher = await connected(hub)
        await command(watcher, hub, 2, "subscribe", channel="chat:b")
        leaving = await connected(hub)
        for n, channel in enumerate(("chat:a", "chat:b"), start=2):
            await command(leaving, hub, n, "subscribe", channel=channel)
        taken(watcher)
        engine.fail_next("remove_presence")  # the first channel's cleanup fails
        leaving.disconnect()
        await settle(hub)
        remaining = [await engine.presence(c) for c in ("chat:a", "chat:b")]
        gone = leaving.session.client_id
        assert sum(gone in members for members in remaining) <= 1  # only the failed one
        assert gone not in remaining[1] or gone not in remaining[0]
        leaves = [p["leave"]["info"]["client"] for p in pushes(taken(watcher), "leave")]
        assert leaves == [gone]
        assert disconnected == [3000]


# --- 7. a closed session is freed at once ------------------------------------------------


async def test_7_closed_sessions_are_freed_without_the_cycle_collector() -> None:
    hub = make_hub()
    async with hub:
        baseline_timers = len(hub.timers)
        gc.collect()
        gc.disable()
        try:
            for _ in range(200):
                client = await connected(hub, token=token("u", ttl=24 * 3600))
                await command(client, hub, 2, "subscribe", channel="chat:churn")
                client.disconnect()
                del client
            await settle(hub)
            alive = sum(isinstance(o, Session) for o in gc.get_objects())
        finally:
            gc.enable()
        assert alive == 0
        assert len(hub.timers) <= baseline_timers + 1


# --- 8. a badly signed subscription token is an error, not a final disconnect -----------


async def test_8_bad_subscription_token_signature_answers_103_and_keeps_the_connection() -> None:
    hub = make_hub()
    async with hub:
        client = await connected(hub)
        forged = jwt.encode(
            {"sub": "", "channel": "$chat:x"}, "a-wrong-key-that-is-long-enough-for-hs256", "HS256"
        )
        found = await command(client, hub, 2, "subscribe", channel="$chat:x", token=forged)
        assert reply(found, 2)["error"]["code"] == 103
        assert client.close_code is None
        good = token("", channel="$chat:x")
        found = await command(client, hub, 3, "subscribe", channel="$chat:x", token=good)
        assert "subscribe" in reply(found, 3)


@pytest.mark.parametrize(
    "claims", [{"channel": "$chat:other"}, {"channel": "$chat:x", "client": "someone-else"}]
)
async def test_8_subscription_token_claim_mismatch_is_3500(claims: dict[str, Any]) -> None:
    hub = make_hub()
    async with hub:
        client = await connected(hub)
        await command(client, hub, 2, "subscribe", channel="$chat:x", token=token("", **claims))
        assert client.close_code == 3500


async def test_8_the_client_claim_of_a_subscription_token_is_honoured() -> None:
    hub = make_hub()
    async with hub:
        client = await connected(hub)
        own = token("", channel="$chat:x", client=client.session.client_id)
        found = await command(client, hub, 2, "subscribe", channel="$chat:x", token=own)
        assert "subscribe" in reply(found, 2)


# --- 9. every command gets exactly one reply -------------------------------------------


async def test_9_a_failed_join_publish_sends_no_second_reply_and_expiry_still_runs() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine, {"client": {"expired_close_delay": "0s"}})
    async with hub:
        client = await connected(hub)
        engine.fail_next("publish_join")
        sub_token = token("", ttl=1, channel="$chat:x")
        found = await command(client, hub, 2, "subscribe", channel="$chat:x", token=sub_token)
        assert [m for m in found if m.get("id") == 2] == [reply(found, 2)]
        assert "subscribe" in reply(found, 2)
        async with asyncio.timeout(5):
            while not pushes(found, "unsubscribe"):
                await asyncio.sleep(0.05)
                hub.delivery.flush()
                found += taken(client)
        assert [p["unsubscribe"]["code"] for p in pushes(found, "unsubscribe")] == [2501]
        assert [m for m in found if m.get("id") == 2] == [reply(found, 2)]


# --- 10. join/leave pushes need presence permission -----------------------------------


@pytest.mark.parametrize("presence_allowed", [False, True])
async def test_10_join_leave_pushes_need_presence_permission(presence_allowed: bool) -> None:
    namespace = {
        "name": "room",
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "allow_subscribe_for_client": True,
        "allow_subscribe_for_anonymous": True,
        "allow_presence_for_subscriber": presence_allowed,
        "allow_presence_for_anonymous": presence_allowed,
    }
    extra = {"channel": {"namespaces": [CHAT_NAMESPACE, namespace]}}
    hub = make_hub(None, extra)
    async with hub:
        watcher = await connected(hub)
        await command(watcher, hub, 2, "subscribe", channel="room:1")
        taken(watcher)
        other = await connected(hub)
        await command(other, hub, 2, "subscribe", channel="room:1")
        await settle(hub)
        joins = pushes(taken(watcher), "join")
        assert len(joins) == (1 if presence_allowed else 0)


# --- 11. a joiner never goes live on a failed engine subscribe --------------------------


async def test_11_a_joiner_after_a_failed_engine_subscribe_never_goes_live_unsubscribed() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    late_gate = asyncio.Event()
    late: LocalClient | None = None

    @hub.on_subscribe
    async def slow_for_late(event: SubscribeEvent) -> None:
        if late is not None and event.client == late.session.client_id:
            await late_gate.wait()

    async with hub:
        first = await connected(hub)
        second = await connected(hub)
        late = await connected(hub)
        engine_gate = engine.hold("subscribe")
        tasks = [
            asyncio.create_task(c.send(json.dumps({"id": 2, "subscribe": {"channel": "x"}})))
            for c in (first, second, late)
        ]
        await engine.wait_held("subscribe")
        engine.fail_next("subscribe")
        # The engine answers the first subscriber with a failure, and in the same turn
        # the late one's hook returns: it runs before the second learns of the failure.
        engine_gate.set()
        late_gate.set()
        await asyncio.gather(*tasks)
        await settle(hub)
        live = {name for name, count in hub.channel_counts().items() if count}
        assert live <= engine.subscribed, "a subscriber is live without an engine subscription"
        late_reply = reply(taken(late), 2)
        if "subscribe" in late_reply:
            await hub.publish("x", 1)
            await settle(hub)
            assert pushes(taken(late), "pub")


# --- 12. no ghost presence for a subscribe that ends after its session ------------------


async def test_12_a_subscribe_completing_after_close_leaves_no_presence_and_no_leave() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    async with hub:
        watcher = await connected(hub)
        await command(watcher, hub, 2, "subscribe", channel="chat:g")
        taken(watcher)
        ghost = await connected(hub)
        gate = engine.hold("add_presence")
        task = asyncio.create_task(
            ghost.send(json.dumps({"id": 2, "subscribe": {"channel": "chat:g"}}))
        )
        await engine.wait_held("add_presence")
        ghost.disconnect()
        await settle(hub)
        gate.set()
        await task
        await settle(hub)
        assert list(await engine.presence("chat:g")) == [watcher.session.client_id]
        found = taken(watcher)
        assert not pushes(found, "leave") or pushes(found, "join"), "a leave without a join"


# --- 14. recovery replies carry the client's position; one history read ----------------


async def test_14_recovered_reply_carries_the_clients_offset_and_reads_history_once() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    async with hub:
        first = await hub.publish("chat:r", 0)
        for n in range(1, 5):
            await hub.publish("chat:r", n)
        client = await connected(hub)
        found = await command(
            client, hub, 2, "subscribe", channel="chat:r", recover=True, offset=2,
            epoch=first.epoch,
        )  # fmt: skip
        result = reply(found, 2)["subscribe"]
        assert result["recovered"] is True
        assert result["offset"] == 2  # the client's; the publications bring it to 5
        assert [p["offset"] for p in result["publications"]] == [3, 4, 5]
        engine.calls.clear()
        found = await command(
            client, hub, 3, "subscribe", channel="chat:s", recover=True, offset=2, epoch="gone"
        )
        result = reply(found, 3)["subscribe"]
        assert result.get("recovered") is None and result["was_recovering"] is True
        assert engine.calls.count("history") == 1


# --- 15. a connect that fails is undone completely ------------------------------------


async def test_15_a_connect_failing_after_accept_is_undone() -> None:
    engine = FaultyEngine()
    hub = make_hub(engine)
    async with hub:
        client = LocalClient(hub)
        engine.fail_next("add_presence")
        found = await command(client, hub, 1, "connect", token=token("u15", channels=["chat:a"]))
        assert reply(found, 1)["error"]["code"] == 100
        assert hub.sessions_of("u15") == []
        assert client.session.subscriptions == {}
        assert hub.channel_counts() == {}
        assert not client.session.connected
        found = await command(client, hub, 2, "connect", token=token("u15", channels=["chat:a"]))
        assert reply(found, 2)["connect"]["subs"]["chat:a"]
        assert [s.client_id for s in hub.sessions_of("u15")] == [client.session.client_id]


# --- 16. the outbox and the transport buffer count together ---------------------------


async def test_16_outbox_and_transport_buffer_are_one_limit() -> None:
    hub = make_hub(None, {"client": {"queue_max_size": 1000}})
    async with hub:
        client = await connected(hub)
        taken(client)
        client.frames.append(b"x" * 600)  # written, not read by the peer
        client.session.send(b'"' + b"y" * 500 + b'"', "push_message")
        # refused when queued: 1,100 bytes would be pending (never up to twice the limit)
        assert client.session.closed
        await settle(hub)
        assert client.close_code == 3008
        assert client.frames == [b"x" * 600]


# --- 19. deeply nested API input is a 400, no traceback; one body limit --------------


async def test_19_deeply_nested_api_input_is_a_400_without_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = b'{"channel":"chat:deep","data":' + b"[" * 5000 + b"]" * 5000 + b"}"
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/publish", data=body, headers={"X-API-Key": server.api_key}
        ) as response,
    ):
        assert response.status == 400
        assert "deep" in (await response.text()).lower()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_19_the_api_body_limit_is_the_one_documented(server: RunningServer) -> None:
    from hubbub.server.api import MAX_BODY

    data = b'"' + b"z" * (2 * 1024 * 1024) + b'"'  # over aiohttp's own default of 1 MB
    body = io.BytesIO(b'{"channel":"chat:big","data":' + data + b"}")
    headers = {"X-API-Key": server.api_key}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.api_url}/publish", data=body, headers=headers) as r:
            assert r.status == 200, await r.text()
        too_big = io.BytesIO(b"{" + b" " * (MAX_BODY + 1) + b"}")
        async with http.post(f"{server.api_url}/publish", data=too_big, headers=headers) as r:
            assert r.status == 413


# --- a failed start is undone -------------------------------------------------------


async def test_a_start_that_failed_can_be_tried_again() -> None:
    from hubbub.engines.base import EngineUnavailable, EventHandler
    from hubbub.engines.memory import MemoryEngine

    class Unreachable(MemoryEngine):
        failures = 1

        async def start(self, handler: EventHandler) -> None:
            if self.failures:
                self.failures -= 1
                raise EngineUnavailable("not yet")
            await super().start(handler)

    hub = Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config, engine=Unreachable())
    with pytest.raises(EngineUnavailable):
        await hub.start()
    await hub.start()  # the backend is back: this start is a real one
    try:
        client = await connected(hub)
        found = await command(client, hub, 2, "subscribe", channel="chat:retry")
        assert "subscribe" in reply(found, 2)
        await hub.publish("chat:retry", {"n": 1})  # delivered: the engine was started
        await settle(hub)
        assert [p["pub"]["data"] for p in pushes(taken(client), "pub")] == [{"n": 1}]
    finally:
        await hub.close()
