"""Hostile clients: floods (a client that never reads, 20000 pings, 20000 commands
on one connection, a connect/disconnect burst).

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout (tests/hostile_helpers.py); after
the case it must still publish and receive within a second, and every
publication the server acknowledged during the test must be in history. No case
may make hubbub log a traceback, and a hostile connection is at most one log
line. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from tests.conftest import RunningServer
from tests.hostile_helpers import (
    BYSTANDER_CHANNEL,
    HOST,
    ROUND_TRIP,
    api_call,
    bystander,
    no_hubbub_tracebacks,  # noqa: F401 (autouse fixture)
    raw_connected,
    rss_bytes,
)
from tests.rawws import OP_PING, OP_PONG, OP_TEXT, RawWS, build_frame, text

# --- floods --------------------------------------------------------------------------


async def test_client_that_never_reads_is_closed_as_slow(server: RunningServer) -> None:
    """A channel floods a subscriber that stops reading: 3008, and memory stays bounded."""
    limit = server.hub.config.client.queue_max_size
    payload = {"blob": "y" * 4000}
    async with bystander(server):
        ws = await raw_connected(server, rcvbuf=4096)
        try:
            reply = await ws.reply(await ws.command("subscribe", {"channel": "flood"}))
            assert "subscribe" in reply, reply
            victim = next(s for s in server.hub.sessions.values() if s.user == "hostile")
            before = peak = rss_bytes()
            published = 0
            deadline = time.monotonic() + 20.0
            # Bounded: at most 5000 x 4 KB = 20 MB offered, or 20 s.
            while published < 5000 and time.monotonic() < deadline:
                await server.hub.publish("flood", payload)
                published += 1
                await asyncio.sleep(0)  # let the flush run
                if published % 100 == 0:
                    peak = max(peak, rss_bytes())
                    if victim.client_id not in server.hub.sessions:
                        break
            assert victim.client_id not in server.hub.sessions, (
                f"still subscribed after {published} publications"
            )
            sent_bytes = published * 4000
            assert sent_bytes < 64 * limit, sent_bytes  # closed long before 64 queues' worth
            growth = max(peak, rss_bytes()) - before
            assert growth < 64 * 2**20, f"RSS grew {growth / 2**20:.1f} MB"
            frame = await ws.read_close(within=10)
            assert frame is not None, "TCP closed without a close frame"
            assert frame.close_code == 3008, frame
        finally:
            ws.abort()
        assert "flood" not in server.hub.channel_counts()


async def test_20000_websocket_pings(server: RunningServer) -> None:
    """Pings are answered with pongs (or the peer is closed); the server stays responsive."""
    count = 20_000
    async with bystander(server) as watcher:
        ws = await raw_connected(server)
        pongs = 0
        close_code: int | None = None

        async def read_pongs() -> None:
            nonlocal pongs, close_code
            while pongs < count:
                try:
                    frame = await ws.read_frame(within=10)
                except (asyncio.IncompleteReadError, ConnectionError):
                    close_code = -1
                    return
                if frame.opcode == OP_PONG:
                    pongs += 1
                elif frame.opcode == 0x8:
                    close_code = frame.close_code
                    return

        reader = asyncio.create_task(read_pongs())
        try:
            trips = []
            for batch in range(20):
                with contextlib.suppress(ConnectionError):
                    await ws.send(
                        *(
                            build_frame(b"%d" % (batch * 1000 + i), opcode=OP_PING)
                            for i in range(1000)
                        )
                    )
                if batch % 5 == 4:
                    trips.append(await watcher.round_trip())
            async with asyncio.timeout(20):
                await reader
            trips.append(await watcher.round_trip())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            ws.abort()
        assert pongs == count or close_code is not None, (pongs, close_code)
        assert max(trips) < ROUND_TRIP, trips


async def test_20000_commands_on_one_connection(server: RunningServer) -> None:
    """All answered, or refused with 111 and then closed with 3013 (command rate limit)."""
    count = 20_000
    async with bystander(server) as watcher:
        ws = await raw_connected(server)
        first_id = ws.new_id() + 1
        ids = range(first_id, first_id + count)
        frames = b"".join(
            text({"id": i, "presence_stats": {"channel": BYSTANDER_CHANNEL}}) for i in ids
        )
        answered = refused = other = 0
        close_code: int | None = None

        async def read_replies() -> None:
            nonlocal answered, refused, other, close_code
            while answered + refused + other < count:
                try:
                    frame = await ws.read_frame(within=10)
                except (asyncio.IncompleteReadError, ConnectionError):
                    close_code = -1
                    return
                if frame.opcode == 0x8:
                    close_code = frame.close_code
                    return
                if frame.opcode != OP_TEXT:
                    continue
                for line in frame.payload.split(b"\n"):
                    message = json.loads(line)
                    if "presence_stats" in message:
                        answered += 1
                    elif message.get("error", {}).get("code") == 111:
                        refused += 1
                    elif message:
                        other += 1

        reader = asyncio.create_task(read_replies())
        try:
            ws.writer.write(frames)
            trip = await watcher.round_trip()
            async with asyncio.timeout(30):
                await reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            ws.abort()
        outcome = (answered, refused, other, close_code)
        assert other == 0, outcome
        assert (answered == count and close_code is None) or (
            refused >= 1 and close_code == 3013
        ), outcome
        assert trip < ROUND_TRIP, trip


async def test_connect_disconnect_burst(server: RunningServer) -> None:
    """2000 open + connect + subscribe + close, 100 at a time: nothing leaks."""
    total, concurrency = 2000, 100
    failures: list[BaseException] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            try:
                ws = await RawWS.open(HOST, server.port)
            except (OSError, AssertionError, TimeoutError) as exc:
                failures.append(exc)
                return
            try:
                # connect and subscribe in one frame: several commands per frame
                await ws.send(
                    build_frame(
                        b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:burst"}}'
                    )
                )
                await ws.reply(2)
                if n % 2:
                    await ws.close()  # a polite close frame ...
                else:
                    ws.abort()  # ... or the TCP connection just drops
            except (OSError, AssertionError, TimeoutError, asyncio.IncompleteReadError) as exc:
                failures.append(exc)
                ws.abort()

    async with bystander(server) as watcher:
        started = time.monotonic()
        async with asyncio.timeout(60):
            await asyncio.gather(*(one(n) for n in range(total)))
        elapsed = time.monotonic() - started
        assert not failures, (len(failures), failures[:3])
        await watcher.assert_alive()
        for _ in range(200):  # up to 10 s for the closes to be processed
            if len(server.hub.sessions) == 1 and set(server.hub.channel_counts()) == {
                BYSTANDER_CHANNEL
            }:
                break
            await asyncio.sleep(0.05)
        await server.hub.wait_idle()
        assert [s.user for s in server.hub.sessions.values()] == ["bystander"]
        assert server.hub.channel_counts() == {BYSTANDER_CHANNEL: 1}, elapsed
        stats = server.hub.stats()
        assert (stats["num_clients"], stats["num_subs"]) == (1, 1), stats
        # Presence must not keep the 2000 anonymous clients either.
        body = await api_call(server, "presence", {"channel": "chat:burst"})
        assert body["result"]["presence"] == {}, body
