"""Shared poll subscriptions against a real backend process (tests/poll_backend.py).

centrifuge-js (tests/js/state.mjs) tracks keys with signatures from the
backend and receives what changes; the backend counts its requests, so the
tests check that a node polls once per cycle for the union of its clients'
keys, polls cold keys at once, pushes only changes, keeps quiet when the
backend fails (and backs off), and honours signatures and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.poll_signatures import sign
from tests.conftest import RunningServer, ServerFactory
from tests.map_fixtures import api
from tests.sdk_helpers import EventProcess
from tests.test_maps_js import WAIT, js_entries, js_state_client
from tests.test_sdk_js import js_dependencies  # noqa: F401
from tests.wsclient import connected_client

SECRET = "poll-test-secret"
BACKEND = Path(__file__).parent / "poll_backend.py"
OPEN = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}


class Backend:
    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"

    async def call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with aiohttp.ClientSession() as http:
            if body is None:
                async with http.get(self.url + path) as response:
                    return await response.json()
            async with http.post(self.url + path, json=body) as response:
                return await response.json()

    async def set(self, **fields: Any) -> None:
        await self.call("/set", fields)

    async def requests(self, channel: str) -> list[list[str]]:
        stats = await self.call("/stats")
        return [keys for name, keys in stats["requests"] if name == channel]


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BACKEND), SECRET, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), WAIT)
        yield Backend(process, int(line.split()[1]))
    finally:
        process.kill()
        await process.wait()


def poll_config(backend: Backend, **overrides: Any) -> dict[str, Any]:
    interval = overrides.pop("interval", "300ms")
    votes = {"refresh_interval": interval, **overrides}
    return {
        "shared_poll": {"hmac_secret_key": SECRET},
        "channel": {
            "proxy": {
                "shared_poll_refresh": {"endpoint": backend.url + "/refresh", "timeout": "2s"}
            },
            "namespaces": [
                {"name": "votes", "subscription_type": "shared_poll", "shared_poll": votes, **OPEN},
                {
                    "name": "prices",
                    "subscription_type": "shared_poll",
                    "shared_poll": {
                        "refresh_interval": interval,
                        "mode": "versioned",
                        "publish_enabled": True,
                    },
                    **OPEN,
                },
            ],
        },
    }


@contextlib.asynccontextmanager
async def tracking(
    server: RunningServer,
    backend: Backend,
    channel: str,
    keys: list[str],
    user: str = "u1",
    protobuf: bool = False,
) -> AsyncIterator[EventProcess]:
    token = server.token(user)
    async with js_state_client(server, token=token, label=user, protobuf=protobuf) as js:
        await js.request("poll", channel=channel, signUrl=f"{backend.url}/sign?user={user}")
        await js.next("subscribed", within=WAIT)
        await js.request("track", channel=channel, keys=keys)
        yield js


async def updates(js: EventProcess, count: int) -> list[dict[str, Any]]:
    return [await js.next("update", within=WAIT) for _ in range(count)]


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
async def test_cold_keys_come_at_once_then_only_changes(
    start_server: ServerFactory, backend: Backend, protobuf: bool
) -> None:
    for key, votes in (("p1", 1), ("p2", 2)):
        await backend.set(key=key, data={"votes": votes})
    server = await start_server(poll_config(backend, interval="30s"))
    started = time.monotonic()
    keys = ["p1", "p2", "p3"]
    async with tracking(server, backend, "votes:feed", keys, protobuf=protobuf) as js:
        first = await updates(js, 2)
        assert time.monotonic() - started < 5  # not the 30 s cycle: the cold poll
        assert {u["key"]: u["data"] for u in first} == {"p1": {"votes": 1}, "p2": {"votes": 2}}
        assert all(u["version"] == 1 for u in first)
        assert await backend.requests("votes:feed") == [["p1", "p2", "p3"]]


async def test_one_request_per_cycle_for_the_union_of_keys(
    start_server: ServerFactory, backend: Backend
) -> None:
    for key in ("a", "b", "c", "d"):
        await backend.set(key=key, data={"v": key})
    server = await start_server(poll_config(backend, interval="250ms"))
    async with (
        tracking(server, backend, "votes:x", ["a", "b"], user="u1") as one,
        tracking(server, backend, "votes:x", ["b", "c"], user="u2") as two,
        tracking(server, backend, "votes:x", ["c", "d"], user="u3") as three,
    ):
        for js in (one, two, three):
            await updates(js, 2)
        await backend.set(key="b", data={"v": "b2"})
        changed = [await js.next("update", within=WAIT) for js in (one, two)]
        assert [u["data"] for u in changed] == [{"v": "b2"}, {"v": "b2"}]
        assert changed[0]["version"] == 2
        before = len(await backend.requests("votes:x"))
        await asyncio.sleep(1.0)
        cycles = (await backend.requests("votes:x"))[before:]
        # About four cycles in one second: one request each, for every key tracked.
        assert 2 <= len(cycles) <= 6, cycles
        assert all(sorted(keys) == ["a", "b", "c", "d"] for keys in cycles)
        assert three.pending("update") == []  # nothing of c or d changed
        assert one.pending("update") == []


async def test_versioned_versions_removal_and_direct_publish(
    start_server: ServerFactory, backend: Backend
) -> None:
    await backend.set(key="btc", data={"p": 1}, version=10)
    server = await start_server(poll_config(backend))
    async with tracking(server, backend, "prices:all", ["btc", "eth"]) as js:
        update = await js.next("update", within=WAIT)
        assert (update["key"], update["data"], update["version"]) == ("btc", {"p": 1}, 10)
        reply = await api(
            server,
            "shared_poll_publish",
            {"channel": "prices:all", "key": "btc", "data": {"p": 2}, "version": 11},
        )
        assert reply == {"result": {}}
        update = await js.next("update", within=WAIT)
        assert (update["data"], update["version"]) == ({"p": 2}, 11)
        stale = {"channel": "prices:all", "key": "btc", "data": {"p": 0}, "version": 9}
        await api(server, "shared_poll_publish", stale)
        await backend.set(key="btc", removed=True)
        removed = await js.next("update", within=WAIT)
        assert removed["key"] == "btc" and removed["removed"] is True
        state = await js.request("state", channel="prices:all")
        assert state["tracked"] == ["eth"]
        versionless = {"channel": "votes:a", "key": "k", "data": 1, "version": 1}
        assert (await api(server, "shared_poll_publish", versionless))["error"]["code"] == 107


async def test_backend_failure_pushes_nothing_and_backs_off(
    start_server: ServerFactory, backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    await backend.set(key="k", data={"n": 1})
    server = await start_server(poll_config(backend, interval="200ms"))
    async with tracking(server, backend, "votes:f", ["k"]) as js:
        await js.next("update", within=WAIT)
        for failure in ("error", "http"):
            await backend.set(fail=failure)
            await backend.set(key="k", data={"n": "wrong"})
            before = len(await backend.requests("votes:f"))
            await asyncio.sleep(1.5)
            during = len(await backend.requests("votes:f")) - before
            assert 1 <= during <= 4, during  # backing off: fewer than 7 cycles
            assert js.pending("update") == []
            await backend.set(fail="", key="k", data={"n": f"right after {failure}"})
            update = await js.next("update", within=WAIT)
            assert update["data"] == {"n": f"right after {failure}"}
    assert not [r for r in caplog.records if r.name == "hubbub.proxy"]
    lines = [r.getMessage() for r in caplog.records if r.name == "hubbub.polls"]
    assert sum("gave no data" in line for line in lines) == 2, lines
    assert sum("answers again" in line for line in lines) == 2, lines
    assert not any(r.exc_info for r in caplog.records)


async def test_bounded_backend_concurrency(start_server: ServerFactory, backend: Backend) -> None:
    await backend.set(fail="slow")
    config = poll_config(backend, interval="100ms", refresh_batch_size=1)
    config["shared_poll"]["concurrency_limit"] = 2
    server = await start_server(config)
    keys = [f"k{i}" for i in range(6)]
    for key in keys:
        await backend.set(key=key, data=1)
    async with tracking(server, backend, "votes:c", keys):
        await asyncio.sleep(1.5)
    stats = await backend.call("/stats")
    assert len(stats["requests"]) >= 4
    assert stats["max_in_flight"] == 2


async def test_revoked_and_unsigned_keys(start_server: ServerFactory, backend: Backend) -> None:
    await backend.set(revoke=["secret"])
    server = await start_server(poll_config(backend))
    async with tracking(server, backend, "votes:r", ["open", "secret"]) as js:
        revoked = await js.next("update", within=WAIT)
        assert revoked["key"] == "secret" and revoked["removed"] is True
        forged = {"items": [{"key": "x", "version": 0}], "signature": "1:0:deadbeef"}
        await js.request("track_signed", channel="votes:r", **forged)
        error = await js.next("sub_error", within=WAIT)
        assert (error["type"], error["error"]["code"]) == ("track", 103)


async def test_track_rules_on_the_wire(start_server: ServerFactory, backend: Backend) -> None:
    await backend.set(key="k1", data={"n": 1})
    config = poll_config(backend, interval="30s", max_keys_per_connection=2)
    server = await start_server(config)
    channel = "votes:w"
    now = int(time.time())
    async with connected_client(server.ws_url, server.token("w1")) as first:
        result = await first.result("subscribe", {"channel": channel, "type": 4})
        assert result["epoch"]
        signature = sign(SECRET, "w1", channel, ["k1"], now, now + 100)
        reply = await first.result(
            "sub_refresh",
            {
                "channel": channel,
                "type": 1,
                "track": [{"signature": signature, "items": [{"key": "k1"}]}],
            },
        )
        assert reply["expires"] is True and 95 <= reply["ttl"] <= 100
        pub = await first.push(channel, "pub")
        assert (pub["key"], pub["data"], pub["version"]) == ("k1", {"n": 1}, 1)
        async with connected_client(server.ws_url, server.token("w2")) as second:
            await second.result("subscribe", {"channel": channel, "type": 4})
            mine = sign(SECRET, "w2", channel, ["k1"], now, 0)
            track = {
                "channel": channel,
                "type": 1,
                "track": [{"signature": mine, "items": [{"key": "k1"}]}],
            }
            reply = await second.result("sub_refresh", track)
            # The node has k1 already: it comes in the reply, no backend call.
            assert reply["items"] == [{"data": {"n": 1}, "key": "k1", "version": 1}]
            assert "expires" not in reply
            other = sign(SECRET, "w1", channel, ["k1"], now, 0)  # signed for someone else
            bad = {**track, "track": [{"signature": other, "items": [{"key": "k1"}]}]}
            assert (await second.error("sub_refresh", bad))["code"] == 103
            old = sign(SECRET, "w2", channel, ["k1"], now - 200, now - 100)
            expired = {**track, "track": [{"signature": old, "items": [{"key": "k1"}]}]}
            assert (await second.error("sub_refresh", expired))["code"] == 109
            three = ["a", "b", "c"]
            many = sign(SECRET, "w2", channel, three, now, 0)
            limit = {**track, "track": [{"signature": many, "items": [{"key": k} for k in three]}]}
            assert (await second.error("sub_refresh", limit))["code"] == 106
        assert await backend.requests(channel) == [["k1"]]


async def test_epoch_change_makes_subscribers_reload(
    start_server: ServerFactory, backend: Backend
) -> None:
    await backend.set(key="e", data={"n": 1}, version=5, epoch="one")
    server = await start_server(poll_config(backend, interval="200ms"))
    async with tracking(server, backend, "prices:e", ["e"]) as js:
        await js.next("update", within=WAIT)
        await backend.set(key="e", data={"n": 2}, version=1, epoch="two")
        resubscribing = await js.next("subscribing", where=lambda e: e["code"] == 2500, within=WAIT)
        assert resubscribing["channel"] == "prices:e"
        update = await js.next("update", within=WAIT)
        assert (update["data"], update["version"]) == ({"n": 2}, 1)
        assert await js_entries(js, "prices:e") == {"e": {"n": 2}}


def test_config_needs_a_refresh_proxy() -> None:
    from hubbub.config.loader import load_config
    from hubbub.errors import ConfigError
    from tests.conftest import DEFAULT_CONFIG, merge

    data = merge(
        DEFAULT_CONFIG,
        {
            "shared_poll": {"hmac_secret_key": "s"},
            "channel": {"namespaces": [{"name": "votes", "subscription_type": "shared_poll"}]},
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=data)
    assert caught.value.key == "channel.namespaces[0].shared_poll.proxy_name", caught.value
    assert "channel.proxy.shared_poll_refresh.endpoint" in caught.value.message
