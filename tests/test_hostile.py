"""Hostile clients: protocol abuse, malformed frames and handshakes, floods, origins.

Each socket case runs against a real server (``start_server``) while a
"bystander" client stays connected throughout; after the case it must still
publish and receive within a second, and every publication the server
acknowledged during the test (publish replies without error, API results) must
be in history. Malformed WebSocket frames and handshakes are sent with
``tests/rawws.py``, a client that writes every byte itself. Every loop is
bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.protocol.codec import METHODS as COMMAND_METHODS
from tests.conftest import DEFAULT_CONFIG, RunningServer, ServerFactory
from tests.rawws import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawWS,
    build_frame,
    handshake_request,
    http_exchange,
    text,
)
from tests.wsclient import WSClient, connected_client, open_client

HOST = "127.0.0.1"
BYSTANDER_CHANNEL = "chat:bystander"
ROUND_TRIP = 1.0  # seconds: the bystander's publish -> own pub push, under load too


# --- helpers -------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident set (the server runs in-process)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def api_call(server: RunningServer, method: str, params: dict[str, Any]) -> Any:
    """One server API call; the decoded response body."""
    async with asyncio.timeout(5), aiohttp.ClientSession() as http:
        response = await http.post(
            f"{server.api_url}/{method}", json=params, headers={"X-API-Key": server.api_key}
        )
        async with response:
            return await response.json()


class Bystander:
    """A client connected throughout a case; it keeps a ledger of acknowledged publications."""

    def __init__(self, server: RunningServer, client: WSClient) -> None:
        self.server = server
        self.client = client
        self.acked: list[tuple[str, Any]] = []  # (channel, data) the server acknowledged

    async def round_trip(self) -> float:
        """Publish into its channel and receive its own publication; the seconds it took."""
        data = {"alive": uuid.uuid4().hex}
        started = time.monotonic()
        await self.client.result(
            "publish", {"channel": BYSTANDER_CHANNEL, "data": data}, within=ROUND_TRIP * 5
        )
        self.acked.append((BYSTANDER_CHANNEL, data))
        for _ in range(1000):
            pub = await self.client.push(BYSTANDER_CHANNEL, "pub", within=ROUND_TRIP * 5)
            if pub["data"] == data:
                return time.monotonic() - started
        raise AssertionError("own publication never arrived")

    async def api_publish(self) -> None:
        """Publish through the server API (``/api/publish``); recorded when acknowledged."""
        data = {"api": uuid.uuid4().hex}
        body = await api_call(self.server, "publish", {"channel": BYSTANDER_CHANNEL, "data": data})
        assert "result" in body, body
        self.acked.append((BYSTANDER_CHANNEL, data))

    async def assert_alive(self) -> None:
        assert self.client.close_code is None, f"bystander closed with {self.client.close_code}"
        took = await self.round_trip()
        assert took < ROUND_TRIP, f"bystander round trip took {took:.2f}s"
        await self.api_publish()

    async def assert_history(self) -> None:
        """Every acknowledged publication is in its channel's history."""
        channels = {channel for channel, _ in self.acked}
        for channel in channels:
            page = await self.server.hub.history(channel, limit=-1)
            stored = [json.loads(bytes(p.data)) for p in page.publications]
            missing = [d for c, d in self.acked if c == channel and d not in stored]
            assert not missing, f"acknowledged but not in history of {channel}: {missing[:3]}"


@contextlib.asynccontextmanager
async def bystander(server: RunningServer) -> AsyncIterator[Bystander]:
    """A second client, alive before and after the case, with the history check at the end."""
    async with connected_client(
        server.ws_url, server.token("bystander"), channels=(BYSTANDER_CHANNEL,)
    ) as client:
        watcher = Bystander(server, client)
        await watcher.assert_alive()
        yield watcher
        await watcher.assert_alive()
        await watcher.assert_history()


async def raw_connected(server: RunningServer, user: str = "hostile", **kwargs: Any) -> RawWS:
    """A raw WebSocket that has sent connect (with a token for ``user``) and got its reply."""
    ws = await RawWS.open(HOST, server.port, **kwargs)
    params = {"token": server.token(user)} if user else {}
    reply = await ws.reply(await ws.command("connect", params))
    assert "connect" in reply, reply
    return ws


@pytest.fixture(autouse=True)
def no_hubbub_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No case may make hubbub log an error with a traceback (an unhandled exception),
    and a hostile connection is at most one line at the default level (info), however
    many bad frames or commands it sends."""
    caplog.set_level(logging.INFO, logger="hubbub")
    yield
    bad = [
        r
        for r in caplog.records
        if r.name.startswith("hubbub") and r.levelno >= logging.ERROR and r.exc_info
    ]
    assert not bad, [f"{r.name}: {r.getMessage()}" for r in bad]
    per_client: dict[str, list[str]] = {}
    for r in caplog.records:
        client = getattr(r, "fields", {}).get("client")
        if r.name.startswith("hubbub") and client:
            per_client.setdefault(client, []).append(r.getMessage())
    noisy = {client: lines for client, lines in per_client.items() if len(lines) > 1}
    assert not noisy, noisy


# --- protocol violations -------------------------------------------------------------

PRESENCE_STATS = json.dumps({"id": 7, "presence_stats": {"channel": BYSTANDER_CHANNEL}})


@pytest.mark.parametrize(
    ("connect_first", "frame"),
    [
        (False, PRESENCE_STATS),  # a command before connect
        (True, json.dumps({"id": 7, "connect": {}})),  # a second connect
        (True, json.dumps({"id": 7, "frobnicate": {}})),  # an unknown method
        (True, "{}"),  # a pong without a pending ping
        (True, json.dumps({"presence_stats": {"channel": BYSTANDER_CHANNEL}})),  # no id
        (True, "{not json"),  # invalid JSON
        (True, '{"id": 7, "presence_stats": {"channel": "a"}'),  # truncated JSON
        (True, "[1, 2, 3]"),  # JSON, not an object
        (True, "42"),
        (True, '"a string"'),
        (True, "null"),
        (True, json.dumps({"id": "7", "presence_stats": {"channel": "a"}})),  # id a string
        (True, json.dumps({"id": 7, "presence_stats": []})),  # params a list
        (True, json.dumps({"id": 7, "publish": {"channel": 5, "data": {}}})),  # channel a number
        (True, json.dumps({"id": -1, "presence_stats": {"channel": "a"}})),  # negative id
        (True, json.dumps({"id": 2**32, "presence_stats": {"channel": "a"}})),  # id > uint32
        (True, json.dumps({"id": 7, "publish": {"channel": "a"}, "history": {"channel": "a"}})),
    ],
    ids=[
        "before-connect",
        "second-connect",
        "unknown-method",
        "empty-object",
        "id-less",
        "invalid-json",
        "truncated-json",
        "array",
        "number",
        "string",
        "null",
        "string-id",
        "list-params",
        "numeric-channel",
        "negative-id",
        "id-overflow",
        "two-methods",
    ],
)
async def test_protocol_violation_closes_3501(
    server: RunningServer, connect_first: bool, frame: str
) -> None:
    async with bystander(server), open_client(server.ws_url) as client:
        if connect_first:
            assert "connect" in await client.connect(server.token("hostile"))
        await client.send_text(frame)
        assert await client.wait_closed(within=2) == 3501


async def test_binary_frame_closes_3506(server: RunningServer) -> None:
    async with bystander(server), open_client(server.ws_url) as client:
        assert "connect" in await client.connect(server.token("hostile"))
        await client.send_bytes(PRESENCE_STATS.encode())
        assert await client.wait_closed() == 3506


# --- sizes and depth -----------------------------------------------------------------


async def test_ten_megabyte_string_closes_1009(server: RunningServer) -> None:
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            payload = json.dumps({"id": 2, "publish": {"channel": "chat:big", "data": "x" * 10**7}})
            ws.writer.write(build_frame(payload))  # no drain: the server stops reading early
            assert await ws.read_close_code() == 1009
            assert await ws.eof(), "TCP still open after the 1009 close"
        finally:
            ws.abort()


async def test_publish_just_under_the_size_limit(server: RunningServer) -> None:
    limit = server.hub.config.websocket.message_size_limit
    async with bystander(server) as watcher, open_client(server.ws_url) as client:
        assert "connect" in await client.connect(server.token("hostile"))
        skeleton = json.dumps({"id": 1, "publish": {"channel": "chat:big", "data": {"s": ""}}})
        data = {"s": "x" * (limit - len(skeleton) - 16)}
        reply = await client.call("publish", {"channel": "chat:big", "data": data})
        if "error" in reply:
            assert reply["error"]["code"] == 107, reply
        else:
            assert "publish" in reply, reply  # observed: accepted
            watcher.acked.append(("chat:big", data))
        await client.no_close(0.2)


async def test_deeply_nested_data_is_refused_without_traceback(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """50 000 nested arrays in ``data`` (100 KB, under a raised frame limit)."""
    server = await start_server({"websocket": {"message_size_limit": 262144}})
    depth = 50_000
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            frame = (
                b'{"id":2,"publish":{"channel":"chat:deep","data":'
                + b"[" * depth
                + b"]" * depth
                + b"}}"
            )
            await ws.send(build_frame(frame))
            try:
                reply = await ws.reply(2)
            except AssertionError as closed:  # RawWS.messages saw the close frame
                assert "closed 3501" in str(closed), closed
            else:
                assert reply.get("error", {}).get("code") == 107, reply
        finally:
            ws.abort()
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


# --- frames the WebSocket layer must refuse ------------------------------------------

STATS_FRAME = json.dumps({"id": 2, "presence_stats": {"channel": BYSTANDER_CHANNEL}}).encode()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(build_frame(STATS_FRAME, mask=False), 1002, id="unmasked"),
        pytest.param(build_frame(STATS_FRAME, rsv=4), 1002, id="rsv1-without-deflate"),
        pytest.param(build_frame(STATS_FRAME, rsv=2), 1002, id="rsv2"),
        pytest.param(build_frame(STATS_FRAME, rsv=1), 1002, id="rsv3"),
        pytest.param(build_frame(b"x", opcode=0x3), 1002, id="opcode-3"),
        pytest.param(build_frame(b"x", opcode=0xB), 1002, id="opcode-0xB"),
        pytest.param(build_frame(b"x", opcode=OP_PING, fin=False), 1002, id="ping-without-fin"),
        pytest.param(build_frame(b"x" * 126, opcode=OP_PING), 1002, id="ping-126-bytes"),
        pytest.param(build_frame(b"x", opcode=OP_CONTINUATION), 1002, id="orphan-continuation"),
        pytest.param(
            build_frame(b'{"id":2,', fin=False) + build_frame(b"1}", opcode=OP_TEXT),
            1002,
            id="text-inside-fragmented-text",
        ),
        pytest.param(
            build_frame(b'{"id":2,"presence_stats":{"channel":"\xff\xfe"}}'),
            1007,
            id="invalid-utf8",
        ),
        pytest.param(
            build_frame(b"\xed\xa0\x80"), 1007, id="utf8-surrogate"
        ),  # CESU surrogate: invalid UTF-8
        pytest.param(build_frame(b"abc", length=2**62), 1009, id="length-2^62"),
        pytest.param(build_frame(b"abc", length=2**63 + 1), 1002, id="length-above-2^63"),
    ],
)
async def test_invalid_frames_are_refused(server: RunningServer, frame: bytes, code: int) -> None:
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            await ws.send(frame)
            assert await ws.read_close_code(within=2) == code
            assert await ws.eof(), "TCP still open after the close frame"
        finally:
            ws.abort()


async def test_text_in_5000_one_byte_fragments_is_reassembled(server: RunningServer) -> None:
    """Observed behaviour: aiohttp reassembles the fragments; the command is answered."""
    message = STATS_FRAME.ljust(5000)  # trailing whitespace is valid JSON
    frames = [build_frame(message[:1], fin=False)]
    frames += [
        build_frame(message[i : i + 1], opcode=OP_CONTINUATION, fin=False)
        for i in range(1, len(message) - 1)
    ]
    frames.append(build_frame(message[-1:], opcode=OP_CONTINUATION))
    assert len(frames) == 5000
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            await ws.send(*frames)
            reply = await ws.reply(2, within=5)
            assert reply["presence_stats"]["num_clients"] >= 1, reply
        finally:
            ws.abort()


async def test_fragmented_message_above_the_limit_closes_1009(server: RunningServer) -> None:
    """The size limit counts the reassembled message, not each fragment."""
    limit = server.hub.config.websocket.message_size_limit
    chunk = b" " * 8192
    frames = [build_frame(chunk, fin=False)]
    frames += [
        build_frame(chunk, opcode=OP_CONTINUATION, fin=False) for _ in range(limit // 8192 + 1)
    ]
    async with bystander(server):
        ws = await raw_connected(server)
        try:
            ws.writer.write(b"".join(frames))
            assert await ws.read_close_code() == 1009
        finally:
            ws.abort()


# --- handshakes ----------------------------------------------------------------------


async def test_slowloris_handshake_is_closed_in_bounded_time(server: RunningServer) -> None:
    """One header line a second, forever: the server must hang up within 15 s."""
    async with bystander(server):
        reader, writer = await asyncio.open_connection(HOST, server.port)
        started = time.monotonic()
        lines = handshake_request(HOST, server.port)[:-1]  # never the final blank line
        lines += [f"X-Slow-{i}: v\r\n".encode() for i in range(20)]
        closed_after: float | None = None
        try:
            for line in lines:
                try:
                    writer.write(line)
                    await writer.drain()
                    async with asyncio.timeout(1.0):
                        data = await reader.read(4096)
                except TimeoutError:
                    if time.monotonic() - started > 15.0:
                        break
                    continue
                except ConnectionError:
                    closed_after = time.monotonic() - started
                    break
                # An answer (e.g. 408) or EOF: the server gave up on us.
                closed_after = time.monotonic() - started
                assert not data.startswith(b"HTTP/1.1 101"), data
                break
        finally:
            writer.transport.abort()
        assert closed_after is not None, "slow handshake still open after 15 s"
        assert closed_after <= 15.0
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "extra",
    [
        [f"X-Header-{i}: v" for i in range(200)],
        ["X-Big: " + "a" * 20_000],
        ["X-" + "a" * 20_000 + ": v"],
    ],
    ids=["200-headers", "20KB-value", "20KB-name"],
)
async def test_oversized_handshake_is_refused(server: RunningServer, extra: list[str]) -> None:
    async with bystander(server):
        request = b"".join(handshake_request(HOST, server.port, extra=extra))
        reply, closed = await http_exchange(HOST, server.port, request)
        assert reply is not None and reply.status in (400, 431), reply
        assert closed, "connection still open after the refusal"


async def test_malformed_handshake_does_not_log_a_traceback(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    request = b"".join(handshake_request(HOST, server.port, extra=["X-Big: " + "a" * 20_000]))
    reply, _ = await http_exchange(HOST, server.port, request)
    assert reply is not None and reply.status == 400
    tracebacks = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not tracebacks, [f"{r.name}: {r.getMessage()}" for r in tracebacks]


ALLOWED_ORIGINS = {"client": {"allowed_origins": ["http://good.example"]}}


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        ("http://evil.example", 403),
        ("null", 403),  # sandboxed iframes and file:// pages
        ("http://good.example.evil.example", 403),
        ("http://evil.example/http://good.example", 403),
        ("https://good.example", 403),  # another scheme is another origin
        ("http://good.example", 101),
        ("HTTP://GOOD.EXAMPLE", 101),  # origins compare case-insensitively
        ("same-host", 101),
        (None, 101),
    ],
)
async def test_origin_check(start_server: ServerFactory, origin: str | None, status: int) -> None:
    server = await start_server(ALLOWED_ORIGINS)
    if origin == "same-host":
        origin = f"http://{HOST}:{server.port}"
    headers = [f"Origin: {origin}"] if origin is not None else []
    async with bystander(server):
        if status == 101:
            ws = await raw_connected(server, headers=headers)
            ws.abort()
            return
        request = b"".join(handshake_request(HOST, server.port, extra=headers))
        # A 403 may keep the HTTP connection alive: only the refusal is asserted.
        reply, _ = await http_exchange(HOST, server.port, request, eof_within=0.1)
        assert reply is not None and reply.status == status, reply
        assert "sec-websocket-accept" not in reply.headers, reply.headers
        assert [s.user for s in server.hub.sessions.values()] == ["bystander"]


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


# --- in-process property test ----------------------------------------------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
METHODS = [*COMMAND_METHODS, "bogus"]
CHANNELS = st.sampled_from(["chat:a", "chat:b", "a", "$private", "chat:x#1", "", "locked:x"])
PARAMS = st.fixed_dictionaries(
    {},
    optional={
        "channel": CHANNELS | st.text(max_size=8),
        "data": JSON_VALUES,
        "token": st.sampled_from(["", "bad.token.here"]) | st.text(max_size=8),
        "limit": st.integers(min_value=-5, max_value=2000),
        "offset": st.integers(min_value=-5, max_value=2**64),
        "epoch": st.text(max_size=4),
        "recover": st.booleans(),
        "reverse": st.booleans(),
        "since": st.fixed_dictionaries(
            {"offset": st.integers(-1, 5), "epoch": st.text(max_size=3)}
        ),
        "method": st.text(max_size=5),
        "name": st.text(max_size=5),
    },
)
COMMANDS = st.builds(
    lambda command_id, method, params: {
        **({} if command_id is None else {"id": command_id}),
        method: params,
    },
    st.none() | st.integers(min_value=-2, max_value=2**64 + 1),
    st.sampled_from(METHODS),
    PARAMS | JSON_VALUES,
)
FRAMES = st.one_of(
    st.lists(COMMANDS, min_size=1, max_size=3).map(
        lambda commands: "\n".join(json.dumps(c) for c in commands)
    ),
    JSON_VALUES.map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.just("{}"),
)


def _answerable(frame: str | bytes) -> bool:
    """Whether the frame's first command is one that must get a reply (id > 0, not send)."""
    try:
        first = json.loads(frame.splitlines()[0]) if frame.strip() else None
    except (ValueError, UnicodeDecodeError, IndexError):
        return False
    if not isinstance(first, dict):
        return False
    command_id = first.get("id")
    methods = [m for m in METHODS if m in first]
    return (
        isinstance(command_id, int)
        and not isinstance(command_id, bool)
        and 0 < command_id < 2**63
        and len(first) == 2
        and len(methods) == 1
        and methods[0] not in ("send", "bogus")
    )


async def _run_frames(connect_first: bool, frames: list[str | bytes]) -> None:
    config = load_config(None, env={}, base=DEFAULT_CONFIG).config
    async with Hub(config) as hub:
        watcher = LocalClient(hub)
        await watcher.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:w"}}')
        client = LocalClient(hub)
        if connect_first:
            frames = [b'{"id":1,"connect":{}}', *frames[:4]]
        for frame in frames:
            was_open = client.close_code is None and not client.session.closed
            await client.send(frame)  # must never raise
            for _ in range(3):
                await asyncio.sleep(0)  # the flush is call_soon
            lines = [line for f in client.frames for line in f.split(b"\n") if line.strip()]
            client.frames.clear()
            messages = [json.loads(line) for line in lines]
            assert all(isinstance(m, dict) for m in messages), messages
            internal = [m for m in messages if m.get("error", {}).get("code") == 100]
            assert not internal, (frame, internal)
            if client.close_code is not None:
                assert 3000 <= client.close_code <= 3999, (frame, client.close_code)
            elif was_open and _answerable(frame):
                assert any("id" in m for m in messages), (frame, messages)
        # The other session is untouched: it publishes and receives its own publication.
        await watcher.send(b'{"id":3,"publish":{"channel":"chat:w","data":{"ok":1}}}')
        for _ in range(3):
            await asyncio.sleep(0)
        received = b"\n".join(watcher.frames)
        assert watcher.close_code is None, watcher.close_code
        assert b'{"id":3,"publish":' in received, received
        assert b'"error"' not in received, received
        assert b'"data":{"ok":1}' in received, received
        page = await hub.history("chat:w", limit=-1)
        assert b'{"ok":1}' in [bytes(p.data) for p in page.publications]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(connect_first=st.booleans(), frames=st.lists(FRAMES, min_size=1, max_size=5))
def test_arbitrary_frames_never_raise(connect_first: bool, frames: list[str | bytes]) -> None:
    asyncio.run(_run_frames(connect_first, frames))


def test_rawws_frame_builder() -> None:
    """The raw client's own frames decode as specified (checked against the RFC layout)."""
    frame = build_frame(b"hi", opcode=OP_BINARY, fin=False, rsv=5, mask=False)
    assert frame == bytes((0x50 | OP_BINARY, 2)) + b"hi"
    frame = build_frame(b"abc", length=2**62, mask=False)
    assert frame[:2] == bytes((0x81, 127)) and struct.unpack("!Q", frame[2:10])[0] == 2**62
    frame = build_frame(b"x" * 200, mask_key=b"\x00\x00\x00\x00")
    assert frame[:4] == bytes((0x81, 0x80 | 126, 0, 200)) and frame[8:] == b"x" * 200
