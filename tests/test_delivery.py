"""Delivery writes, per connection, exactly the bytes its rules promise.

``hubbub.hub.delivery.Delivery`` is driven here without a hub: fake sessions
carry a real ``ClientProtocol`` (the outbox) and a recording transport, and
``Harness`` mimics the hub's calls exactly (membership dicts that the hub
replaces when a channel empties, ``joined`` / ``take_share`` / ``channel_gone``,
``Session.send`` and ``Session.close`` semantics, ``Hub._slow``).

A hypothesis model test runs random operation sequences (broadcast, send,
fanout, join, leave, close, explicit flush, a loop turn) and checks, for every
connection, that the frames written, split on ``\\n``, are exactly the model's
sequence: in operation order, every publication broadcast while it was a
member and everything sent to it, nothing after its close (a client cut as
slow gets a prefix of it). ``test_model`` checks the whole order, across
channels too (Rule 3); ``test_model_per_channel_order`` checks the same
without the cross-channel order, so a failure says which rule broke. Example
tests pin down the individual ordering rules and the slow-client rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.hub.counters import SentCounts
from hubbub.hub.delivery import Delivery
from hubbub.hub.transport import Shared
from hubbub.protocol.codec import JSON
from hubbub.protocol.connection import ClientProtocol
from hubbub.protocol.messages import Publication

BIG = 1 << 30  # a limit nothing reaches


class RecordingTransport:
    """Records every payload in order; ``backlog`` is what ``buffered()`` reports."""

    def __init__(self, backlog: int = 0) -> None:
        self.backlog = backlog
        self.writes: list[tuple[str, bytes]] = []  # ("write" | "shared", payload)
        self.shared: list[Shared] = []

    def write(self, payload: bytes) -> None:
        assert payload, "an empty frame was written"
        self.writes.append(("write", payload))

    def write_shared(self, shared: Shared) -> int:
        assert shared.payload, "an empty shared frame was written"
        self.writes.append(("shared", shared.payload))
        self.shared.append(shared)
        return self.backlog

    def buffered(self) -> int:
        return self.backlog

    def messages(self) -> list[bytes]:
        """Every message received, in order (frames split on ``\\n``)."""
        return [message for _, payload in self.writes for message in payload.split(b"\n")]


class FakeSession:
    """The attributes of ``hubbub.hub.session.Session`` that Delivery reads."""

    def __init__(self, name: str, backlog: int = 0) -> None:
        self.name = name
        self.protocol = ClientProtocol()
        self.codec = JSON
        self.subscriptions: dict[str, object] = {}
        self.closed = False
        self.transport = RecordingTransport(backlog)
        self.transport_name = "websocket"
        self.transport_apart = False

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _s(session: FakeSession) -> Any:
    """A fake session where Delivery's signatures say ``Session``."""
    return cast(Any, session)


class Harness:
    """The hub's side of Delivery: membership, sends, closes and slow clients."""

    def __init__(self, *, limit: int = BIG, close_on_slow: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.delivery = Delivery(loop, limit=limit, on_slow=self._on_slow)
        # What fails in the flush scheduled with call_soon reaches the loop's handler.
        self.errors: list[str] = []
        loop.set_exception_handler(lambda _, context: self.errors.append(repr(context)))
        self.limit = limit
        self.close_on_slow = close_on_slow
        self.members: dict[str, dict[FakeSession, object]] = {}
        self.slow: list[FakeSession] = []
        # Sessions closed as slow -> messages they had received at that moment.
        self.slow_closed: dict[FakeSession, int] = {}

    def channel(self, name: str) -> dict[FakeSession, object]:
        """The live subscribers of ``name`` (``ChannelSubscribers.live``)."""
        members = self.members.get(name)
        if members is None:
            members = self.members[name] = {}
        return members

    def join(self, session: FakeSession, name: str) -> None:
        """``Hub.go_live``: live subscriber first, then ``joined``."""
        subscription = object()
        self.channel(name)[session] = subscription
        session.subscriptions[name] = subscription
        self.delivery.joined(_s(session), name)

    def leave(self, session: FakeSession, name: str) -> None:
        """``Hub.unsubscribe_session`` + ``Hub._detach``."""
        session.subscriptions.pop(name)
        members = self.channel(name)
        self.delivery.take_share(_s(session), name)
        del members[session]
        if not members:
            del self.members[name]  # the hub drops its ChannelSubscribers
            self.delivery.channel_gone(name)

    def broadcast(self, name: str, data: bytes) -> None:
        """``Hub.handle_publication``: only channels with live subscribers."""
        members = self.channel(name)
        if members:
            self.delivery.broadcast(name, cast(Any, members), data, Publication())

    def send(self, session: FakeSession, data: bytes) -> None:
        """``Session.send``."""
        if not session.closed:
            self.delivery.send(_s(session), data, "publish")

    def fanout(self, sessions: Iterable[FakeSession], data: bytes) -> None:
        """``Hub._push_join_leave``: live (so open) sessions only."""
        self.delivery.fanout([_s(s) for s in sessions if not s.closed], data, "push_join")

    def close(self, session: FakeSession) -> None:
        """``Session.close(flush=True)`` then ``Hub.forget_session``."""
        if session.closed:
            return
        self.delivery.flush_session(_s(session))
        session.closed = True
        for name in list(session.subscriptions):
            self.leave(session, name)

    def flush(self) -> None:
        self.delivery.flush()

    def _on_slow(self, session: Any) -> None:
        fake = cast(FakeSession, session)
        # Rule 4: only a connection whose pending bytes pass the limit is slow.
        pending = fake.protocol.outbox_bytes + fake.transport.buffered()
        if pending <= self.limit:
            self.errors.append(f"{fake} called slow with {pending} bytes pending")
        self.slow.append(fake)
        if self.close_on_slow and not fake.closed:  # Hub._slow: close(SLOW, flush=False)
            fake.protocol.drop_output()
            fake.closed = True
            self.slow_closed[fake] = len(fake.transport.messages())
            for name in list(fake.subscriptions):
                self.leave(fake, name)


# --- the model test ------------------------------------------------------------------

CHANNELS = ("a", "b")
SESSIONS = 3


@dataclass(frozen=True)
class Op:
    kind: str
    session: int = 0
    channel: str = "a"
    targets: tuple[int, ...] = ()

    def __repr__(self) -> str:
        if self.kind == "broadcast":
            return f"broadcast({self.channel})"
        if self.kind in ("join", "leave"):
            return f"{self.kind}(s{self.session}, {self.channel})"
        if self.kind in ("send", "close"):
            return f"{self.kind}(s{self.session})"
        if self.kind == "fanout":
            return f"fanout({', '.join(f's{t}' for t in self.targets)})"
        return f"{self.kind}()"


_KINDS = (
    ["broadcast"] * 5 + ["join"] * 4 + ["send"] * 2 + ["leave", "fanout", "flush", "tick", "close"]
)
OPS = st.builds(
    Op,
    st.sampled_from(_KINDS),
    session=st.integers(0, SESSIONS - 1),
    channel=st.sampled_from(CHANNELS),
    targets=st.lists(st.integers(0, SESSIONS - 1), max_size=SESSIONS, unique=True).map(tuple),
)


@dataclass(frozen=True)
class Setup:
    limit: int
    close_on_slow: bool
    backlogs: tuple[int, ...]


SETUPS = st.one_of(
    st.builds(Setup, st.just(BIG), st.just(False), st.just((0,) * SESSIONS)),
    st.builds(
        Setup,
        st.sampled_from([12, 40, 200]),
        st.booleans(),
        st.tuples(*[st.sampled_from([0, 0, 5, 1 << 20])] * SESSIONS),
    ),
)


def only(messages: list[bytes], channel: str, channel_of: dict[bytes, str]) -> list[bytes]:
    """``messages`` without the publications of channels other than ``channel``."""
    return [m for m in messages if channel_of.get(m, channel) == channel]


async def run_model(setup: Setup, ops: list[Op], *, total_order: bool) -> None:
    """Run ``ops`` against Delivery and the model side by side; check every session.

    Always checked: per connection, the same messages as the model, and the model's
    order among its replies and each one channel's publications. With
    ``total_order``, also the model's order across channels (Rule 3 as written).
    """
    harness = Harness(limit=setup.limit, close_on_slow=setup.close_on_slow)
    sessions = [FakeSession(f"s{i}", backlog) for i, backlog in enumerate(setup.backlogs)]
    expected: dict[FakeSession, list[bytes]] = {s: [] for s in sessions}
    # A publication's channel, its recipients (members when broadcast), its object.
    channel_of: dict[bytes, str] = {}
    recipients: dict[bytes, set[FakeSession]] = {}
    originals: dict[bytes, bytes] = {}
    counter = 0

    def fresh(prefix: str) -> bytes:
        nonlocal counter
        counter += 1
        return f"{prefix}{counter}".encode()

    for op in ops:
        session = sessions[op.session]
        if op.kind == "broadcast":
            data = fresh("p")
            members = list(harness.members.get(op.channel, {}))
            channel_of[data] = op.channel
            recipients[data] = set(members)
            originals[data] = data
            for member in members:
                expected[member].append(data)
            harness.broadcast(op.channel, data)
        elif op.kind == "send":
            data = fresh("r")
            if not session.closed:
                expected[session].append(data)
            harness.send(session, data)
        elif op.kind == "fanout":
            data = fresh("f")
            targets = [sessions[t] for t in op.targets]
            for target in targets:
                if not target.closed:
                    expected[target].append(data)
            harness.fanout(targets, data)
        elif op.kind == "join":
            if not session.closed and op.channel not in session.subscriptions:
                harness.join(session, op.channel)
        elif op.kind == "leave":
            if op.channel in session.subscriptions:
                harness.leave(session, op.channel)
        elif op.kind == "close":
            harness.close(session)
        elif op.kind == "flush":
            harness.flush()
        else:
            assert op.kind == "tick"
            await asyncio.sleep(0)  # the flush scheduled with call_soon runs
    harness.flush()
    assert harness.errors == []

    for session in sessions:
        received = session.transport.messages()
        want = expected[session]
        publications = [m for m in received if m in channel_of]
        # Never a publication twice, never one broadcast while it was not a member.
        assert len(publications) == len(set(publications)), (session, received)
        for publication in publications:
            assert session in recipients[publication], (session, publication, received)
        if session in harness.slow_closed:
            # Closed as slow: its output was dropped; nothing came after the close,
            # and what it got is a prefix of what it was promised.
            assert len(received) == harness.slow_closed[session], (session, received)
            for channel in CHANNELS:
                got = only(received, channel, channel_of)
                assert got == only(want, channel, channel_of)[: len(got)], (session, received, want)
            if total_order:
                assert received == want[: len(received)], (session, received, want)
        else:
            assert sorted(received) == sorted(want), (session, received, want)
            for channel in CHANNELS:
                got = only(received, channel, channel_of)
                assert got == only(want, channel, channel_of), (session, channel, received, want)
            if total_order:
                assert received == want, (session, received, want)
            assert not session.protocol.outbox, (session, "output left behind")

    # Rule 1: one payload object per channel batch, the same for every recipient; a
    # one-publication batch is the publication's own bytes object.
    seen: dict[bytes, bytes] = {}
    for session in sessions:
        for kind, payload in session.transport.writes:
            if kind != "shared":
                continue
            first = seen.setdefault(payload, payload)
            assert first is payload, (session, payload, "a copy, not the shared bytes")
            if b"\n" not in payload:
                assert payload is originals[payload], (session, payload, "re-encoded")
    if not setup.close_on_slow:
        assert not harness.slow_closed


# Hypothesis' lists average a handful of items; drawing the length first gives
# turns long enough to interleave channels, sends, joins and leaves.
OP_LISTS = st.integers(0, 60).flatmap(lambda n: st.lists(OPS, min_size=n, max_size=n))
MODEL_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@MODEL_SETTINGS
@given(setup=SETUPS, ops=OP_LISTS)
async def test_model_per_channel_order(setup: Setup, ops: list[Op]) -> None:
    """Everything promised arrives once, in order per channel and among replies."""
    await run_model(setup, ops, total_order=False)


@MODEL_SETTINGS
@given(setup=SETUPS, ops=OP_LISTS)
async def test_model(setup: Setup, ops: list[Op]) -> None:
    """Rule 3 as written: per connection, exactly the model's sequence."""
    await run_model(setup, ops, total_order=True)


# --- examples ------------------------------------------------------------------------


def two_subscribers(harness: Harness, channel: str = "ch") -> tuple[FakeSession, FakeSession]:
    a, b = FakeSession("a"), FakeSession("b")
    harness.join(a, channel)
    harness.join(b, channel)
    return a, b


async def test_reply_queued_before_publications_arrives_first() -> None:
    harness = Harness()
    a, b = two_subscribers(harness)
    harness.send(a, b"r1")
    harness.broadcast("ch", b"p1")
    harness.broadcast("ch", b"p2")
    harness.flush()
    assert a.transport.writes == [("write", b"r1"), ("shared", b"p1\np2")]
    assert b.transport.writes == [("shared", b"p1\np2")]
    assert a.transport.shared[0] is b.transport.shared[0]
    assert a.transport.writes[1][1] is b.transport.writes[0][1]


async def test_send_after_publications_keeps_the_order() -> None:
    harness = Harness()
    a, b = two_subscribers(harness)
    harness.broadcast("ch", b"p1")
    harness.send(a, b"r1")
    harness.broadcast("ch", b"p2")
    harness.flush()
    # a took its share: one frame from its own outbox, in queue order.
    assert a.transport.writes == [("write", b"p1\nr1\np2")]
    assert b.transport.writes == [("shared", b"p1\np2")]


async def test_leaving_mid_turn_gets_only_earlier_publications() -> None:
    harness = Harness()
    a, b = two_subscribers(harness)
    harness.broadcast("ch", b"p1")
    harness.leave(a, "ch")
    harness.broadcast("ch", b"p2")
    harness.flush()
    assert a.transport.messages() == [b"p1"]
    assert b.transport.messages() == [b"p1", b"p2"]


async def test_joining_mid_turn_gets_only_later_publications() -> None:
    harness = Harness()
    a = FakeSession("a")
    harness.join(a, "ch")
    harness.broadcast("ch", b"p1")
    b = FakeSession("b")
    harness.join(b, "ch")
    harness.broadcast("ch", b"p2")
    harness.flush()
    assert a.transport.messages() == [b"p1", b"p2"]
    assert b.transport.messages() == [b"p2"]


async def test_last_subscriber_leaving_and_a_new_one_joining_mid_turn() -> None:
    harness = Harness()
    a = FakeSession("a")
    harness.join(a, "ch")
    harness.broadcast("ch", b"p1")
    harness.leave(a, "ch")  # the channel is gone; its batch with it
    b = FakeSession("b")
    harness.join(b, "ch")
    harness.broadcast("ch", b"p2")
    harness.flush()
    assert a.transport.messages() == [b"p1"]
    assert b.transport.messages() == [b"p2"]


async def test_close_flushes_pending_output_then_nothing_more() -> None:
    harness = Harness()
    a, b = two_subscribers(harness)
    harness.broadcast("ch", b"p1")
    harness.send(b, b"r1")
    harness.close(a)
    assert a.transport.writes == [("write", b"p1")]  # at once, before the close frame
    harness.broadcast("ch", b"p2")
    harness.send(a, b"r2")
    harness.fanout([a, b], b"f1")
    harness.flush()
    assert a.transport.messages() == [b"p1"]
    assert b.transport.messages() == [b"p1", b"r1", b"p2", b"f1"]


async def test_one_write_per_turn_from_the_scheduled_flush() -> None:
    harness = Harness()
    a, b = two_subscribers(harness)
    harness.send(a, b"r1")
    harness.send(a, b"r2")
    harness.broadcast("ch", b"p1")
    assert a.transport.writes == []
    await asyncio.sleep(0)
    assert harness.errors == []
    assert a.transport.writes == [("write", b"r1\nr2"), ("shared", b"p1")]
    assert b.transport.writes == [("shared", b"p1")]
    assert harness.delivery.stats_frames == 3
    await asyncio.sleep(0)
    harness.flush()
    assert len(a.transport.writes) == 2
    assert harness.delivery.stats_frames == 3


async def test_batch_over_the_limit_is_written_at_once() -> None:
    harness = Harness(limit=10)
    a, b = two_subscribers(harness)
    harness.broadcast("ch", b"p-000")
    harness.broadcast("ch", b"p-001")  # 10 bytes: not over the limit
    assert a.transport.writes == [] and b.transport.writes == []
    harness.broadcast("ch", b"p-002")  # 15 bytes: written now, no flush needed
    assert a.transport.writes == [("shared", b"p-000\np-001\np-002")]
    assert b.transport.writes == a.transport.writes
    assert a.transport.shared[0] is b.transport.shared[0]
    harness.broadcast("ch", b"p-003")  # a new batch for the rest of the turn
    harness.flush()
    assert a.transport.messages() == [b"p-000", b"p-001", b"p-002", b"p-003"]
    assert b.transport.messages() == a.transport.messages()
    assert harness.slow == []
    assert harness.errors == []


async def test_slow_transport_is_cut_and_only_it() -> None:
    harness = Harness(limit=10, close_on_slow=True)
    a, b = two_subscribers(harness)
    c = FakeSession("c", backlog=11)  # its transport holds more than the limit
    harness.join(c, "ch")
    payload = b"p" * 12
    harness.broadcast("ch", payload)  # over the limit: written at once
    assert harness.slow == [c]
    for session in (a, b, c):
        assert session.transport.writes == [("shared", payload)]
    harness.broadcast("ch", b"p2")
    harness.flush()
    assert a.transport.messages() == [payload, b"p2"]
    assert b.transport.messages() == [payload, b"p2"]
    assert c.transport.messages() == [payload]  # cut: nothing after
    assert harness.slow == [c]
    assert harness.errors == []


async def test_slow_transport_is_cut_when_something_is_queued_for_it() -> None:
    # The limit is on the outbox and the transport's buffer together: a reply queued
    # for a connection whose transport already holds more than the limit cuts it at
    # once, before anything more is written (issue 9, item 16).
    harness = Harness(limit=10)
    a, b = FakeSession("a"), FakeSession("b", backlog=11)
    harness.send(a, b"r1")
    harness.send(b, b"r2")
    assert harness.slow == [b]
    harness.flush()
    assert set(harness.slow) == {b}  # still slow after its write (the hub would have cut it)
    assert a.transport.messages() == [b"r1"]
    assert b.transport.messages() == [b"r2"]
    assert harness.errors == []


async def test_outbox_over_the_limit_is_slow() -> None:
    harness = Harness(limit=10, close_on_slow=True)
    a, b = FakeSession("a"), FakeSession("b")
    harness.send(a, b"r-1")
    harness.send(b, b"r-2")
    harness.send(a, b"r-3-long-reply")  # a's outbox passes the limit
    assert harness.slow == [a]
    harness.flush()
    assert a.transport.writes == []  # a slow client gets only the close frame
    assert b.transport.messages() == [b"r-2"]
    assert harness.errors == []


@pytest.mark.parametrize("then", ["flush", "leave", "send"])
async def test_order_across_channels(then: str) -> None:
    """Rule 3 across channels: p1 on "x", p2 on "y", p3 on "x" arrive as p1, p2, p3."""
    harness = Harness()
    a, b = FakeSession("a"), FakeSession("b")
    for channel in ("x", "y"):
        harness.join(a, channel)
        harness.join(b, channel)
    harness.broadcast("x", b"p1")
    harness.broadcast("y", b"p2")
    harness.broadcast("x", b"p3")
    if then == "leave":  # a takes its share of "x" into its outbox, then leaves it
        harness.leave(a, "x")
    elif then == "send":  # a takes its share of both channels, then gets a reply
        harness.send(a, b"r1")
    harness.flush()
    want = [b"p1", b"p2", b"p3"] + ([b"r1"] if then == "send" else [])
    assert a.transport.messages() == want


class ApartTransport(RecordingTransport):
    """A transport other than the WebSocket: it counts its shared writes itself, as
    server/streamconn.py's does (delivery.py Rule 6)."""

    def __init__(self, sent: SentCounts) -> None:
        super().__init__()
        self.sent = sent

    def write_shared(self, shared: Shared) -> int:
        self.sent.add_apart("sse", "push_publication", shared.messages, shared.message_bytes)
        return super().write_shared(shared)


async def test_sent_messages_by_transport_and_frame_type() -> None:
    harness = Harness()
    websocket, sse = FakeSession("websocket"), FakeSession("sse")
    sse.transport = ApartTransport(harness.delivery.sent)
    sse.transport_name, sse.transport_apart = "sse", True
    harness.join(websocket, "ch")
    harness.join(sse, "ch")
    harness.broadcast("ch", b"p1")
    harness.broadcast("ch", b"p22")
    harness.send(websocket, b"r1")  # takes its share of the batch into its outbox first
    harness.fanout([websocket], b"j1")
    harness.flush()
    assert websocket.transport.messages() == [b"p1", b"p22", b"r1", b"j1"]
    assert sse.transport.writes == [("shared", b"p1\np22")]  # the channel's shared frame
    harness.fanout([websocket, sse], b"j2")
    harness.flush()
    assert harness.delivery.sent.by_transport() == [  # (transport, frame type, n, bytes)
        ("sse", "push_join", 1, 2),
        ("sse", "push_publication", 2, 5),
        ("websocket", "publish", 1, 2),
        ("websocket", "push_join", 2, 4),
        ("websocket", "push_publication", 2, 5),
    ]
