"""Groups C1-C6: Centrifugo's JSON client protocol (v2) against any compatible server.

Rule: a case talks only the protocol (PROTOCOL.md, client.proto): commands with
ids, replies by id, pushes without. FAILED when the protocol is broken (no
reply, a reply of the wrong shape, a wrong fixed code, a lost publication);
NON-STRICT when a close code differs from Centrifugo's but the connection was
refused; INFORMATIONAL when the server does not enable a feature for the
channel (history, presence: error 108) or does not ping. ``--channel`` names a
channel that allows subscribe, publish, history and presence (``chat:audit``
in the demo preset of ``hubbub serve``); ``--token`` authenticates.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from hubbub.tools.audit.case import CENTRIFUGO_ONLY, Case, CaseContext, CaseRun
from hubbub.tools.audit.connection import AuditConnection, preview
from hubbub.websocket.frames import OP_BINARY, OP_TEXT

REPLY_WITHIN = 5.0
#: Codes the protocol fixes (PROTOCOL.md "Codes").
BAD_REQUEST = 3501
NO_PONG = 3012
INVALID_TOKEN = 3500
STALE = 3502
NOT_AVAILABLE = 108


class ProtocolError(Exception):
    """The server broke the protocol (no reply, wrong shape); the message says how."""


class Client:
    """A connected protocol client on one audit connection: calls by id, pushes kept."""

    def __init__(self, ctx: CaseContext, ws: AuditConnection) -> None:
        self.ctx = ctx
        self.ws = ws
        self.next_id = 10
        self.pushes: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send one command; return the reply (``{"error": ...}`` or the result under
        ``method``). Raises ``ProtocolError`` when no reply comes."""
        self.next_id += 1
        command_id = self.next_id
        self.ws.send_frame(json.dumps({"id": command_id, method: params}))
        deadline = time.monotonic() + REPLY_WITHIN
        while True:
            for reply in await self.frames(deadline - time.monotonic()):
                if reply.get("id") == command_id:
                    return reply
            if self.closed is not None:
                raise ProtocolError(f"closed with {self.closed[0]} instead of replying to {method}")

    async def frames(self, within: float) -> list[dict[str, Any]]:
        """The JSON objects of the next text frame (pings answered, pushes kept)."""
        event = await self.ws.next_event(max(0.0, within))
        if event is None:
            raise ProtocolError(f"nothing from the server within {REPLY_WITHIN:g} s")
        if event.kind == "close":
            self.closed = (event.code, event.reason)
            return []
        if event.kind in ("eof", "violation"):
            self.closed = (1006, event.reason or "dropped")
            return []
        if event.opcode != OP_TEXT:
            return []
        found = []
        for line in str(event.data).split("\n"):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                raise ProtocolError(f"a line that is not JSON: {preview(line)}") from None
            if value == {}:
                self.ws.send_frame(b"{}")  # the server's ping: answer it
                continue
            if "push" in value:
                self.pushes.append(value["push"])
            found.append(value)
        return found

    async def push(self, kind: str, within: float = REPLY_WITHIN) -> dict[str, Any]:
        """The next push of ``kind`` (``pub``, ``join``...), waiting up to ``within``."""
        deadline = time.monotonic() + within
        while True:
            for push in self.pushes:
                if kind in push:
                    self.pushes.remove(push)
                    return push
            if self.closed is not None:
                raise ProtocolError(f"closed with {self.closed[0]} while waiting for a {kind}")
            await self.frames(deadline - time.monotonic())

    async def wait_closed(self, within: float) -> tuple[int, str] | None:
        deadline = time.monotonic() + within
        while self.closed is None and time.monotonic() < deadline:
            try:
                await self.frames(deadline - time.monotonic())
            except ProtocolError:
                break
        return self.closed


async def client(ctx: CaseContext) -> Client:
    """A new connection, connected (``--token``); the case's wire log records it."""
    ws = await ctx.open(origin=ctx.target.origin)
    await ctx.protocol_connect(ws)
    return Client(ctx, ws)


def _error_code(reply: dict[str, Any]) -> int | None:
    error = reply.get("error")
    return int(error.get("code", 0)) if isinstance(error, dict) else None


def _case(run: CaseRun) -> CaseRun:
    """Turn a ``ProtocolError`` into FAILED with its message."""

    async def wrapped(ctx: CaseContext) -> None:
        try:
            await run(ctx)
        except ProtocolError as exc:
            ctx.judge("FAILED", str(exc))

    return wrapped


def _channel(ctx: CaseContext) -> str:
    """A fresh channel per case, in the namespace of ``--channel``."""
    base = ctx.options.channel
    return f"{base}-{uuid.uuid4().hex[:8]}"


# -- C1 connect ------------------------------------------------------------------------------
async def _connect_result(ctx: CaseContext) -> None:
    ws = await ctx.open(origin=ctx.target.origin)
    result = await ctx.protocol_connect(ws)
    if not isinstance(result.get("client"), str) or not result["client"]:
        ctx.judge("FAILED", f"connect result without a client id: {result}")
        return
    ctx.note(f"client {result['client']}, version {result.get('version', '?')!r}, "
             f"ping {result.get('ping', 'none')}, pong {result.get('pong', False)}")  # fmt: skip


def _refused(first: bytes | None, then: bytes, codes: tuple[int, ...], why: str) -> CaseRun:
    """Send ``first`` (a connect) and ``then``: the server closes with one of ``codes``."""

    async def run(ctx: CaseContext) -> None:
        ws = await ctx.open(origin=ctx.target.origin)
        proto = Client(ctx, ws)
        if first is not None:
            await ctx.protocol_connect(ws)
        ws.send_frame(then, opcode=OP_BINARY if then.startswith(b"\x00") else OP_TEXT)
        closed = await proto.wait_closed(REPLY_WITHIN)
        if closed is None:
            ctx.judge("FAILED", f"the connection is still open {REPLY_WITHIN:g} s after {why}")
        elif closed[0] in codes:
            ctx.note(f"closed with {closed[0]} after {why}")
        elif closed[0] == 1006:
            ctx.judge("NON-STRICT", f"dropped without a close code after {why}")
        else:
            ctx.judge("NON-STRICT", f"closed with {closed[0]} after {why}; "
                      f"Centrifugo uses {' or '.join(map(str, codes))}")  # fmt: skip

    return run


# -- C2 subscribe and publish ----------------------------------------------------------------
async def _publish_reaches_subscriber(ctx: CaseContext) -> None:
    channel = _channel(ctx)
    subscriber, publisher = await client(ctx), await client(ctx)
    reply = await subscriber.call("subscribe", {"channel": channel})
    if _error_code(reply) is not None:
        ctx.judge("FAILED", f"subscribe to {channel} refused: {reply['error']} "
                  "(use --channel to name one the server allows)")  # fmt: skip
        return
    await publisher.call("subscribe", {"channel": channel})  # many setups let only members publish
    data = {"audit": uuid.uuid4().hex}
    published = await publisher.call("publish", {"channel": channel, "data": data})
    if _error_code(published) is not None:
        ctx.judge("FAILED", f"publish refused: {published['error']}")
        return
    push = await subscriber.push("pub")
    if push.get("channel") != channel or push["pub"].get("data") != data:
        ctx.judge("FAILED", f"the publication arrived changed: {push}")
    else:
        ctx.note(f"publication delivered to the subscriber (offset {push['pub'].get('offset')})")


async def _already_subscribed(ctx: CaseContext) -> None:
    channel = _channel(ctx)
    proto = await client(ctx)
    await proto.call("subscribe", {"channel": channel})
    reply = await proto.call("subscribe", {"channel": channel})
    code = _error_code(reply)
    if code == 105:
        ctx.note("second subscribe: error 105 (already subscribed)")
    else:
        ctx.judge("FAILED", f"second subscribe answered {reply}, the protocol says error 105")


# -- C3 history and recovery -----------------------------------------------------------------
async def _history(ctx: CaseContext) -> None:
    channel = _channel(ctx)
    proto = await client(ctx)
    await proto.call("subscribe", {"channel": channel})
    for index in range(3):
        reply = await proto.call("publish", {"channel": channel, "data": {"n": index}})
        if _error_code(reply) is not None:
            ctx.judge("FAILED", f"publish refused: {reply['error']}")
            return
    reply = await proto.call("history", {"channel": channel, "limit": -1})
    if _error_code(reply) == NOT_AVAILABLE:
        ctx.judge("INFORMATIONAL", f"history is not enabled for {channel} (108)")
        return
    if _error_code(reply) is not None:
        ctx.judge("FAILED", f"history refused: {reply['error']}")
        return
    result = reply.get("history", {})
    pubs = result.get("publications", [])
    offsets = [p.get("offset") for p in pubs]
    if [p.get("data") for p in pubs][-3:] != [{"n": 0}, {"n": 1}, {"n": 2}]:
        ctx.judge("FAILED", f"history does not hold the 3 publications in order: {pubs}")
    elif not result.get("epoch") or offsets != sorted(offsets) or len(set(offsets)) != len(pubs):
        ctx.judge("FAILED", f"history without an epoch or increasing offsets: {result}")
    else:
        ctx.note(f"history: offsets {offsets}, epoch {result['epoch']!r}")


def _recovery(same_epoch: bool) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        channel = _channel(ctx)
        first, publisher = await client(ctx), await client(ctx)
        reply = await first.call("subscribe", {"channel": channel, "recover": True})
        result = reply.get("subscribe", {})
        if _error_code(reply) is not None or "epoch" not in result:
            ctx.judge("INFORMATIONAL", f"no recoverable stream for {channel}: {reply}")
            return
        await first.ws.abort()
        await publisher.call("subscribe", {"channel": channel})
        for index in range(2):
            reply = await publisher.call("publish", {"channel": channel, "data": {"missed": index}})
            if _error_code(reply) is not None:
                ctx.judge("FAILED", f"publish refused: {reply['error']}")
                return
        epoch = result["epoch"] if same_epoch else "not-the-epoch"
        again = await client(ctx)
        params = {"channel": channel, "recover": True, "epoch": epoch,
                  "offset": result.get("offset", 0)}  # fmt: skip
        back = (await again.call("subscribe", params)).get("subscribe", {})
        missed = [p.get("data") for p in back.get("publications", [])]
        if same_epoch:
            if back.get("recovered") and missed == [{"missed": 0}, {"missed": 1}]:
                ctx.note("recovered: exactly the 2 missed publications")
            else:
                ctx.judge("FAILED", f"recovery did not return the 2 missed publications: {back}")
        elif back.get("recovered") or missed:
            ctx.judge("FAILED", f"recovered from a wrong epoch: {back}")
        else:
            ctx.note("wrong epoch: recovered false, no publications")

    return run


# -- C4 presence -----------------------------------------------------------------------------
async def _presence(ctx: CaseContext) -> None:
    channel = _channel(ctx)
    proto = await client(ctx)
    me = await proto.call("subscribe", {"channel": channel})
    if _error_code(me) is not None:
        ctx.judge("FAILED", f"subscribe refused: {me['error']}")
        return
    reply = await proto.call("presence", {"channel": channel})
    if _error_code(reply) == NOT_AVAILABLE:
        ctx.judge("INFORMATIONAL", f"presence is not enabled for {channel} (108)")
        return
    clients = reply.get("presence", {}).get("presence", {})
    stats = await proto.call("presence_stats", {"channel": channel})
    counted = stats.get("presence_stats", {}).get("num_clients")
    if len(clients) != 1 or counted != 1:
        ctx.judge("FAILED", f"presence {clients} / stats {stats}: expected this one client")
    else:
        ctx.note(f"presence lists this client; num_clients {counted}")


# -- C5 ping and pong ------------------------------------------------------------------------
def _heartbeat(answer: bool) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        ws = await ctx.open(origin=ctx.target.origin)
        result = await ctx.protocol_connect(ws)
        interval = result.get("ping")
        if not interval:
            ctx.judge("INFORMATIONAL", "the server announces no ping interval")
            return
        if interval > ctx.options.ping_wait:
            ctx.judge("INFORMATIONAL", f"ping interval {interval} s is over --ping-wait")
            return
        started = time.monotonic()
        while True:  # the first ping: within the interval (plus slack for a loaded machine)
            event = await ws.next_event(interval + 5 - (time.monotonic() - started))
            if event is None:
                ctx.judge("FAILED", f"no ping within the announced {interval} s")
                return
            if event.kind == "message" and event.data == "{}":
                ctx.note(f"ping after {time.monotonic() - started:.1f} s")
                break
            if event.kind != "message":
                ctx.judge("FAILED", f"connection ended ({event.kind}) before the first ping")
                return
        proto = Client(ctx, ws)
        if answer:
            ws.send_frame(b"{}")
            closed = await proto.wait_closed(10.0)
            if closed is not None:
                ctx.judge("FAILED", f"closed with {closed[0]} although the pong was sent")
            else:
                ctx.note("pong sent; still connected 10 s later")
            return
        if not result.get("pong"):
            ctx.judge("INFORMATIONAL", "the server does not ask for pongs (pong: false)")
            return
        closed = await proto.wait_closed(interval + 10)
        if closed is None:
            ctx.judge("FAILED", "no pong sent and still connected")
        elif closed[0] == NO_PONG:
            ctx.note(f"closed with 3012, {time.monotonic() - started:.1f} s after connect")
        else:
            ctx.judge("NON-STRICT", f"closed with {closed[0]} (Centrifugo: 3012)")

    return run


# -- C6 errors and disconnects ---------------------------------------------------------------
def _error(method: str, params: dict[str, Any], codes: tuple[int, ...], what: str) -> CaseRun:
    async def run(ctx: CaseContext) -> None:
        proto = await client(ctx)
        reply = await proto.call(method, params)
        code = _error_code(reply)
        if code in codes:
            ctx.note(f"{what}: error {code}")
        elif code is not None:
            ctx.judge("NON-STRICT", f"{what}: error {code}, expected {codes}")
        else:
            ctx.judge("FAILED", f"{what}: no error in {reply}")

    return run


async def _stale(ctx: CaseContext) -> None:
    ws = await ctx.open(origin=ctx.target.origin)
    closed = await Client(ctx, ws).wait_closed(ctx.options.slow_seconds)
    if closed is None:
        ctx.judge("INFORMATIONAL", f"a connection without connect is still open after "
                  f"{ctx.options.slow_seconds:g} s")  # fmt: skip
    elif closed[0] == STALE:
        ctx.note("a connection that never sends connect is closed with 3502")
    else:
        ctx.judge("NON-STRICT", f"closed with {closed[0]} (Centrifugo: 3502)")


def cases() -> list[Case]:
    connect = b'{"id":1,"connect":{}}'
    subscribe = b'{"id":2,"subscribe":{"channel":"chat:audit"}}'
    raw = [
        Case("C1.1", "connect", "A reply with a client id (and ping/pong settings).",
             _connect_result),
        Case("C1.2", "A command before connect", "Disconnect 3501 (bad request).",
             _refused(None, subscribe, (BAD_REQUEST,), "a subscribe before connect")),
        Case("C1.3", "A second connect", "Disconnect 3501 (bad request).",
             _refused(connect, b'{"id":5,"connect":{}}', (BAD_REQUEST,), "a second connect")),
        Case("C1.4", "A frame that is not JSON", "Disconnect 3501 (bad request).",
             _refused(connect, b"{not json", (BAD_REQUEST,), "a frame that is not JSON")),
        Case("C1.5", "A command without id (not send)", "Disconnect 3501 (bad request).",
             _refused(connect, b'{"subscribe":{"channel":"x"}}', (BAD_REQUEST,),
                      "an id-less subscribe")),
        Case("C1.6", "A binary frame to the JSON protocol",
             "Disconnect (3506 inappropriate protocol or 3501).",
             _refused(connect, b"\x00\x01binary", (3506, BAD_REQUEST, 1003), "a binary frame")),
        Case("C1.7", "connect with an invalid token", "Disconnect 3500 (invalid token).",
             _refused(None, b'{"id":1,"connect":{"token":"not.a.jwt"}}', (INVALID_TOKEN,),
                      "an invalid token")),
        Case("C2.1", "Publish from one client reaches a subscriber",
             "The subscriber gets a pub push with the same data.", _publish_reaches_subscriber),
        Case("C2.2", "Subscribe twice to a channel", "Error 105 (already subscribed).",
             _already_subscribed),
        Case("C3.1", "History after three publications",
             "The three, in order, with increasing offsets and an epoch.", _history),
        Case("C3.2", "Recovery after missing two publications",
             "recovered: true and exactly the two missed publications.", _recovery(True)),
        Case("C3.3", "Recovery with a wrong epoch", "recovered: false and no publications.",
             _recovery(False)),
        Case("C4.1", "Presence and presence_stats", "This client, and num_clients 1.",
             _presence),
        Case("C5.1", "Ping answered with a pong", "A ping within the announced interval; "
             "the connection stays after the pong.", _heartbeat(True)),
        Case("C5.2", "Ping not answered", "Disconnect 3012 (no pong) after the pong timeout.",
             _heartbeat(False)),
        Case("C6.1", "Subscribe to an unknown namespace", "Error 102 (unknown channel).",
             _error("subscribe", {"channel": "no-such-namespace-audit:x"}, (102,),
                    "unknown namespace")),
        Case("C6.2", "RPC to a method nobody handles",
             "An error reply (104 method not found or 108 not available).",
             _error("rpc", {"method": "no-such-method-audit"}, (104, 108), "unknown RPC")),
        Case("C6.3", "Channel name over 255 bytes", "Error 107 (bad request) or 102.",
             _error("subscribe", {"channel": "a" * 300}, (107, 102), "long channel name")),
        Case("C6.4", "No connect at all", "Disconnect 3502 (stale) within --slow-seconds.",
             _stale),
    ]  # fmt: skip
    return [
        Case(c.id, c.description, c.expectation, _case(c.run), modes=CENTRIFUGO_ONLY,
             connect=False, limit=90.0 if c.id.startswith("C5") else 30.0)
        for c in raw
    ]  # fmt: skip
