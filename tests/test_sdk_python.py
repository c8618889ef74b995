"""The real centrifuge-python SDK (PyPI) against hubbub, in-process.

Proves: connect and subscribe; a publication made through the HTTP API with
``cent`` arrives; presence, presence_stats and history; RPC through a Python
hook; and after the server closes the connection with 3001 (or the API
disconnects the user with a reconnect code), the SDK reconnects and recovers
exactly the publications made while it was away, in order, with
``recovered: true``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiohttp
import pytest
from cent import AsyncClient, DisconnectRequest, PublishRequest
from cent.dto import Disconnect as CentDisconnect
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectingContext,
    DisconnectedContext,
    PublicationContext,
    ReplyError,
    SubscribedContext,
    SubscriptionEventHandler,
)

from hubbub.codes import Disconnect
from hubbub.hub.hooks import RPCEvent, RPCResponse
from hubbub.hub.hub import Hub
from tests.conftest import RunningServer, ServerFactory

TIMEOUT = 10.0


class Recorder(SubscriptionEventHandler):
    """Collects publications and subscribe contexts of one subscription."""

    def __init__(self) -> None:
        self.publications: asyncio.Queue[Any] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put(ctx.pub.data)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        await self.subscribed.put(ctx)

    async def take(self, count: int) -> list[Any]:
        return [await asyncio.wait_for(self.publications.get(), TIMEOUT) for _ in range(count)]


class Disconnects(ClientEventHandler):
    """Close codes the SDK saw: reconnect codes move it to ``connecting``, final
    ones to ``disconnected``."""

    def __init__(self) -> None:
        self.codes: asyncio.Queue[int] = asyncio.Queue()

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        if ctx.code >= 3000:
            await self.codes.put(ctx.code)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        await self.codes.put(ctx.code)


def sdk_client(server: RunningServer, **kwargs: Any) -> Client:
    return Client(server.ws_url, proxy=None, **kwargs)


async def subscribe(client: Client, channel: str) -> Recorder:
    recorder = Recorder()
    sub = client.new_subscription(channel, recorder)
    await sub.subscribe()
    await sub.ready(timeout=TIMEOUT)
    first = await asyncio.wait_for(recorder.subscribed.get(), TIMEOUT)
    assert not first.was_recovering
    return recorder


async def test_publication_from_http_api_with_cent(server: RunningServer) -> None:
    client = sdk_client(server)
    await client.connect()
    recorder = await subscribe(client, "chat:api")
    api = AsyncClient(server.api_url, server.api_key)
    try:
        result = await api.publish(PublishRequest(channel="chat:api", data={"n": 1}))
        assert result.offset == 1 and result.epoch
        assert await recorder.take(1) == [{"n": 1}]
    finally:
        await api.close()
        await client.disconnect()


async def test_presence_stats_and_history(server: RunningServer) -> None:
    alice = sdk_client(server, token=server.token("alice"))
    bob = sdk_client(server, token=server.token("bob"))
    await alice.connect()
    await bob.connect()
    try:
        await subscribe(alice, "chat:room")
        bob_recorder = await subscribe(bob, "chat:room")
        sub = alice.get_subscription("chat:room")
        assert sub is not None
        for n in range(3):
            await sub.publish({"n": n})
        assert await bob_recorder.take(3) == [{"n": 0}, {"n": 1}, {"n": 2}]
        presence = await sub.presence()
        assert sorted(info.user for info in presence.clients.values()) == ["alice", "bob"]
        stats = await sub.presence_stats()
        assert (stats.num_clients, stats.num_users) == (2, 2)
        history = await sub.history(limit=10)
        assert [p.data for p in history.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert [p.offset for p in history.publications] == [1, 2, 3]
        assert history.publications[0].info is not None
        assert history.publications[0].info.user == "alice"
        newest = await sub.history(limit=1, reverse=True)
        assert [p.data for p in newest.publications] == [{"n": 2}]
    finally:
        await alice.disconnect()
        await bob.disconnect()


def _echo_hooks(hub: Hub) -> None:
    @hub.on_rpc
    async def echo(event: RPCEvent) -> RPCResponse:
        if event.method == "boom":
            raise ValueError("hook failure")
        return RPCResponse(data={"method": event.method, "echo": event.data, "user": event.user})


async def test_rpc_through_python_hook(start_server: ServerFactory) -> None:
    server = await start_server(setup=_echo_hooks)
    client = sdk_client(server, token=server.token("carol"))
    await client.connect()
    try:
        result = await client.rpc("sum", {"a": 1})
        assert result.data == {"method": "sum", "echo": {"a": 1}, "user": "carol"}
        with pytest.raises(ReplyError) as failure:
            await client.rpc("boom", {})
        assert failure.value.code == 100
    finally:
        await client.disconnect()


async def test_rpc_without_hook_is_108(server: RunningServer) -> None:
    client = sdk_client(server)
    await client.connect()
    try:
        with pytest.raises(ReplyError) as failure:
            await client.rpc("anything", {})
        assert failure.value.code == 108
    finally:
        await client.disconnect()


async def _recover_after(server: RunningServer, user: str, close: Any, expected_code: int) -> None:
    """Subscribe, receive 3, get disconnected by ``close``, miss 5, recover them, go live."""
    channel = f"chat:recovery-{user or 'anon'}"
    events = Disconnects()
    client = sdk_client(
        server,
        events=events,
        token=server.token(user) if user else "",
        min_reconnect_delay=1.5,
        max_reconnect_delay=2.0,
    )
    await client.connect()
    try:
        recorder = await subscribe(client, channel)
        for n in range(3):
            await server.hub.publish(channel, {"n": n})
        assert await recorder.take(3) == [{"n": 0}, {"n": 1}, {"n": 2}]

        await close()
        assert await asyncio.wait_for(events.codes.get(), TIMEOUT) == expected_code
        for n in range(3, 8):  # made while the client waits to reconnect
            await server.hub.publish(channel, {"n": n})

        resubscribed = await asyncio.wait_for(recorder.subscribed.get(), TIMEOUT)
        assert resubscribed.was_recovering and resubscribed.recovered
        await server.hub.publish(channel, {"n": 8})  # live, after recovery
        got = [item["n"] for item in await recorder.take(6)]
        sent = list(range(3, 9))
        lost = len(set(sent) - set(got))
        duplicated = len(got) - len(set(got))
        out_of_order = sum(1 for a, b in itertools.pairwise(got) if b < a)
        print(
            f"recovery: sent={len(sent)} received={len(got)} lost={lost} "
            f"duplicated={duplicated} out_of_order={out_of_order}"
        )
        assert (lost, duplicated, out_of_order) == (0, 0, 0)
        assert got == sent
        assert recorder.publications.empty()
    finally:
        await client.disconnect()


async def test_recovery_after_shutdown_close_3001(server: RunningServer) -> None:
    async def close_all() -> None:
        for session in list(server.hub.sessions.values()):
            session.close(Disconnect.SHUTDOWN)

    await _recover_after(server, "", close_all, 3001)


async def test_recovery_after_api_disconnect_with_reconnect_code(server: RunningServer) -> None:
    async def disconnect_dave() -> None:
        api = AsyncClient(server.api_url, server.api_key)
        try:
            await api.disconnect(
                DisconnectRequest(user="dave", disconnect=CentDisconnect(code=4000, reason="move"))
            )
        finally:
            await api.close()

    await _recover_after(server, "dave", disconnect_dave, 4000)


async def test_sdk_refreshes_connection_and_subscription_tokens_and_stays(
    start_server: ServerFactory,
) -> None:
    """Tokens live 2 s; the SDK's get_token flows must keep the connection and the
    private subscription alive for several lifetimes (grace: 1 s)."""
    server = await start_server(
        {
            "client": {"expired_close_delay": "1s", "allow_anonymous_connect_without_token": False},
            "channel": {"without_namespace": {"allow_subscribe_for_client": False}},
        }
    )
    issued = {"connection": 0, "subscription": 0}

    async def connection_token() -> str:
        issued["connection"] += 1
        return server.token("una", ttl=2)

    async def subscription_token(channel: str) -> str:
        issued["subscription"] += 1
        return server.token("una", ttl=2, channel=channel)

    events = Disconnects()
    client = sdk_client(server, events=events, get_token=connection_token)
    recorder = Recorder()
    await client.connect()
    try:
        sub = client.new_subscription("$private", recorder, get_token=subscription_token)
        await sub.subscribe()
        await sub.ready(timeout=TIMEOUT)
        await asyncio.sleep(7)  # three token lifetimes and more
        await server.hub.publish("$private", {"still": "here"})
        assert await recorder.take(1) == [{"still": "here"}]
        assert events.codes.empty(), "the SDK was disconnected although it refreshed"
        assert recorder.subscribed.qsize() == 1, "the subscription was dropped and redone"
        assert issued["connection"] >= 3 and issued["subscription"] >= 3
    finally:
        await client.disconnect()


async def test_without_refresh_connection_closes_3005_and_subscription_2501(
    start_server: ServerFactory,
) -> None:
    server = await start_server({"client": {"expired_close_delay": "0.5s"}})
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        sub_token = server.token("vic", ttl=1, channel="$room")
        await ws.send_str(
            json.dumps({"id": 1, "connect": {"token": server.token("vic", ttl=3)}})
            + "\n"
            + json.dumps({"id": 2, "subscribe": {"channel": "$room", "token": sub_token}})
        )
        seen: list[Any] = []
        while True:
            message = await asyncio.wait_for(ws.receive(), TIMEOUT)
            if message.type is not aiohttp.WSMsgType.TEXT:
                break
            seen.extend(json.loads(line) for line in message.data.split("\n"))
        unsubscribes = [m["push"] for m in seen if "unsubscribe" in m.get("push", {})]
        assert unsubscribes == [
            {"channel": "$room", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}
        ]
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 3005
