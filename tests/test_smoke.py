"""A first end-to-end check with the real centrifuge-python SDK."""

from __future__ import annotations

import asyncio

from centrifuge import Client, PublicationContext, SubscriptionEventHandler

from tests.conftest import RunningServer


async def test_python_sdk_publish_and_receive(server: RunningServer) -> None:
    received: asyncio.Queue[object] = asyncio.Queue()

    class Handler(SubscriptionEventHandler):
        async def on_publication(self, ctx: PublicationContext) -> None:
            await received.put(ctx.pub.data)

    client = Client(server.ws_url)
    await client.connect()
    sub = client.new_subscription("chat:smoke", Handler())
    await sub.subscribe()
    await sub.ready(timeout=5)
    await sub.publish({"text": "hello"})
    assert await asyncio.wait_for(received.get(), 5) == {"text": "hello"}
    await client.disconnect()
