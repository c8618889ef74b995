"""Delta compression (Fossil): hubbub's patches decoded by the SDKs' own decoders.

A document of about 2 KB is published in many successive versions (small
edits, insertions, a rewrite now and then); subscribers that asked for
``delta: "fossil"`` must reconstruct every version exactly with the real
centrifuge-python and centrifuge-js, through a server-side disconnect and the
recovery that follows it, while plain subscribers of the same channel get
plain publications and history stays whole.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import msgspec
import pytest
from centrifuge import (
    Client,
    DeltaType,
    PublicationContext,
    SubscribedContext,
    SubscriptionEventHandler,
)
from centrifuge.fossil import apply_delta
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.codes import Disconnect
from hubbub.hub.deltas import DeltaFrames
from hubbub.protocol import fossil
from hubbub.protocol.codec import JSON
from hubbub.protocol.messages import Publication
from hubbub.protocol.protobuf import PROTOBUF, decode_replies
from tests.conftest import CHAT_NAMESPACE, ServerFactory
from tests.test_sdk_js import js_dependencies, ok
from tests.test_sdk_modes import RECONNECT_DELAY_MS, js_client

__all__ = ["js_dependencies"]

DOCS = {**CHAT_NAMESPACE, "name": "docs", "allowed_delta_types": ["fossil"], "delta_publish": True}
CONFIG = {
    "channel": {"namespaces": [CHAT_NAMESPACE, DOCS]},
    "http_stream": {"enabled": True},
}


def versions(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Successive versions of one ~2 KB JSON document (with non-ASCII text)."""
    rnd = random.Random(seed)
    doc: dict[str, Any] = {
        "title": "inventaire — état",
        "items": [
            {"id": i, "name": f"article {i} ✓", "price": round(i * 1.5, 2), "stock": i % 7}
            for i in range(28)
        ],
    }
    out = []
    for n in range(count):
        item = rnd.choice(doc["items"])
        item["stock"] = rnd.randrange(100)
        if n % 5 == 4:
            doc["items"].insert(rnd.randrange(len(doc["items"])), {"id": 100 + n, "name": "neu ü"})
        if n % 9 == 8:
            doc["items"].pop(rnd.randrange(len(doc["items"])))
        if n % 13 == 12:
            doc["title"] = "".join(rnd.choice("abcdéf") for _ in range(40))
        doc["version"] = n
        out.append(json.loads(json.dumps(doc)))
    return out


# --- the encoder ----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    source=st.text(max_size=300),
    edits=st.lists(st.tuples(st.integers(0, 300), st.text(max_size=20)), max_size=6),
)
def test_patches_decode_with_the_python_sdk(source: str, edits: list[tuple[int, str]]) -> None:
    target = source
    for position, text in edits:
        target = target[:position] + text + target[position + len(text) // 2 :]
    old, new = source.encode(), target.encode()
    patch = fossil.create(old, new, text=True)
    patch.decode()  # valid UTF-8: it travels inside a JSON string
    assert bytes(apply_delta(old, patch)) == new
    assert bytes(apply_delta(old, fossil.create(old, new))) == new


def test_delta_frames_make_one_patch_and_send_whole_when_not_smaller() -> None:
    docs = versions(2)
    first = Publication(data=msgspec.Raw(json.dumps(docs[0]).encode()), offset=1)
    second = Publication(data=msgspec.Raw(json.dumps(docs[1]).encode()), offset=2)
    frames = DeltaFrames("docs:a", second, first)
    patched = json.loads(frames.frame(JSON, patch=True))["push"]["pub"]
    assert patched["delta"] is True
    assert bytes(apply_delta(bytes(first.data), patched["data"].encode())) == bytes(second.data)
    whole = json.loads(frames.frame(JSON, patch=False))["push"]["pub"]
    assert "delta" not in whole and json.loads(whole["data"]) == docs[1]
    (proto,) = decode_replies(frames.frame(PROTOBUF, patch=True))
    assert proto["push"]["pub"]["delta"] is True
    assert bytes(apply_delta(bytes(first.data), proto["push"]["pub"]["data"])) == bytes(second.data)
    assert frames.frame(JSON, patch=True) is frames.frame(JSON, patch=True)  # made once
    unrelated = Publication(data=msgspec.Raw(b'"' + b"x" * 64 + b'"'), offset=3)
    rewrite = DeltaFrames("docs:a", unrelated, first)
    sent = json.loads(rewrite.frame(JSON, patch=True))["push"]["pub"]
    assert "delta" not in sent  # a patch not smaller than the payload goes whole


# --- the SDKs -------------------------------------------------------------------------


class Collector(SubscriptionEventHandler):
    def __init__(self) -> None:
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()
        self.subscribed: asyncio.Queue[SubscribedContext] = asyncio.Queue()

    async def on_publication(self, ctx: PublicationContext) -> None:
        await self.publications.put(ctx)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        await self.subscribed.put(ctx)


PATCHED: list[bool] = []  # per publication the delta subscriber got: was it a patch?


async def next_data(collector: Collector) -> tuple[int, Any]:
    ctx = await asyncio.wait_for(collector.publications.get(), 5)
    PATCHED.append(bool(ctx.pub.delta))
    return ctx.pub.offset, ctx.pub.data


async def test_python_sdk_reconstructs_every_version(start_server: ServerFactory) -> None:
    server = await start_server(CONFIG)
    hub = server.hub
    channel = "docs:inventory"
    docs = versions(40)
    delta_sub, plain_sub = Collector(), Collector()
    client = Client(server.ws_url, token=server.token("ann"), name="delta-py")
    client.new_subscription(channel, delta_sub, delta=DeltaType.FOSSIL)
    plain = Client(server.ws_url, token=server.token("ben"), name="plain-py")
    plain.new_subscription(channel, plain_sub)
    try:
        await client.connect()
        await plain.connect()
        for collector, sub in ((delta_sub, client), (plain_sub, plain)):
            await sub.get_subscription(channel).subscribe()  # type: ignore[union-attr]
            await asyncio.wait_for(collector.subscribed.get(), 5)
        PATCHED.clear()
        for n, doc in enumerate(docs[:20], start=1):
            await hub.publish(channel, doc)
            assert await next_data(delta_sub) == (n, doc)
        patched = list(PATCHED)
        for n, doc in enumerate(docs[:20], start=1):
            assert await next_data(plain_sub) == (n, doc)
        # The first is whole, every later one a patch (small edits of a 2 KB document).
        assert patched == [False] + [True] * 19
        # A server-side disconnect; versions go on; the SDK recovers them whole.
        for session in hub.sessions_of("ann"):
            session.close(Disconnect.SHUTDOWN)
        for doc in docs[20:25]:
            await hub.publish(channel, doc)
        resubscribed = await asyncio.wait_for(delta_sub.subscribed.get(), 10)
        assert resubscribed.recovered
        for n, doc in enumerate(docs[20:], start=21):
            if n > 25:
                await hub.publish(channel, doc)
            assert await next_data(delta_sub) == (n, doc)
        page = await hub.history(channel, limit=-1)
        assert [json.loads(bytes(p.data)) for p in page.publications] == docs
        assert not any(p.delta for p in page.publications)
    finally:
        await client.disconnect()
        await plain.disconnect()


@pytest.mark.parametrize("mode", ["websocket", "http_stream", "http_stream+protobuf"])
async def test_js_sdk_reconstructs_every_version(start_server: ServerFactory, mode: str) -> None:
    server = await start_server(CONFIG)
    channel = f"docs:js-{mode.replace('+', '-')}"
    docs = versions(30, seed=11)
    scenario_mode = mode
    async with js_client(server, scenario_mode, channel, server.token("cy"), delta="fossil") as js:
        await js.next("connected", within=10)
        await js.next("subscribed")
        for doc in docs[:15]:
            await server.hub.publish(channel, doc)
        got = [(await js.next("publication"))["data"] for _ in range(15)]
        assert got == docs[:15]
        for session in server.hub.sessions_of("cy"):
            session.close(Disconnect.SHUTDOWN)
        for doc in docs[15:20]:
            await server.hub.publish(channel, doc)
        again = await js.next("subscribed", within=RECONNECT_DELAY_MS / 1000 + 10)
        assert again["recovered"] is True
        for doc in docs[20:]:
            await server.hub.publish(channel, doc)
        rest = [(await js.next("publication"))["data"] for _ in range(15)]
        assert rest == docs[15:]
        ok(await js.request("presence_stats"))
