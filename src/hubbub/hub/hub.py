"""The hub: sessions, channel subscribers, fan-out, and the application-facing API.

Rule 1: the hub is the engine's EventHandler; every publication, including the
node's own, reaches subscribers through ``handle_publication``, encoded once.
Rule 2: a new subscription is buffered ("joining") until its subscribe reply is
queued; then ``go_live`` sends what arrived meanwhile (minus what the reply
already carried) and moves it to the live set. So a subscriber never sees a
publication before its reply, and never misses or repeats one.
Rule 3: hub state has one owner, the event loop: no locks, no threads.
Rule 4: a positioned subscriber never misses a publication silently: when the
engine loses events (``handle_broker_lost``) or a channel's offsets jump (a gap
in one epoch, or a new epoch), its subscribers get unsubscribe 2500 and
resubscribe with recovery. The check costs one comparison per publication.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from hubbub.auth.channels import Channel, ChannelRules
from hubbub.auth.tokens import TokenVerifier
from hubbub.codes import Disconnect, DisconnectInfo, Error, Unsubscribe, UnsubscribeInfo
from hubbub.config.model import Config, TokenConfig
from hubbub.engines.base import (
    Engine,
    EngineUnavailable,
    EpochMismatch,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PublishResult,
)
from hubbub.engines.memory import MemoryEngine
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub.commands import Commands, to_raw, ttl_until
from hubbub.hub.delivery import Delivery
from hubbub.hub.eventlog import EventLog, OutageLog
from hubbub.hub.hooks import Hooks, UnsubscribeEvent, disconnect_event
from hubbub.hub.observer import Observers
from hubbub.hub.session import Session, Subscription
from hubbub.hub.timers import TimerWheel
from hubbub.hub.transport import Transport
from hubbub.protocol.codec import (
    PING_FRAME,
    encode_join_push,
    encode_leave_push,
    encode_publication_push,
    encode_refresh_push,
    encode_subscribe_push,
    encode_unsubscribe_push,
)
from hubbub.protocol.messages import (
    ClientInfo,
    Publication,
    StreamPosition,
    SubscribePush,
    SubscribeRequest,
    SubscribeResult,
)
from hubbub.version import __version__

log = logging.getLogger("hubbub.hub")

#: SubscribeRequest.flag bit: answer 112 instead of ``recovered: false``.
FLAG_REJECT_UNRECOVERED = 2
#: Presence entries expire unless refreshed (each ping refreshes them).
PRESENCE_TTL = 60.0
#: A pending offset in ``ChannelSubscribers.joining`` that marks lost events.
GAP = -1

_F = TypeVar("_F")


@dataclass(slots=True)
class ChannelSubscribers:
    """The local subscribers of one channel."""

    live: dict[Session, Subscription] = field(default_factory=dict)
    # Subscriptions whose reply is not queued yet: (offset, encoded push) received meanwhile;
    # offset GAP marks a loss: the subscription is dropped with 2500 once live.
    joining: dict[Session, list[tuple[int, bytes]]] = field(default_factory=dict)
    # The engine's subscribe for this channel (others joining meanwhile wait on it).
    ready: asyncio.Future[None] | None = None
    # The last stream position delivered (positioned channels), to detect gaps.
    epoch: str = ""
    offset: int = 0

    def __bool__(self) -> bool:
        return bool(self.live or self.joining)


class Hub:
    """A hubbub node: create it, register hooks, ``await start()``, attach transports."""

    def __init__(self, config: Config | None = None, *, engine: Engine | None = None) -> None:
        self.config = config or Config()
        self.engine: Engine = engine or MemoryEngine()
        self.hooks = Hooks()
        self.node_id = uuid.uuid4().hex[:12]
        self.channel_rules = ChannelRules(self.config.channel)
        self.tokens = TokenVerifier(self.config.client.token)
        sub_cfg = self.config.client.subscription_token
        self.subscription_tokens = (
            TokenVerifier(
                TokenConfig(
                    hmac_secret_key=sub_cfg.hmac_secret_key,
                    rsa_public_key=sub_cfg.rsa_public_key,
                    ecdsa_public_key=sub_cfg.ecdsa_public_key,
                    jwks_public_endpoint=sub_cfg.jwks_public_endpoint,
                    audience=sub_cfg.audience,
                    issuer=sub_cfg.issuer,
                )
            )
            if sub_cfg.enabled
            else self.tokens
        )
        self.commands = Commands(self)
        self.timers = TimerWheel()
        # Logs, metrics and live traces see connections through these (observer.py).
        self.observers = Observers()
        self.observers.add(EventLog())
        self.outages = OutageLog()  # engine failures: a few lines per outage
        self._delivery: Delivery | None = None
        self._sessions: dict[str, Session] = {}  # every open session, connected or not
        self._users: dict[str, set[Session]] = {}  # connected sessions by user
        self._subscribers: dict[str, ChannelSubscribers] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._started_at = 0.0
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine and the timers; call once, inside the running loop."""
        if self._delivery is not None:
            return
        loop = asyncio.get_running_loop()
        self._delivery = Delivery(loop, limit=self.config.client.queue_max_size, on_slow=self._slow)
        self._started_at = time.time()
        await self.engine.start(self)
        self.timers.start()

    async def close(self, disconnect: DisconnectInfo = Disconnect.SHUTDOWN) -> None:
        """Disconnect every client (3001 by default: they reconnect elsewhere) and stop."""
        self._closing = True
        for session in list(self._sessions.values()):
            session.close(disconnect)
        await self.wait_idle()
        await self.timers.stop()
        await self.engine.close()

    async def wait_idle(self) -> None:
        """Wait for background work (leave, presence removal, hooks) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def delivery(self) -> Delivery:
        if self._delivery is None:
            raise RuntimeError("Hub.start() was not awaited")
        return self._delivery

    # --- hooks (decorators) ----------------------------------------------------------

    def on_connect(self, fn: _F) -> _F:
        self.hooks.connect = fn  # type: ignore[assignment]
        return fn

    def on_subscribe(self, fn: _F) -> _F:
        self.hooks.subscribe = fn  # type: ignore[assignment]
        return fn

    def on_publish(self, fn: _F) -> _F:
        self.hooks.publish = fn  # type: ignore[assignment]
        return fn

    def on_rpc(self, fn: _F) -> _F:
        self.hooks.rpc = fn  # type: ignore[assignment]
        return fn

    def on_message(self, fn: _F) -> _F:
        self.hooks.message = fn  # type: ignore[assignment]
        return fn

    def on_unsubscribe(self, fn: _F) -> _F:
        self.hooks.unsubscribe = fn  # type: ignore[assignment]
        return fn

    def on_disconnect(self, fn: _F) -> _F:
        self.hooks.disconnect = fn  # type: ignore[assignment]
        return fn

    # --- sessions --------------------------------------------------------------------

    def open_session(self, transport: Transport) -> Session:
        """A new connection: it must send connect within ``client.stale_close_delay``."""
        session = Session(self, uuid.uuid4().hex, transport)
        if self._closing:
            session.close(Disconnect.SHUTDOWN)
            return session
        self._sessions[session.client_id] = session

        def close_if_stale() -> None:
            if not session.closed and not session.connected:
                session.close(Disconnect.STALE)

        self.timers.call_later(self.config.client.stale_close_delay, close_if_stale)
        return session

    def accept_session(self, session: Session) -> None:
        """Called by connect once the client is authenticated."""
        limit = self.config.client.user_connection_limit
        if limit and session.user and len(self._users.get(session.user, ())) >= limit:
            raise DisconnectRequest(Disconnect.CONNECTION_LIMIT)
        self._users.setdefault(session.user, set()).add(session)
        self._schedule_ping(session, first=True)
        self.schedule_expiry(session)
        self.observers.connected(session)

    def forget_session(
        self,
        session: Session,
        disconnect: DisconnectInfo,
        *,
        by_server: bool = False,
        detail: str = "",
    ) -> None:
        """Remove a closed session now; leave, presence and hooks follow in the background.

        ``by_server``: the server closed it (``detail`` says why, for the log).
        """
        if self._sessions.pop(session.client_id, None) is None:
            return
        users = self._users.get(session.user)
        if users is not None:
            users.discard(session)
            if not users:
                del self._users[session.user]
        self.observers.disconnected(session, disconnect, by_server=by_server, detail=detail)
        channels = list(session.subscriptions)
        for name in channels:
            self._detach(session, name)
        if channels or self.hooks.disconnect is not None:
            self.spawn(self._after_disconnect(session, channels, disconnect))

    async def _after_disconnect(
        self, session: Session, channels: list[str], disconnect: DisconnectInfo
    ) -> None:
        for name in channels:
            subscription = session.subscriptions.pop(name)
            await self._leave(session, subscription, server_side=True)
        if self.hooks.disconnect is not None:
            await self.hooks.disconnect(
                disconnect_event(session.client_id, session.user, disconnect)
            )

    def spawn(self, coro: Any) -> None:
        """Run background work tied to the hub; failures are logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, EngineUnavailable):
            self.outages.failed(getattr(task.get_coro(), "__name__", "background"), error)
        elif error is not None:
            log.error("background task failed", exc_info=error)

    def _slow(self, session: Session) -> None:
        detail = f"pending output over client.queue_max_size ({self.delivery.limit} bytes)"
        session.close(Disconnect.SLOW, flush=False, detail=detail)

    # --- heartbeat and expiry --------------------------------------------------------

    def _schedule_ping(self, session: Session, *, first: bool = False) -> None:
        interval = self.config.client.ping_interval
        if interval <= 0:
            return
        # The first ping comes at a random point of the first interval, so that
        # a burst of connections does not turn into a burst of pings forever.
        delay = random.uniform(interval / 2, interval) if first else interval
        self.timers.call_later(delay, lambda: self._ping(session))

    def _ping(self, session: Session) -> None:
        if session.closed:
            return
        if not session.protocol.ping():
            session.close(Disconnect.NO_PONG)
            return
        session.send(PING_FRAME)
        self.timers.call_later(self.config.client.pong_timeout, lambda: self._check_pong(session))
        self._schedule_ping(session)
        self._refresh_presence(session)

    def _check_pong(self, session: Session) -> None:
        if not session.closed and session.protocol.ping_outstanding:
            session.close(Disconnect.NO_PONG)

    def schedule_expiry(self, session: Session) -> None:
        """Close the session with 3005 if it is still expired after the grace period."""
        if not session.expire_at:
            return
        expire_at = session.expire_at

        def check() -> None:
            if session.closed or session.expire_at != expire_at:
                return  # refreshed: a newer check is scheduled
            session.close(Disconnect.EXPIRED)

        self._after_grace(expire_at, check)

    def schedule_subscription_expiry(self, session: Session, channel: str) -> None:
        """Unsubscribe with 2501 (the SDK resubscribes with a fresh token) if the
        subscription token is still expired after the grace period."""
        subscription = session.subscriptions.get(channel)
        if subscription is None or not subscription.expire_at:
            return
        expire_at = subscription.expire_at

        def check() -> None:
            current = session.subscriptions.get(channel)
            if session.closed or current is not subscription or current.expire_at != expire_at:
                return
            self.spawn(
                self.unsubscribe_session(
                    session, channel, server_side=True, push=Unsubscribe.EXPIRED
                )
            )

        self._after_grace(expire_at, check)

    def _after_grace(self, expire_at: float, check: Callable[[], None]) -> None:
        """Run ``check`` once ``expire_at`` (unix time) plus ``client.expired_close_delay``
        has passed: the grace a client has to refresh an expiring token."""
        delay = expire_at - time.time() + self.config.client.expired_close_delay
        self.timers.call_later(max(delay, 0.0), check)

    def _refresh_presence(self, session: Session) -> None:
        channels = [n for n, s in session.subscriptions.items() if s.channel.options.presence]
        if channels:
            self.spawn(self._add_presence(session, channels))

    async def _add_presence(self, session: Session, channels: list[str]) -> None:
        for name in channels:
            subscription = session.subscriptions.get(name)
            if subscription is not None:
                info = session.client_info(subscription.chan_info)
                await self.engine.add_presence(name, session.client_id, info, PRESENCE_TTL)

    # --- subscriptions ---------------------------------------------------------------

    def history_options(self, channel: Channel) -> HistoryOptions:
        opts = channel.options
        return HistoryOptions(
            size=opts.history_size,
            ttl=opts.history_ttl,
            meta_ttl=opts.history_meta_ttl or self.config.channel.history_meta_ttl,
        )

    async def subscribe_session(
        self,
        session: Session,
        channel: Channel,
        request: SubscribeRequest,
        *,
        chan_info: msgspec.Raw | None = None,
        expire_at: float = 0.0,
        server_side: bool = False,
    ) -> SubscribeResult:
        """Subscribe ``session`` (permissions already checked); it joins in the buffered
        state and the caller must queue the result, then call ``go_live``."""
        opts = channel.options
        recoverable = opts.history_enabled and (
            opts.force_recovery or (opts.allow_recovery and request.recoverable)
        )
        positioned = opts.history_enabled and (
            recoverable or opts.force_positioning or (opts.allow_positioning and request.positioned)
        )
        subscription = Subscription(
            channel=channel,
            chan_info=chan_info,
            recoverable=recoverable,
            positioned=positioned,
            push_join_leave=opts.force_push_join_leave or (opts.join_leave and request.join_leave),
            server_side=server_side,
            expire_at=expire_at,
        )
        name = channel.name
        session.subscriptions[name] = subscription
        subscribers = self._subscribers.get(name)
        first = subscribers is None
        if subscribers is None:
            subscribers = self._subscribers[name] = ChannelSubscribers()
            subscribers.ready = asyncio.get_running_loop().create_future()
        subscribers.joining[session] = []
        try:
            if first:
                # The first subscriber awaits the engine itself: with an engine that
                # answers at once (memory) this costs no extra loop turn, so a frame of
                # connect + subscribes is answered in one frame.
                await self._engine_subscribe(name, subscribers)
            elif subscribers.ready is not None and not subscribers.ready.done():
                await asyncio.shield(subscribers.ready)  # others wait for the same subscribe
            result = await self._position(name, channel, request, recoverable, positioned)
        except BaseException:
            session.subscriptions.pop(name, None)
            self._detach(session, name)
            raise
        result.expires, result.ttl = bool(expire_at), ttl_until(expire_at)
        subscription.live_from = result.offset
        if result.epoch and not subscribers.epoch:
            # No publication delivered here yet: the position just read is the
            # baseline, so a loss before the first delivered publication is seen.
            subscribers.epoch, subscribers.offset = result.epoch, result.offset
        if opts.presence:
            info = session.client_info(chan_info)
            await self.engine.add_presence(name, session.client_id, info, PRESENCE_TTL)
        return result

    async def _position(
        self,
        name: str,
        channel: Channel,
        request: SubscribeRequest,
        recoverable: bool,
        positioned: bool,
    ) -> SubscribeResult:
        """The stream position (and, when recovering, the missed publications)."""
        if not positioned:
            return SubscribeResult()
        history = self.history_options(channel)
        result = SubscribeResult(recoverable=recoverable, positioned=True)
        if recoverable and request.recover:
            result.was_recovering = True
            if channel.options.force_recovery_mode == "cache":
                page = await self._history_or_none(
                    name, HistoryQuery(limit=1, reverse=True), history
                )
                recovered = page is not None and bool(page.publications)
                if page is not None and recovered:
                    latest = page.publications[0]
                    if request.epoch != page.position.epoch or latest.offset > request.offset:
                        result.publications = [latest]
            else:
                since = StreamPosition(request.offset, request.epoch)
                limit = self.config.client.recovery_max_publication_limit
                query = HistoryQuery(since=since, limit=limit + 1)
                page = await self._history_or_none(name, query, history)
                recovered = page is not None and _complete(page, request.offset, limit)
                if page is not None and recovered:
                    result.publications = page.publications or None
            if recovered and page is not None:
                result.recovered = True
                result.epoch = page.position.epoch
                result.offset = page.position.offset
                return result
            if request.flag & FLAG_REJECT_UNRECOVERED:
                raise ClientError(Error.UNRECOVERABLE_POSITION)
        page = await self.engine.history(name, HistoryQuery(limit=0), history)
        result.epoch = page.position.epoch
        result.offset = page.position.offset
        return result

    async def _history_or_none(
        self, name: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage | None:
        try:
            return await self.engine.history(name, query, history)
        except EpochMismatch:
            return None

    async def go_live(self, session: Session, channel: str | None = None) -> None:
        """Move buffered subscriptions of ``session`` (one, or all) to live delivery,
        then announce the join (so the subscriber sees its own join too)."""
        names = [channel] if channel is not None else list(session.subscriptions)
        joined: list[Subscription] = []
        for name in names:
            subscribers = self._subscribers.get(name)
            subscription = session.subscriptions.get(name)
            if subscribers is None or subscription is None:
                continue
            pending = subscribers.joining.pop(session, None)
            if pending is None:
                continue
            if any(offset == GAP for offset, _ in pending):
                subscribers.joining[session] = pending
                self._drop_insufficient(session, name)
                continue
            for offset, frame in pending:
                if offset == 0 or offset > subscription.live_from:
                    session.send(frame)
            subscribers.live[session] = subscription
            self.delivery.joined(session, name)
            joined.append(subscription)
        for subscription in joined:
            if subscription.channel.options.join_leave:
                info = session.client_info(subscription.chan_info)
                await self.engine.publish_join(subscription.channel.name, info)

    async def unsubscribe_session(
        self,
        session: Session,
        name: str,
        *,
        server_side: bool,
        push: UnsubscribeInfo | None = None,
    ) -> None:
        """Remove a subscription; with ``push``, tell the client why."""
        subscription = session.subscriptions.pop(name, None)
        if subscription is None:
            return
        self._detach(session, name)
        if push is not None:
            session.send(encode_unsubscribe_push(name, push.code, push.reason))
        await self._leave(session, subscription, server_side=server_side)

    def _detach(self, session: Session, name: str) -> None:
        """Stop delivering ``name`` to ``session`` (synchronously)."""
        subscribers = self._subscribers.get(name)
        if subscribers is None:
            return
        if session in subscribers.live:
            self.delivery.take_share(session, name)  # publications queued before it left
            del subscribers.live[session]
        subscribers.joining.pop(session, None)
        if not subscribers:
            del self._subscribers[name]
            self.delivery.channel_gone(name)
            if subscribers.ready is not None and not subscribers.ready.done():
                subscribers.ready.add_done_callback(_consume_exception)
            self.spawn(self._engine_unsubscribe(name))

    async def _engine_subscribe(self, name: str, subscribers: ChannelSubscribers) -> None:
        """Subscribe the node to ``name``; settle ``subscribers.ready`` for the others."""
        ready = subscribers.ready
        assert ready is not None
        try:
            await self.engine.subscribe(name)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ConnectionError(exc))
                ready.add_done_callback(_consume_exception)
            raise
        if not ready.done():
            ready.set_result(None)

    async def _engine_unsubscribe(self, name: str) -> None:
        # A channel someone traces stays subscribed (the tracer lets go of it).
        if name not in self._subscribers and name not in self.observers.traced_channels:
            await self.engine.unsubscribe(name)

    async def _leave(
        self, session: Session, subscription: Subscription, *, server_side: bool
    ) -> None:
        name = subscription.channel.name
        opts = subscription.channel.options
        if opts.presence:
            await self.engine.remove_presence(name, session.client_id)
        if opts.join_leave:
            await self.engine.publish_leave(name, session.client_info(subscription.chan_info))
        if self.hooks.unsubscribe is not None:
            try:
                await self.hooks.unsubscribe(
                    UnsubscribeEvent(session.client_id, session.user, name, server_side)
                )
            except Exception:
                log.exception("on_unsubscribe hook failed")

    # --- engine events (EventHandler) ------------------------------------------------

    def handle_publication(
        self, channel: str, publication: Publication, position: StreamPosition
    ) -> None:
        traced = self.observers.traced_channels
        if traced and channel in traced:  # an admin traces it (empty while nobody does)
            frame = encode_publication_push(channel, publication)
            self.observers.channel_event(channel, "publication", frame)
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            return
        offset = position.offset
        if offset:
            if position.epoch == subscribers.epoch and offset <= subscribers.offset:
                # Published before the baseline read, delivered after it: live
                # subscribers already have it through their subscribe position.
                if subscribers.joining:
                    frame = encode_publication_push(channel, publication)
                    for pending in subscribers.joining.values():
                        pending.append((offset, frame))
                return
            if offset != subscribers.offset + 1 or position.epoch != subscribers.epoch:
                if subscribers.epoch:  # not the first publication seen: a gap
                    self._stream_gap(channel, subscribers)
                    subscribers = self._subscribers.get(channel)
                    if subscribers is None:
                        return
                subscribers.epoch = position.epoch
            subscribers.offset = offset
        frame = encode_publication_push(channel, publication)
        if subscribers.live:
            self.delivery.broadcast(channel, subscribers.live, frame)
        if subscribers.joining:
            for pending in subscribers.joining.values():
                pending.append((publication.offset, frame))

    def handle_broker_lost(self, channels: Iterable[str]) -> None:
        """Events of ``channels`` may be lost: every subscriber resubscribes (2500)."""
        affected = [name for name in channels if name in self._subscribers]
        if affected:  # one line for the whole loss, however many channels it hit
            count = sum(
                len(s.live) + len(s.joining) for s in map(self._subscribers.__getitem__, affected)
            )
            log.warning(
                "broker connection lost: %d subscribers of %d channels resubscribe (2500)",
                count,
                len(affected),
            )
        for name in affected:
            subscribers = self._subscribers.get(name)
            if subscribers is None:
                continue
            for pending in subscribers.joining.values():
                pending.append((GAP, b""))
            for session in list(subscribers.live):
                self._drop_insufficient(session, name)
            subscribers.epoch, subscribers.offset = "", 0

    def _stream_gap(self, channel: str, subscribers: ChannelSubscribers) -> None:
        """Offsets of ``channel`` jumped: its positioned subscribers resubscribe (2500)."""
        log.warning(
            "stream gap in %s after %s:%d: positioned subscribers resubscribe",
            channel,
            subscribers.epoch,
            subscribers.offset,
        )
        for pending in subscribers.joining.values():
            pending.append((GAP, b""))
        for session, subscription in list(subscribers.live.items()):
            if subscription.positioned:
                self._drop_insufficient(session, channel)

    def _drop_insufficient(self, session: Session, name: str) -> None:
        """Unsubscribe ``session`` from ``name`` with 2500 (the SDK resubscribes)."""
        subscription = session.subscriptions.pop(name, None)
        if subscription is None:
            return
        self._detach(session, name)
        info = Unsubscribe.INSUFFICIENT_STATE
        session.send(encode_unsubscribe_push(name, info.code, info.reason))
        self.spawn(self._leave(session, subscription, server_side=True))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        frame = encode_join_push(channel, info)
        if channel in self.observers.traced_channels:
            self.observers.channel_event(channel, "join", frame)
        self._push_join_leave(channel, frame)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        frame = encode_leave_push(channel, info)
        if channel in self.observers.traced_channels:
            self.observers.channel_event(channel, "leave", frame)
        self._push_join_leave(channel, frame)

    def _push_join_leave(self, channel: str, frame: bytes) -> None:
        subscribers = self._subscribers.get(channel)
        if subscribers is not None:
            wanting = [s for s, sub in subscribers.live.items() if sub.push_join_leave]
            self.delivery.fanout(wanting, frame)

    # --- application API -------------------------------------------------------------

    async def publish_publication(
        self,
        channel: Channel,
        publication: Publication,
        *,
        skip_history: bool = False,
        idempotency_key: str = "",
    ) -> PublishResult:
        history = HistoryOptions() if skip_history else self.history_options(channel)
        return await self.engine.publish(
            channel.name, publication, history, idempotency_key=idempotency_key
        )

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str = "",
    ) -> StreamPosition:
        """Publish ``data`` (any JSON value, or msgspec.Raw) to ``channel`` from app code."""
        resolved = self.channel_rules.resolve(channel)
        publication = Publication(data=to_raw(data) or msgspec.Raw(b"null"), tags=tags or None)
        result = await self.publish_publication(
            resolved, publication, skip_history=skip_history, idempotency_key=idempotency_key
        )
        return result.position

    async def history(
        self,
        channel: str,
        *,
        limit: int = 0,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> HistoryPage:
        """A page of ``channel``'s stream; 108 without history, 112 for a stale ``since``.

        ``limit`` is not capped here (application code may read it all); clients
        and the HTTP API pass it through ``client_history_limit``.
        """
        resolved = self.channel_rules.resolve(channel)
        if not resolved.options.history_enabled:
            raise ClientError(Error.NOT_AVAILABLE)
        try:
            return await self.engine.history(
                channel, HistoryQuery(since, limit, reverse), self.history_options(resolved)
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc

    def client_history_limit(self, requested: int) -> int:
        """A client's or the API's ``limit``: -1 and anything above the cap give the cap."""
        cap = self.config.client.history_max_publication_limit
        return cap if requested < 0 or requested > cap else requested

    def sessions_of(self, user: str, client: str = "") -> list[Session]:
        """Connected sessions of ``user`` (or just ``client`` if given)."""
        if client:
            session = self._sessions.get(client)
            if session is None or not session.connected or session.user != user:
                return []
            return [session]
        return list(self._users.get(user, ()))

    def disconnect_user(
        self,
        user: str,
        disconnect: DisconnectInfo,
        *,
        client: str = "",
        whitelist: Iterable[str] = (),
    ) -> int:
        """Close every session of ``user`` (or one ``client``) but the whitelisted ones."""
        keep = set(whitelist)
        sessions = [s for s in self.sessions_of(user, client) if s.client_id not in keep]
        for session in sessions:
            session.close(disconnect)
        return len(sessions)

    def refresh_user(
        self, user: str, *, client: str = "", expired: bool = False, expire_at: int = 0
    ) -> None:
        """Server-side refresh: expire the connections now, or move their expiry.

        ``expire_at`` 0 makes them never expire; the client gets a ``refresh`` push.
        """
        for session in self.sessions_of(user, client):
            if expired:
                session.close(Disconnect.EXPIRED)
                continue
            session.expire_at = float(expire_at)
            self.schedule_expiry(session)
            ttl = ttl_until(expire_at) if expire_at else 0
            session.send(encode_refresh_push(bool(expire_at), ttl))

    async def unsubscribe_user(self, user: str, channel: str, *, client: str = "") -> None:
        for session in self.sessions_of(user, client):
            await self.unsubscribe_session(
                session, channel, server_side=True, push=Unsubscribe.SERVER
            )

    async def subscribe_user(
        self,
        user: str,
        channel: str,
        *,
        client: str = "",
        info: Any = None,
        data: Any = None,
        recover_since: StreamPosition | None = None,
    ) -> None:
        """Server-side subscribe: the client gets a ``subscribe`` push."""
        resolved = self.channel_rules.resolve(channel)
        request = SubscribeRequest(channel=channel)
        if recover_since is not None:
            request.recover = True
            request.offset = recover_since.offset
            request.epoch = recover_since.epoch
        for session in self.sessions_of(user, client):
            if channel in session.subscriptions:
                continue
            result = await self.subscribe_session(
                session, resolved, request, chan_info=to_raw(info), server_side=True
            )
            push = SubscribePush(
                recoverable=result.recoverable,
                epoch=result.epoch,
                offset=result.offset,
                positioned=result.positioned,
                data=to_raw(data) or SubscribePush().data,
            )
            session.send(encode_subscribe_push(channel, push))
            # The subscribe push has no room for publications: what was recovered
            # since ``recover_since`` follows as ordinary publication pushes.
            for publication in result.publications or ():
                session.send(encode_publication_push(channel, publication))
            await self.go_live(session, channel)

    def channel_counts(self) -> dict[str, int]:
        """Channels with local subscribers and how many."""
        return {
            name: len(subs.live) + len(subs.joining) for name, subs in self._subscribers.items()
        }

    def stats(self) -> dict[str, Any]:
        """This node's figures, as the ``info`` API reports them."""
        return {
            "uid": self.node_id,
            "name": self.node_id,
            "version": __version__,
            "num_clients": sum(1 for s in self._sessions.values() if s.connected),
            "num_users": len(self._users),
            "num_channels": len(self._subscribers),
            "num_subs": sum(len(s.subscriptions) for s in self._sessions.values()),
            "uptime": int(time.time() - self._started_at) if self._started_at else 0,
        }

    @property
    def sessions(self) -> dict[str, Session]:
        return self._sessions


def _complete(page: HistoryPage, offset: int, limit: int) -> bool:
    """Whether ``page`` holds every publication after ``offset`` (never a partial recovery)."""
    top = page.position.offset
    if offset > top:
        return False
    missed = top - offset
    if missed == 0:
        return True
    publications = page.publications
    return missed <= limit and len(publications) == missed and publications[0].offset == offset + 1


def _consume_exception(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of an engine subscribe nobody waits for any more."""
    if not future.cancelled():
        future.exception()
