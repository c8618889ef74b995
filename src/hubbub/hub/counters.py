"""What the node counts: the figures behind the ``info`` API's metrics, ``hubbub top``
and the Prometheus endpoint.

Rule 1: counting is cheap and off the fan-out path: a connection, a command,
a publication handed to or received from the engine is one integer added
here; writes to clients are counted by ``Delivery`` per batch, never per
delivery; gauges (connections, subscriptions, pending output) are worked out
from the hub's state when someone asks.
Rule 2: durations (``Histogram``) are measured only when something reads
them (``timing``, switched on by ``prometheus.enabled``), so a node nobody
scrapes pays for no clock reads.
Rule 3: label sets are bounded: methods, codes and namespaces come from the
protocol and the configuration, never from what a client names.
Rule 4: messages written to clients are counted by transport and frame type
(``SentCounts``) without asking each subscriber of a broadcast its transport:
the counts of every transport together are added per batch, those of the
transports other than the WebSocket (few, and slow by nature) are added apart
as they go, and the WebSocket's are the difference.
"""

from __future__ import annotations

import bisect
import os
from collections import Counter
from typing import TYPE_CHECKING

from hubbub.hub.observer import Observer

if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo
    from hubbub.hub.delivery import Delivery
    from hubbub.hub.session import Session
    from hubbub.protocol import Received

#: Seconds: 100 µs to 10 s, the range of a command's or an API call's life.
DURATION_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Seconds: the buckets of Centrifugo's proxy histogram (Prometheus's defaults).
PROXY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


#: Centrifugo's frame types of what the server writes (its ``frame_type`` label);
#: a reply is labelled with its command's method.
PUSH_PUBLICATION = "push_publication"
PUSH_JOIN = "push_join"
PUSH_LEAVE = "push_leave"
PUSH_UNSUBSCRIBE = "push_unsubscribe"
PUSH_SUBSCRIBE = "push_subscribe"
PUSH_REFRESH = "push_refresh"
PUSH_DISCONNECT = "push_disconnect"
SERVER_PING = "server_ping"
#: The transport whose counts are the difference (Rule 4).
WEBSOCKET = "websocket"


class SentCounts:
    """Messages written to clients and their payload bytes (Rule 4)."""

    __slots__ = ("apart_bytes", "apart_messages", "bytes", "messages")

    def __init__(self) -> None:
        self.messages: Counter[str] = Counter()  # by frame type, every transport
        self.bytes: Counter[str] = Counter()
        # By (transport, frame type), for the transports other than the WebSocket:
        self.apart_messages: Counter[tuple[str, str]] = Counter()
        self.apart_bytes: Counter[tuple[str, str]] = Counter()

    def add(self, kind: str, messages: int, size: int) -> None:
        """``messages`` of frame type ``kind`` (``size`` bytes), whatever the transport."""
        self.messages[kind] += messages
        self.bytes[kind] += size

    def add_apart(self, transport: str, kind: str, messages: int, size: int) -> None:
        """The share of a transport other than the WebSocket in what ``add`` counts."""
        self.apart_messages[transport, kind] += messages
        self.apart_bytes[transport, kind] += size

    def by_transport(self) -> list[tuple[str, str, int, int]]:
        """(transport, frame type, messages, bytes), sorted."""
        websocket_messages = self.messages.copy()
        websocket_bytes = self.bytes.copy()
        rows = []
        for (transport, kind), n in self.apart_messages.items():
            size = self.apart_bytes[transport, kind]
            websocket_messages[kind] -= n
            websocket_bytes[kind] -= size
            rows.append((transport, kind, n, size))
        rows += [
            (WEBSOCKET, kind, n, websocket_bytes[kind])
            for kind, n in websocket_messages.items()
            if n > 0
        ]
        return sorted(rows)


class Histogram:
    """Counts of observations per bucket (upper bounds, seconds), their sum and count."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), the last bound being infinity."""
        total = 0
        result = []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            result.append((bound, total))
        return result

    def quantile(self, q: float) -> float:
        """An estimate of the ``q`` quantile: interpolated inside its bucket (NaN if empty)."""
        if not self.count:
            return float("nan")
        rank = q * self.count
        below = 0
        lower = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            if count and below + count >= rank:
                return lower + (bound - lower) * (rank - below) / count
            below += count
            lower = bound
        return self.bounds[-1]  # in the overflow bucket: its lower bound is all we know


class Counters(Observer):
    """The node's counters; an ``Observer`` of every connection and command."""

    def __init__(self) -> None:
        self.timing = False  # measure durations (Rule 2)
        self.connects: Counter[str] = Counter()  # by transport (Centrifugo's names)
        self.disconnects: Counter[tuple[int, bool]] = Counter()  # (code, by server)
        self.commands: Counter[str] = Counter()  # by method
        self.received: Counter[tuple[str, str]] = Counter()  # commands by (transport, method)
        self.reply_errors: Counter[tuple[str, int]] = Counter()  # (method, code)
        self.command_seconds: dict[str, Histogram] = {}
        self.frames_in = 0  # text frames received from clients
        self.bytes_in: Counter[str] = Counter()  # their bytes, by transport
        self.unsubscribes: Counter[int] = Counter()  # server-side, by code
        self.published: Counter[str] = Counter()  # publications to the engine, by namespace
        self.sent_joins: Counter[str] = Counter()  # joins to the engine, by namespace
        self.sent_leaves: Counter[str] = Counter()  # leaves to the engine, by namespace
        # From the engine (one each, whatever the number of subscribers):
        self.received_publications = 0
        self.received_joins = 0
        self.received_leaves = 0
        self.publish_seconds = Histogram()  # the engine's publish, when timing
        self.api_calls: Counter[str] = Counter()
        self.api_errors: Counter[tuple[str, int]] = Counter()
        self.api_seconds: dict[str, Histogram] = {}
        # Event proxy calls, by (protocol, type, name) as Centrifugo labels them:
        self.proxy_calls: Counter[tuple[str, str, str]] = Counter()
        self.proxy_errors: Counter[tuple[str, str, str]] = Counter()  # no usable answer
        self.proxy_inflight: Counter[tuple[str, str, str]] = Counter()
        self.proxy_seconds: dict[tuple[str, str, str], Histogram] = {}

    # --- Observer --------------------------------------------------------------------

    def connected(self, session: Session) -> None:
        self.connects[session.transport_name] += 1

    def disconnected(
        self, session: Session, disconnect: DisconnectInfo, *, by_server: bool, detail: str
    ) -> None:
        self.disconnects[disconnect.code, by_server] += 1

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        method = received.method
        self.commands[method] += 1
        self.received[session.transport_name, method] += 1
        if error:
            self.reply_errors[method, error] += 1
        if self.timing and seconds:
            histogram = self.command_seconds.get(method)
            if histogram is None:
                histogram = self.command_seconds[method] = Histogram()
            histogram.observe(seconds)

    # --- the other doors -------------------------------------------------------------

    def api_call(self, method: str, seconds: float, error: int) -> None:
        """A server API call (``HttpApi``) of ``method`` answered in ``seconds``."""
        self.api_calls[method] += 1
        if error:
            self.api_errors[method, error] += 1
        if self.timing:
            histogram = self.api_seconds.get(method)
            if histogram is None:
                histogram = self.api_seconds[method] = Histogram()
            histogram.observe(seconds)

    def proxy_started(self, key: tuple[str, str, str]) -> None:
        """A call of the event proxy ``key`` (protocol, type, name) is on its way."""
        self.proxy_inflight[key] += 1

    def proxy_done(self, key: tuple[str, str, str], seconds: float, failed: bool) -> None:
        """It ended after ``seconds``; ``failed``: the backend gave no usable answer.
        (Always timed: a clock read is nothing next to a call over the network.)"""
        self.proxy_inflight[key] -= 1
        self.proxy_calls[key] += 1
        if failed:
            self.proxy_errors[key] += 1
        histogram = self.proxy_seconds.get(key)
        if histogram is None:
            histogram = self.proxy_seconds[key] = Histogram(PROXY_BUCKETS)
        histogram.observe(seconds)


def node_metrics(
    counters: Counters, delivery: Delivery | None, engine_failures: int
) -> dict[str, float]:
    """The cumulative figures the ``info`` API reports per node (``metrics.items``);
    ``hubbub top`` turns two readings into rates."""
    written = (0, 0, 0, 0)
    if delivery is not None:
        written = (
            delivery.stats_messages,
            delivery.stats_shared_messages,
            delivery.stats_bytes,
            delivery.stats_shared_bytes,
        )
    return {
        "client.commands": float(sum(counters.commands.values())),
        "client.reply_errors": float(sum(counters.reply_errors.values())),
        "client.frames_in": float(counters.frames_in),
        "client.bytes_in": float(sum(counters.bytes_in.values())),
        "client.messages_out": float(written[0] + written[1]),
        "client.publications_out": float(written[1]),
        "client.bytes_out": float(written[2] + written[3]),
        "client.connects": float(sum(counters.connects.values())),
        "client.server_disconnects": float(
            sum(n for (_, by_server), n in counters.disconnects.items() if by_server)
        ),
        "node.publications_published": float(sum(counters.published.values())),
        "node.publications_received": float(counters.received_publications),
        "api.calls": float(sum(counters.api_calls.values())),
        "engine.failures": float(engine_failures),
    }


def process_usage() -> dict[str, float]:
    """This process's CPU time (seconds) and resident memory (bytes), as the ``info``
    API's ``process`` (Linux; zeros elsewhere)."""
    cpu = sum(os.times()[:2])
    rss = 0
    try:
        with open("/proc/self/statm", "rb") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu_seconds": cpu, "rss": float(rss)}
