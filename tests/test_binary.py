"""Binary payloads: Protobuf clients exchange bytes that are not JSON, exactly.

With the real SDKs (centrifuge-js's Protobuf build under Node, centrifuge-python
with ``use_protobuf=True``) on a real server, memory and redis-server engines:
bytes that are neither JSON nor UTF-8, published by either SDK or by the HTTP
API's ``b64data``, reach the other Protobuf subscribers byte for byte, stay
exact in history and in a recovery after a server-side disconnect; a JSON
subscriber of the same channel is closed with 3506 (inappropriate protocol),
as Centrifugo closes it. Fossil deltas work over the bytes. An RPC and a
``send`` carry bytes to the hooks and back. A namespace with
``publication_data_format: "json"`` refuses such a publish with 107 (bad
request), from a client and from the API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import uuid
from typing import Any

import aiohttp
import msgspec
import pytest
from cent import AsyncClient, DisconnectRequest
from cent import Disconnect as CentDisconnect
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectingContext,
    DeltaType,
    DisconnectedContext,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)
from centrifuge.exceptions import ReplyError

from hubbub.codes import Disconnect
from hubbub.hub.hooks import MessageEvent, RPCEvent
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.protocol.payload import Binary
from hubbub.protocol.protobuf import PROTOBUF, decode_replies, encode_command
from hubbub.protocol.protowire import delimited
from hubbub.webhooks.events import WebhookEvent, encode_event
from tests.conftest import CHAT_NAMESPACE, RunningServer, ServerFactory
from tests.map_fixtures import MAP_CONFIG
from tests.redis_fixtures import RedisProcess, redis_server  # noqa: F401
from tests.test_admin import ADMIN, login, trace_stream
from tests.test_delta import CONFIG as DELTA_CONFIG
from tests.test_http_api import post
from tests.test_sdk_js import js_dependencies, ok
from tests.test_sdk_modes import js_client

__all__ = ["js_dependencies"]

#: Not JSON, not UTF-8: what a JSON-only path would mangle or refuse.
BYTES = [b"\x00\xff\xfe", b"\xfe\xff\x00binary\n", b"\x80", b"\x00" * 3, b"\xc3\x28{"]
RECONNECT_S = 1.0


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Events(ClientEventHandler, SubscriptionEventHandler):
    """One centrifuge-python client's events, queued."""

    def __init__(self) -> None:
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()
        self.disconnected: asyncio.Queue[DisconnectedContext] = asyncio.Queue()
        self.connecting: asyncio.Queue[ConnectingContext] = asyncio.Queue()

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        await self.connecting.put(ctx)

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        await self.disconnected.put(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:  # type: ignore[override]
        await self.subscribed.put(ctx)

    async def on_publication(self, ctx: PublicationContext) -> None:  # type: ignore[override]
        await self.publications.put(ctx)


async def next_of(queue: asyncio.Queue[Any], within: float = 10.0) -> Any:
    return await asyncio.wait_for(queue.get(), within)


def python_client(server: RunningServer, user: str, events: Events, *, protobuf: bool) -> Client:
    return Client(
        server.ws_url,
        events,
        token=server.token(user),
        use_protobuf=protobuf,
        min_reconnect_delay=RECONNECT_S,
        max_reconnect_delay=RECONNECT_S,
    )


async def binary_server(start_server: ServerFactory, engine: str, redis: RedisProcess) -> Any:
    extra: dict[str, Any] = {}
    if engine == "redis":
        prefix = f"bin{uuid.uuid4().hex[:8]}"
        extra = {"engine": {"type": "redis", "redis": {"address": redis.address, "prefix": prefix}}}
    return await start_server(extra)


@pytest.mark.parametrize("engine", ["memory", "redis"])
async def test_protobuf_sdks_exchange_exact_bytes(
    start_server: ServerFactory,
    redis_server: RedisProcess,  # noqa: F811
    engine: str,
) -> None:
    server = await binary_server(start_server, engine, redis_server)
    channel = f"chat:bin-{engine}"
    bob_events, carol_events = Events(), Events()
    bob = python_client(server, "bob", bob_events, protobuf=True)
    carol = python_client(server, "carol", carol_events, protobuf=False)  # speaks JSON
    bob_sub = bob.new_subscription(channel, bob_events)
    carol_sub = carol.new_subscription(channel, carol_events)
    api = AsyncClient(server.api_url, server.api_key)
    try:
        async with js_client(server, "websocket+protobuf", channel, server.token("alice")) as js:
            await js.next("subscribed", within=10)
            await bob.connect()
            await bob_sub.subscribe()
            await next_of(bob_events.subscribed)
            await carol.connect()
            await carol_sub.subscribe()
            await next_of(carol_events.subscribed)

            # centrifuge-js publishes bytes that are not JSON: bob gets them exactly.
            ok(await js.request("publish", b64=b64(BYTES[0])))
            got = await next_of(bob_events.publications)
            assert (got.pub.data, got.pub.offset, got.pub.info.user) == (BYTES[0], 1, "alice")
            mine = await js.next("publication")
            assert (mine["b64"], mine["data"], mine["offset"]) == (b64(BYTES[0]), None, 1)
            # The JSON subscriber cannot read them: closed with 3506, as Centrifugo does,
            # and it was never sent a frame it could not parse.
            closed: DisconnectedContext = await next_of(carol_events.disconnected)
            assert closed.code == 3506
            assert carol_events.publications.empty()

            # centrifuge-python publishes, the API publishes with b64data: the same.
            await bob_sub.publish(BYTES[1])
            status, answer = await post(
                server, "publish", {"channel": channel, "b64data": b64(BYTES[2])}
            )
            assert status == 200 and answer["result"]["offset"] == 3, answer
            for data, offset in ((BYTES[1], 2), (BYTES[2], 3)):
                got = await next_of(bob_events.publications)
                assert (got.pub.data, got.pub.offset) == (data, offset)
                pub = await js.next("publication")
                assert (pub["b64"], pub["offset"]) == (b64(data), offset)

            # History, through both SDKs and the API (base64 in b64data there).
            history = await bob_sub.history(limit=-1)
            assert [p.data for p in history.publications] == BYTES[:3]
            js_history = ok(await js.request("history", limit=-1))
            assert [p["b64"] for p in js_history["publications"]] == [b64(b) for b in BYTES[:3]]
            status, answer = await post(server, "history", {"channel": channel, "limit": -1})
            assert status == 200
            assert [p["b64data"] for p in answer["result"]["publications"]] == [
                b64(b) for b in BYTES[:3]
            ]
            assert all("data" not in p for p in answer["result"]["publications"])

            # A server-side disconnect (reconnect code); publications go on; bob and
            # alice recover exactly what they missed.
            await api.disconnect(
                DisconnectRequest(user="bob", disconnect=CentDisconnect(code=4000, reason="x"))
            )
            while (await next_of(bob_events.connecting)).code != 4000:
                pass  # "connect called", at the start
            for data in BYTES[3:]:
                status, _ = await post(
                    server, "publish", {"channel": channel, "b64data": b64(data)}
                )
                assert status == 200
            again: SubscribedContext = await next_of(bob_events.subscribed, RECONNECT_S + 10)
            assert again.was_recovering and again.recovered
            recovered = [await next_of(bob_events.publications) for _ in BYTES[3:]]
            assert [(p.pub.data, p.pub.offset) for p in recovered] == [(BYTES[3], 4), (BYTES[4], 5)]
            live = [await js.next("publication") for _ in BYTES[3:]]
            assert [p["b64"] for p in live] == [b64(b) for b in BYTES[3:]]
    finally:
        await bob.disconnect()
        await carol.disconnect()
        await api.close()


async def test_rpc_and_send_carry_bytes(start_server: ServerFactory) -> None:
    messages: asyncio.Queue[Any] = asyncio.Queue()

    async def rpc(event: RPCEvent) -> Any:
        assert isinstance(event.data, bytes)
        return b"\xff" + event.data[::-1]

    async def message(event: MessageEvent) -> None:
        await messages.put(event.data)

    def setup(hub: Hub) -> None:
        hub.hooks.rpc, hub.hooks.message = rpc, message

    server = await start_server(setup=setup)
    events = Events()
    client = python_client(server, "bob", events, protobuf=True)
    try:
        await client.connect()
        result = await client.rpc("echo", b"\x00\x01\xfe")
        assert result.data == b"\xff\xfe\x01\x00"
        async with js_client(server, "websocket+protobuf", "", server.token("alice")) as js:
            await js.next("connected", within=10)
            answer = ok(await js.request("rpc", method="echo", b64=b64(b"\x01\x02")))
            assert answer["b64"] == b64(b"\xff\x02\x01")
            # centrifuge-python has no send: centrifuge-js sends.
            ok(await js.request("send", b64=b64(b"\x80\x81")))
            assert await next_of(messages) == b"\x80\x81"
            # JSON bytes stay JSON for hooks: a Python value, as from a JSON client.
            ok(await js.request("send", data={"a": 1}))
            assert await next_of(messages) == {"a": 1}
    finally:
        await client.disconnect()


async def test_publication_data_format_json_refuses_bytes(start_server: ServerFactory) -> None:
    strict = {**CHAT_NAMESPACE, "name": "strict", "publication_data_format": "json"}
    server = await start_server({"channel": {"namespaces": [CHAT_NAMESPACE, strict]}})
    events = Events()
    client = python_client(server, "bob", events, protobuf=True)
    sub = client.new_subscription("strict:a", events)
    try:
        await client.connect()
        await sub.subscribe()
        await next_of(events.subscribed)
        with pytest.raises(ReplyError) as refused:
            await sub.publish(b"\x00\xff\xfe")
        assert refused.value.code == 107
        await sub.publish(b'{"ok":true}')  # JSON bytes are JSON
        got = await next_of(events.publications)
        assert got.pub.data == b'{"ok":true}'
        status, answer = await post(
            server, "publish", {"channel": "strict:a", "b64data": b64(b"\x00\xff")}
        )
        assert status == 200 and answer["error"]["code"] == 107, answer
        # Where the format is not set, the same bytes are published.
        status, answer = await post(
            server, "publish", {"channel": "chat:a", "b64data": b64(b"\x00\xff")}
        )
        assert status == 200 and "error" not in answer, answer
    finally:
        await client.disconnect()


def binary_versions(count: int, seed: int = 5) -> list[bytes]:
    """Successive versions of ~2 KB of bytes that are not UTF-8 (small edits)."""
    rnd = random.Random(seed)
    doc = bytearray(rnd.randbytes(2048))
    doc[0:2] = b"\xff\x00"
    out = []
    for _ in range(count):
        at = rnd.randrange(len(doc) - 8)
        doc[at : at + 4] = rnd.randbytes(rnd.randrange(1, 8))
        out.append(bytes(doc))
    return out


async def test_fossil_deltas_over_exact_bytes(start_server: ServerFactory) -> None:
    """Protobuf delta subscribers (both SDKs) rebuild every binary version exactly
    from patches made over the bytes; recovery sends whole versions."""
    server = await start_server(DELTA_CONFIG)
    channel = "docs:bin"
    docs = binary_versions(24)
    events = Events()
    client = python_client(server, "ann", events, protobuf=True)
    sub = client.new_subscription(channel, events, delta=DeltaType.FOSSIL)
    try:
        async with js_client(
            server, "websocket+protobuf", channel, server.token("cy"), delta="fossil"
        ) as js:
            await js.next("subscribed", within=10)
            await client.connect()
            await sub.subscribe()
            await next_of(events.subscribed)
            for doc in docs[:12]:
                await server.hub.publish(channel, doc)
            got = [await next_of(events.publications) for _ in range(12)]
            assert [ctx.pub.data for ctx in got] == docs[:12]
            # Patches, not whole versions, after the first (small edits of 2 KB).
            assert [bool(ctx.pub.delta) for ctx in got] == [False] + [True] * 11
            js_got = [(await js.next("publication"))["b64"] for _ in range(12)]
            assert js_got == [b64(doc) for doc in docs[:12]]
            # A server-side disconnect: what was missed is recovered whole, then patches.
            for session in server.hub.sessions_of("ann"):
                session.close(Disconnect.SHUTDOWN)
            for doc in docs[12:18]:
                await server.hub.publish(channel, doc)
            again: SubscribedContext = await next_of(events.subscribed, RECONNECT_S + 10)
            assert again.recovered
            for doc in docs[18:]:
                await server.hub.publish(channel, doc)
            rest = [await next_of(events.publications) for _ in docs[12:]]
            assert [ctx.pub.data for ctx in rest] == docs[12:]
            js_rest = [(await js.next("publication"))["b64"] for _ in docs[12:]]
            assert js_rest == [b64(doc) for doc in docs[12:]]
        page = await server.hub.history(channel, limit=-1)
        assert [bytes(p.data) for p in page.publications] == docs
    finally:
        await client.disconnect()


async def test_admin_traces_show_binary_payloads(start_server: ServerFactory) -> None:
    """A traced channel and a traced user keep working with binary payloads: the
    publication and the command show the bytes as base64."""
    server = await start_server({**ADMIN, "demo": {"enabled": False}})
    base = server.http_url
    async with aiohttp.ClientSession() as http:
        token = await login(http, base)
    events = Events()
    client = python_client(server, "tina", events, protobuf=True)
    sub = client.new_subscription("chat:traced", events)
    try:
        async with (
            trace_stream(base, token, channel="chat:traced") as channel_trace,
            trace_stream(base, token, user="tina") as user_trace,
        ):
            await client.connect()
            await sub.subscribe()
            await next_of(events.subscribed)
            await sub.publish(b"\x00\xff\xfe")
            assert (await next_of(events.publications)).pub.data == b"\x00\xff\xfe"
            publication = await channel_trace.next("publication")
            assert publication["message"]["push"]["pub"]["b64data"] == b64(b"\x00\xff\xfe")
            while (command := await user_trace.next("command"))["method"] != "publish":
                pass
            assert command["command"]["publish"]["data"] == b64(b"\x00\xff\xfe")
    finally:
        await client.disconnect()


def test_webhook_events_carry_bytes_as_b64data() -> None:
    event = WebhookEvent("publication", 1, channel="chat:a", data=Binary(b"\x00\xff"), offset=2)
    assert json.loads(encode_event(event)) == {
        "type": "publication",
        "time_ms": 1,
        "channel": "chat:a",
        "b64data": b64(b"\x00\xff"),
        "offset": 2,
    }
    json_event = WebhookEvent("publication", 1, data=msgspec.Raw(b'{"n":1}'))
    assert json.loads(encode_event(json_event))["data"] == {"n": 1}  # JSON stays JSON


async def test_json_client_reading_bytes_in_history_is_closed_with_3506(
    start_server: ServerFactory,
) -> None:
    server = await start_server()
    status, _ = await post(server, "publish", {"channel": "chat:h", "b64data": b64(b"\xff")})
    assert status == 200
    events = Events()
    client = python_client(server, "dan", events, protobuf=False)
    sub = client.new_subscription("chat:h", events)
    try:
        await client.connect()
        await sub.subscribe()
        await next_of(events.subscribed)
        with contextlib.suppress(Exception):  # the SDK's call fails as its connection closes
            await sub.history(limit=-1, timeout=5)
        closed: DisconnectedContext = await next_of(events.disconnected)
        assert closed.code == 3506
    finally:
        await client.disconnect()


async def test_map_channels_refuse_binary_writes(start_server: ServerFactory) -> None:
    """Map state is JSON: a Protobuf client's binary write to a key gets 107 (before
    permissions, as any data check)."""
    server = await start_server(MAP_CONFIG)
    client = LocalClient(server.hub, codec=PROTOBUF)
    await client.send(encode_command({"id": 1, "connect": {}}))
    write = {"channel": "board:b", "type": 1, "key": "k"}
    await client.send(
        encode_command({"id": 2, "publish": {**write, "data": b"\xff"}})
        + encode_command({"id": 3, "publish": {**write, "data": b"[1]"}})
    )
    replies: dict[int, Any] = {}
    async with asyncio.timeout(10):
        while len(replies) < 3:
            for message in await client.receive():  # one Reply each, without its length
                (reply,) = decode_replies(delimited(message))
                replies[reply.get("id", 0)] = reply
    assert replies[2]["error"]["code"] == 107
    # JSON bytes pass the data check; permission comes next (not subscribed: 103).
    assert replies[3]["error"]["code"] == 103
