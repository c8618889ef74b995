"""Hooks and proxies are one mechanism: each event and scope has exactly one decider.

With a Python hook registered AND a proxy configured for some scopes, every
event is decided once, by the proxy where one is configured and by the hook
elsewhere; the permission rules that come first (subscription token,
private and user-limited channels) are applied before either and never
reach them. Server-side refresh works the same way through ``on_refresh`` /
``on_sub_refresh`` hooks as through the refresh proxies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from hubbub.auth.tokens import make_token
from hubbub.hub.hooks import (
    ConnectDecision,
    ConnectEvent,
    PublishDecision,
    PublishEvent,
    RefreshDecision,
    RefreshEvent,
    SubRefreshDecision,
    SubRefreshEvent,
    SubscribeDecision,
    SubscribeEvent,
)
from hubbub.hub.hub import Hub
from tests.conftest import CHAT_NAMESPACE, RunningServer, ServerFactory
from tests.proxy_fixtures import PROXIED_NAMESPACE, Backend, proxy, start_backend
from tests.wsclient import connected_client, open_client


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    running = start_backend("aiohttp")
    yield running
    running.stop()


class Calls:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def mixed_config(backend: Backend) -> dict[str, Any]:
    """Proxies for the connect without token and for namespace ``proxied``; hooks elsewhere."""
    return {
        "client": {
            "allow_anonymous_connect_without_token": False,
            "proxy": {"connect": {"enabled": True, **proxy(backend, "connect")}},
        },
        "channel": {
            "proxy": {
                "subscribe": proxy(backend, "subscribe"),
                "publish": proxy(backend, "publish"),
            },
            "namespaces": [
                {**PROXIED_NAMESPACE, "sub_refresh_proxy_enabled": False},
                {**CHAT_NAMESPACE, "allow_user_limited_channels": True},
            ],
        },
    }


@pytest.fixture
async def mixed(start_server: ServerFactory, backend: Backend) -> tuple[RunningServer, Calls]:
    calls = Calls()

    def setup(hub: Hub) -> None:
        @hub.on_connect
        async def on_connect(event: ConnectEvent) -> ConnectDecision | None:
            calls.events.append(event)
            return None

        @hub.on_subscribe
        async def on_subscribe(event: SubscribeEvent) -> SubscribeDecision:
            calls.events.append(event)
            return SubscribeDecision(data={"by": "hook"})

        @hub.on_publish
        async def on_publish(event: PublishEvent) -> PublishDecision:
            calls.events.append(event)
            return PublishDecision(data={"hooked": event.data})

    server = await start_server(mixed_config(backend), setup=setup)
    return server, calls


async def test_each_scope_has_one_decider(
    mixed: tuple[RunningServer, Calls], backend: Backend
) -> None:
    server, calls = mixed
    before = {e: len(await backend.requests(e)) for e in ("connect", "subscribe", "publish")}
    # Connect without a token: the connect proxy decides, the hook is not asked.
    async with open_client(server.ws_url, headers={"Cookie": "user=pat"}) as client:
        await client.connect()
        assert calls.of(ConnectEvent) == []
        proxied = await client.result("subscribe", {"channel": "proxied:one"})
        hooked = await client.result("subscribe", {"channel": "chat:one"})
        await client.result("publish", {"channel": "proxied:one", "data": {"text": "a"}})
        await client.result("publish", {"channel": "chat:one", "data": {"text": "b"}})
        from_proxy = await client.push("proxied:one", "pub")
        from_hook = await client.push("chat:one", "pub")
    assert proxied["data"] == {"welcome": "proxied:one"}
    assert hooked["data"] == {"by": "hook"}
    assert from_proxy["data"]["text"] == "A"
    assert from_hook["data"] == {"hooked": {"text": "b"}}
    after = {e: len(await backend.requests(e)) for e in ("connect", "subscribe", "publish")}
    assert {e: after[e] - before[e] for e in after} == {"connect": 1, "subscribe": 1, "publish": 1}
    assert [e.channel for e in calls.of(SubscribeEvent)] == ["chat:one"]
    assert [e.channel for e in calls.of(PublishEvent)] == ["chat:one"]
    # Connect with a token: never proxied; the hook sees it (as without proxies).
    async with connected_client(server.ws_url, server.token("quinn")):
        pass
    [connect] = calls.of(ConnectEvent)
    assert connect.user == "quinn" and connect.token_present
    assert len(await backend.requests("connect")) == after["connect"]


async def test_rules_before_the_decider_are_applied_once(
    mixed: tuple[RunningServer, Calls], backend: Backend
) -> None:
    server, calls = mixed
    before = len(await backend.requests("subscribe"))
    async with connected_client(server.ws_url, server.token("rex")) as client:
        # A subscription token allows: neither proxy nor hook is asked.
        token = make_token(server.secret, "rex", extra={"channel": "proxied:tok"})
        await client.result("subscribe", {"channel": "proxied:tok", "token": token})
        # A private channel without a token is denied before anyone is asked.
        denied = await client.error("subscribe", {"channel": "$proxied:secret"})
        assert denied["code"] == 103
        # A user-limited channel admits its users only, without the hook.
        await client.result("subscribe", {"channel": "chat:dm#rex,sam"})
        limited = await client.error("subscribe", {"channel": "chat:dm#sam,tom"})
        assert limited["code"] == 103
    assert len(await backend.requests("subscribe")) == before
    assert calls.of(SubscribeEvent) == []


async def test_refresh_hooks_refresh_on_the_server(start_server: ServerFactory) -> None:
    refreshed: list[Any] = []

    def setup(hub: Hub) -> None:
        @hub.on_refresh
        async def on_refresh(event: RefreshEvent) -> RefreshDecision:
            refreshed.append(event)
            if len(refreshed) == 1:
                return RefreshDecision(expire_at=int(time.time()) + 1, info={"n": 1})
            return RefreshDecision(expired=True)

        @hub.on_sub_refresh
        async def on_sub_refresh(event: SubRefreshEvent) -> SubRefreshDecision:
            refreshed.append(event)
            return SubRefreshDecision(expired=True)

    server = await start_server(setup=setup)
    ttl_token = server.token("una", ttl=1, meta={"tier": 2})
    async with open_client(server.ws_url) as client:
        reply = await client.connect(ttl_token)
        assert "expires" not in reply["connect"]  # the server refreshes
        sub_token = make_token(server.secret, "una", ttl=1, extra={"channel": "chat:exp"})
        result = await client.result("subscribe", {"channel": "chat:exp", "token": sub_token})
        assert "expires" not in result
        push = await client.push("chat:exp", "unsubscribe", within=4.0)
        assert push["code"] == 2501  # the hook said expired
        # First refresh extends by 1 s, the second says expired: 3005.
        assert await client.wait_closed(within=6.0) == 3005
    connection_refreshes = [e for e in refreshed if isinstance(e, RefreshEvent)]
    assert len(connection_refreshes) == 2
    assert connection_refreshes[0].user == "una"
    assert connection_refreshes[0].meta == {"tier": 2}
    [sub_refresh] = [e for e in refreshed if isinstance(e, SubRefreshEvent)]
    assert sub_refresh.channel == "chat:exp"
