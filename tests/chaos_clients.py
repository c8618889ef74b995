"""The chaos run's subscribers: real SDK clients that record what they are told and receive.

``PythonClient`` is a centrifuge-python client (client-side subscriptions to
every channel, or server-side ones from its connection token);
``JsClient`` is a centrifuge-js client under Node (tests/js/client.mjs, one
client-side subscription). Both reconnect and resubscribe by themselves, with
recovery, and keep a ``ClientRecord``: per channel, the events the accounting
reads (tests/chaos_accounting.py), and the codes they were disconnected or
unsubscribed with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectingContext,
    DisconnectedContext,
    PublicationContext,
    ServerPublicationContext,
    ServerSubscribedContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionEventHandler,
)

from hubbub.auth.tokens import make_token
from tests.chaos_accounting import Event, Received, Subscribed
from tests.conftest import SECRET
from tests.sdk_helpers import EventProcess

JS_DIR = Path(__file__).parent / "js"
TOKEN_TTL = 24 * 3600
# Reconnect and resubscribe backoff of every client, seconds.
MIN_DELAY, MAX_DELAY = 0.1, 1.0


class ClientRecord:
    """What one client reported, per channel."""

    sdk = ""

    def __init__(self, name: str, route: str, channels: Sequence[str], server_side: bool) -> None:
        self.name = name
        self.route = route
        self.server_side = server_side
        self.logs: dict[str, list[Event]] = {channel: [] for channel in channels}
        self.last: dict[str, int] = {channel: 0 for channel in channels}  # highest n received
        self.connecting: Counter[int] = Counter()  # codes that made it reconnect
        self.unsubscribed: Counter[int] = Counter()  # codes that made a subscription resubscribe
        self.final: list[int] = []  # disconnected codes (it stopped reconnecting)
        self.connects = 0
        self.closing = False

    def subscribed(
        self, channel: str, was_recovering: bool, recovered: bool, position: Any
    ) -> None:
        self.logs[channel].append(
            Subscribed(
                was_recovering=was_recovering,
                recovered=recovered,
                epoch=position.epoch if position is not None else "",
                offset=position.offset if position is not None else 0,
                at=time.monotonic(),
            )
        )

    def received(self, channel: str, offset: int, data: Any) -> None:
        n = int(data["n"])
        self.logs[channel].append(Received(n=n, offset=offset))
        self.last[channel] = max(self.last[channel], n)

    def disconnected(self, code: int) -> None:
        if not self.closing:
            self.final.append(code)

    async def ready(self, within: float) -> None:
        """Every channel has a first subscribe result."""
        try:
            async with asyncio.timeout(within):
                while not all(self.logs.values()):  # noqa: ASYNC110 - polled, bounded
                    await asyncio.sleep(0.05)
        except TimeoutError:
            missing = [channel for channel, log in self.logs.items() if not log]
            raise TimeoutError(
                f"client {self.name} ({self.route}) not subscribed to {missing} within "
                f"{within:g}s; {self.describe()}"
            ) from None

    def describe(self) -> str:
        """What the client went through so far (for a failure message)."""
        return (
            f"connects {self.connects}, reconnect codes {dict(self.connecting)}, "
            f"resubscribe codes {dict(self.unsubscribed)}, final {self.final}"
        )


class PythonClient(ClientRecord, ClientEventHandler):
    """A centrifuge-python client."""

    sdk = "py"

    def __init__(self, name: str, url: str, route: str, channels: Sequence[str], server_side: bool):
        super().__init__(name, route, channels, server_side)
        extra: dict[str, Any] = {"channels": list(channels)} if server_side else {}
        self.client = Client(
            url,
            events=self,
            token=make_token(SECRET, name, ttl=TOKEN_TTL, extra=extra),
            proxy=None,
            timeout=3.0,
            max_server_ping_delay=3.0,
            min_reconnect_delay=MIN_DELAY,
            max_reconnect_delay=MAX_DELAY,
        )
        if not server_side:
            for channel in channels:
                self.client.new_subscription(
                    channel,
                    _Subscription(self, channel),
                    min_resubscribe_delay=MIN_DELAY,
                    max_resubscribe_delay=MAX_DELAY,
                )

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.connecting[ctx.code] += 1

    async def on_connected(self, ctx: Any) -> None:
        self.connects += 1

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.disconnected(ctx.code)

    async def on_subscribed(self, ctx: ServerSubscribedContext) -> None:
        self.subscribed(ctx.channel, ctx.was_recovering, ctx.recovered, ctx.stream_position)

    async def on_publication(self, ctx: ServerPublicationContext) -> None:
        self.received(ctx.channel, ctx.pub.offset, ctx.pub.data)

    async def start(self) -> None:
        await asyncio.wait_for(self.client.connect(), 10)
        for channel in self.logs:
            sub = self.client.get_subscription(channel)
            if sub is not None:
                await sub.subscribe()

    async def stop(self) -> None:
        self.closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.disconnect(), 5)


class _Subscription(SubscriptionEventHandler):
    def __init__(self, owner: PythonClient, channel: str) -> None:
        self.owner = owner
        self.channel = channel

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.owner.subscribed(self.channel, ctx.was_recovering, ctx.recovered, ctx.stream_position)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.owner.received(self.channel, ctx.pub.offset, ctx.pub.data)

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        if ctx.code >= 2000:  # not the first subscribe() call
            self.owner.unsubscribed[ctx.code] += 1


class _Position:
    __slots__ = ("epoch", "offset")

    def __init__(self, fields: dict[str, Any] | None) -> None:
        self.epoch = str((fields or {}).get("epoch", ""))
        self.offset = int((fields or {}).get("offset", 0))


class JsClient(ClientRecord):
    """A centrifuge-js client under Node, subscribed to one channel."""

    sdk = "js"

    def __init__(self, name: str, url: str, route: str, channel: str) -> None:
        super().__init__(name, route, [channel], server_side=False)
        self.channel = channel
        self.scenario = {
            "url": url,
            "token": make_token(SECRET, name, ttl=TOKEN_TTL),
            "channel": channel,
            "name": f"chaos-{name}",
            "minReconnectDelay": int(MIN_DELAY * 1000),
            "maxReconnectDelay": int(MAX_DELAY * 1000),
            "minResubscribeDelay": int(MIN_DELAY * 1000),
            "maxResubscribeDelay": int(MAX_DELAY * 1000),
        }
        self.process: EventProcess | None = None
        self.errors: list[dict[str, Any]] = []

    def describe(self) -> str:
        described = super().describe()
        if self.process is not None:
            described += "\n" + self.process.describe()[-3000:]
        return described

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "publication":
            self.received(self.channel, int(event.get("offset") or 0), event["data"])
        elif kind == "subscribed":
            position = _Position(event.get("streamPosition"))
            self.subscribed(self.channel, event["wasRecovering"], event["recovered"], position)
        elif kind == "connecting":
            self.connecting[int(event["code"])] += 1
        elif kind == "connected":
            self.connects += 1
        elif kind == "disconnected":
            self.disconnected(int(event["code"]))
        elif kind == "subscribing" and int(event["code"]) >= 2000:
            self.unsubscribed[int(event["code"])] += 1
        elif kind == "fatal":
            self.final.append(-1)
        elif kind in ("error", "sub_error"):
            self.errors.append(event)

    async def start(self) -> None:
        self.process = await EventProcess.start(
            "node",
            str(JS_DIR / "client.mjs"),
            json.dumps(self.scenario),
            cwd=JS_DIR,
            label=f"js client {self.name}",
            listener=self._event,
        )

    async def stop(self) -> None:
        self.closing = True
        if self.process is not None:
            if self.process.process.returncode is not None:
                self.final.append(-1)  # Node exited by itself: the client was gone
            await self.process.close({"cmd": "exit"})
