"""One client connection inside the hub: its identity, subscriptions and lifecycle.

Rule 1: a session runs its commands one at a time, in the order they arrived
(the one exception, publishes overlapping on a pipelined engine with replies
still in arrival order, is hub/inflight.py); each command's outcome is decided
in ``_run`` alone and is exactly one of: a reply (the handler's ``Answer``,
queued here), an error reply (ClientError, or error 100 for anything
unexpected), a close (DisconnectRequest), or nothing
(``send``, or a session that closed meanwhile). Handlers never write replies,
so a command cannot be answered twice.
Rule 2: what must follow a reply in the same loop turn (a subscription going
live) is the Answer's ``then``, run right after the reply is queued; what it
returns to await (announcing the join) is awaited before the next command,
and its failure is logged, never answered (the command was answered).
Rule 3: a closed session holds no reference back to its transport and no
timer, so it is freed when its last task ends, not by the cycle collector.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from hubbub.auth.channels import Channel
from hubbub.codes import Disconnect, DisconnectInfo, Error, ErrorInfo, UnsubscribeInfo
from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError, DisconnectRequest, HubbubError
from hubbub.hub.counters import PUSH_PUBLICATION, SERVER_PING, WEBSOCKET
from hubbub.hub.inflight import InFlight, held_output
from hubbub.hub.limits import CommandRate
from hubbub.hub.timers import Timer
from hubbub.hub.transport import Shared, Transport
from hubbub.protocol import ClientProtocol, ProtocolViolation, Received, State
from hubbub.protocol.codec import JSON, Codec
from hubbub.protocol.messages import NO_DATA, ClientInfo, Publication, Push, Result
from hubbub.protocol.payload import NotJSON

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub
    from hubbub.hub.map_flow import MapFlow
    from hubbub.hub.map_presence import MapMembership

log = logging.getLogger("hubbub.session")


class SubState(enum.Enum):
    """Where a (session, channel) pair is in its life; it only moves down this list."""

    JOINING = "joining"  # subscribe in progress: publications are buffered, no reply yet
    LIVE = "live"  # the reply is queued; publications are delivered
    GONE = "gone"  # torn down (failure, unsubscribe, close): nothing is delivered


class Subscription(msgspec.Struct, eq=False):
    """A session's subscription to one channel."""

    session: Session
    channel: Channel
    chan_info: msgspec.Raw | None = None
    recoverable: bool = False
    positioned: bool = False
    push_join_leave: bool = False
    server_side: bool = False
    delta: bool = False  # delta compression agreed (hub/deltas.py)
    delta_ready: bool = False  # it holds a payload sent live: the next may be a patch
    expire_at: float = 0.0  # unix seconds; 0: no expiry (subscription token exp)
    state: SubState = SubState.JOINING
    epoch: str = ""  # the stream epoch the subscribe reply gave
    live_from: int = 0  # publications up to this offset went out with the subscribe reply
    presence_added: bool = False  # a presence entry was written: the teardown removes it
    announced: bool = False  # a join was published: the teardown publishes the leave
    expiry: Timer | None = None  # the subscription token's expiry check
    # An API unsubscribe that came while joining: applied right after the reply.
    unsubscribe_when_live: UnsubscribeInfo | None = None
    # Map presence entries (and the map key to remove) that live with it.
    extras: MapMembership | None = None

    @property
    def name(self) -> str:
        return self.channel.name


class SubscriptionGone(HubbubError):
    """The subscription (or its session) ended while a command waited for it."""


class Answer(msgspec.Struct):
    """A handler's successful outcome: the reply, and what follows it in the same turn."""

    method: str
    result: Result
    then: Callable[[], Awaitable[None] | None] | None = None


class _ClosedTransport:
    """What a closed session's transport becomes: nothing to write to, nothing held."""

    remote = ""

    @property
    def headers(self) -> dict[str, str]:
        return {}

    def write(self, payload: bytes) -> None:
        return None

    def write_shared(self, shared: Shared) -> int:
        return 0

    def buffered(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        return None


CLOSED_TRANSPORT: Transport = _ClosedTransport()


class Session:
    """A connected (or connecting) client."""

    __slots__ = (
        "client_id",
        "closed",
        "codec",
        "conn_info",
        "emulation",
        "expire_at",
        "expiry_timer",
        "heartbeat_timer",
        "hub",
        "inflight",
        "leaving",
        "map_flows",
        "meta",
        "name",
        "protocol",
        "rate",
        "remote",
        "session_id",
        "subscriptions",
        "transport",
        "transport_apart",
        "transport_name",
        "unidirectional",
        "user",
        "version",
    )

    def __init__(
        self,
        hub: Hub,
        client_id: str,
        transport: Transport,
        *,
        codec: Codec = JSON,
        emulation: bool = False,
        unidirectional: bool = False,
    ) -> None:
        self.hub = hub
        self.client_id = client_id
        self.transport = transport
        self.remote = transport.remote  # kept after close, for logs and hooks
        # Centrifugo's name of the transport (metrics, admin), kept after close; the
        # WebSocket's messages are counted per batch, the others' apart (counters Rule 4).
        self.transport_name: str = getattr(transport, "transport_name", WEBSOCKET)
        self.transport_apart = self.transport_name != WEBSOCKET
        self.codec = codec  # how everything sent to this client is encoded
        # Commands come over separate HTTP requests (/emulation): the connect result
        # carries ``session`` and ``node`` so that they find this session.
        self.emulation = emulation
        # The client sends no commands (uni_* transports): pushes only, no pongs.
        self.unidirectional = unidirectional
        # Emulation requests name their session by this (a secret: the client id is
        # shown to others in presence and publication info); "" for WebSockets.
        self.session_id = uuid.uuid4().hex if emulation or unidirectional else ""
        self.protocol = ClientProtocol(codec)
        self.user = ""
        self.conn_info: msgspec.Raw | None = None
        self.meta: msgspec.Raw | None = None
        self.name = ""
        self.version = ""
        self.expire_at = 0.0  # unix seconds; 0: the connection never expires
        self.subscriptions: dict[str, Subscription] = {}  # joining and live, by channel name
        # Teardowns still running (presence removal, leave), by channel: a new subscription
        # of the same channel waits for its predecessor's (the entries share a key).
        self.leaving: dict[str, list[asyncio.Task[None]]] | None = None
        # Map subscribes between their first page and live (hub/maps.py), by channel.
        self.map_flows: dict[str, MapFlow] | None = None
        self.closed = False
        self.inflight: InFlight | None = None  # publishes in flight together (made on use)
        self.heartbeat_timer: Timer | None = None  # stale check, then ping/pong
        self.expiry_timer: Timer | None = None  # the connection token's expiry check
        limits = hub.config.client
        self.rate = (
            CommandRate(limits.command_rate_limit, limits.command_rate_burst)
            if limits.command_rate_limit > 0
            else None
        )

    @property
    def connected(self) -> bool:
        return self.protocol.state is State.CONNECTED

    def client_info(self, chan_info: msgspec.Raw | None = None) -> ClientInfo:
        return ClientInfo(
            user=self.user,
            client=self.client_id,
            conn_info=self.conn_info or NO_DATA,
            chan_info=chan_info or NO_DATA,
        )

    # --- input -----------------------------------------------------------------------

    async def handle_frame(self, frame: bytes | str) -> None:
        """Run every command of a received text frame, in order."""
        counters = self.hub.counters
        counters.frames_in += 1
        counters.bytes_in[self.transport_name] += len(frame)
        try:
            commands = self.protocol.receive_frame(frame)
        except ProtocolViolation as exc:
            self.close(exc.disconnect, detail=exc.detail)  # the disconnect's one log line
            return
        rate = self.rate
        for received in commands:
            if self.closed:
                return
            if rate is not None and not rate.take():
                if rate.exhausted:
                    detail = "commands refused in a row past client.command_rate_burst"
                    self.close(Disconnect.TOO_MANY_REQUESTS, detail=detail)
                    return
                if received.command.id:
                    if self.inflight:
                        await self.inflight.drain()  # replies in arrival order
                    error = self.codec.error(received.command.id, Error.TOO_MANY_REQUESTS)
                    self.send(error, received.method)
                self.hub.observers.command_done(self, received, 0.0, Error.TOO_MANY_REQUESTS.code)
                if received.method == "connect":
                    self.protocol.reject_connect()
                    return
                continue
            # --- overlapping publishes (hub/inflight.py): the one exception to Rule 1's
            # "one at a time"; anything else first waits for them.
            if received.method == "publish" and self._may_overlap():
                if self.inflight is None:
                    self.inflight = InFlight()
                await self.inflight.start(self, functools.partial(self._run, received))
                continue
            if self.inflight:
                await self.inflight.drain()
            # ---
            await self._run(received)
            if received.method == "connect" and not self.connected:
                # The connect failed: what followed it in the frame has no connection.
                return

    def _may_overlap(self) -> bool:
        hub = self.hub
        # No publish hook or proxy: their awaits could reorder a connection's publishes.
        return hub.engine.pipelined and hub.hooks.publish is None and not hub.decisions.proxies.any

    async def _run(self, received: Received) -> None:
        """Run one command and give it its one outcome (Rule 1)."""
        command_id = received.command.id
        method = received.method
        started = time.perf_counter()
        try:
            answer = await self.hub.commands.run(self, received)
        except ClientError as exc:
            self._refused(method, command_id, exc.error)
            self._done(received, started, exc.error.code)
            return
        except DisconnectRequest as exc:
            self.close(exc.disconnect, detail=exc.detail)
            self._done(received, started, exc.disconnect.code)
            return
        except SubscriptionGone:
            self._refused(method, command_id, Error.INTERNAL)  # nothing is sent once closed
            self._done(received, started, Error.INTERNAL.code)
            return
        except EngineUnavailable as exc:
            self.hub.outages.failed(f"{method} of client {self.client_id}", exc)
            self._refused(method, command_id, Error.INTERNAL)
            self._done(received, started, Error.INTERNAL.code)
            return
        except Exception:
            log.exception("client %s: %s failed", self.client_id, method)
            self._refused(method, command_id, Error.INTERNAL)
            self._done(received, started, Error.INTERNAL.code)
            return
        if answer is None:
            self._done(received, started, 0)
            return
        if command_id:
            try:
                reply = self.codec.reply(command_id, answer.method, answer.result)
            except NotJSON as exc:
                self._cannot_read(f"{method} reply", exc)
                self._done(received, started, Disconnect.INAPPROPRIATE_PROTOCOL.code)
                return
            self.send(reply, method)
        self._done(received, started, 0)
        if answer.then is not None:
            follow_up = answer.then()
            if follow_up is not None:
                await self._follow_up(method, follow_up)

    async def _follow_up(self, method: str, work: Awaitable[None]) -> None:
        """Work after the reply (Rule 2): a failure is logged; the reply stands."""
        try:
            await work
        except EngineUnavailable as exc:
            self.hub.outages.failed(f"{method} of client {self.client_id}", exc)
        except Exception:
            log.exception("client %s: after %s", self.client_id, method)

    def _done(self, received: Received, started: float, error: int) -> None:
        """Tell the observers (logs, metrics, traces): answered, in that long, with ``error``
        (a reply error code, a disconnect code, or 0)."""
        self.hub.observers.command_done(self, received, time.perf_counter() - started, error)

    def _refused(self, method: str, command_id: int, error: ErrorInfo) -> None:
        if method == "connect":
            self.protocol.reject_connect()
            if self.unidirectional:
                # Such a client reads pushes only, never an error reply: as in
                # Centrifugo, a refused connect closes it with 3004.
                log.info("client %s: connect refused: %s", self.client_id, error.message)
                self.close(Disconnect.SERVER_ERROR)
                return
        if command_id:
            self.send(self.codec.error(command_id, error), method)

    # --- output ----------------------------------------------------------------------

    def send(self, data: bytes, kind: str, *, batched: bool = False) -> None:
        """Queue an encoded reply or push (``kind``: its frame type for the metrics, the
        method for a reply); it goes out with this loop turn's flush. ``batched``: the
        caller counts it with the rest of a broadcast (``Delivery.send``)."""
        if not self.closed:
            held = held_output(self)  # a publish in flight: its reply waits its turn
            if held is not None:
                held.append((data, kind, batched))
                return
            self.hub.delivery.send(self, data, kind, batched=batched)

    def push(self, push: Push, kind: str) -> None:
        """Encode ``push`` (of frame type ``kind``) with this session's codec and queue it."""
        if not self.closed:
            try:
                data = self.codec.push(push)
            except NotJSON as exc:
                self._cannot_read(f"{kind} push", exc)
                return
            self.hub.delivery.send(self, data, kind)

    def push_publication(self, channel: str, publication: Publication) -> None:
        """Encode one publication push for this client alone and queue it."""
        if not self.closed:
            try:
                data = self.codec.publication_push(channel, publication)
            except NotJSON as exc:
                self._cannot_read(f"publication in {channel}", exc)
                return
            self.send(data, PUSH_PUBLICATION)

    def _cannot_read(self, what: str, exc: NotJSON) -> None:
        """A binary payload for a client that speaks JSON: close it with 3506, as
        Centrifugo does (protocol/payload.py Rule 2)."""
        self.close(Disconnect.INAPPROPRIATE_PROTOCOL, detail=f"{what}: {exc}")

    def ping(self) -> None:
        """Queue the server's ping."""
        self.send(self.codec.ping, SERVER_PING)

    def close(
        self,
        disconnect: DisconnectInfo,
        *,
        flush: bool = True,
        detail: str = "",
        forget: bool = True,
    ) -> None:
        """Close with ``disconnect``: pending output first (unless slow), then the close frame.

        ``detail`` says why, for the log line (a misbehaving client's offence);
        ``forget`` False: the hub keeps the session (a process that exits next,
        ``Hub.close``).
        """
        if self.closed:
            return
        self.protocol.close(disconnect)
        if flush:
            self.hub.delivery.flush_session(self)
        else:
            self.protocol.drop_output()
        self.closed = True
        transport, self.transport = self.transport, CLOSED_TRANSPORT
        transport.close(disconnect.code, disconnect.reason)
        if forget:
            self.hub.forget_session(self, disconnect, by_server=True, detail=detail)

    def transport_closed(
        self, disconnect: DisconnectInfo, *, by_server: bool = False, detail: str = ""
    ) -> None:
        """The peer went away (or the transport failed) without us closing.

        ``by_server``: the transport closed it for the peer's fault (a framing
        error, described by ``detail``).
        """
        if not self.closed:
            self.closed = True
            self.transport = CLOSED_TRANSPORT
            self.protocol.close(disconnect)
            self.protocol.drop_output()
            self.hub.forget_session(self, disconnect, by_server=by_server, detail=detail)
