"""The hub: a hubbub node's facade. Sessions, the engine's events, and the application API.

Rule 1: the hub is the engine's EventHandler; every publication, including the
node's own, reaches subscribers through ``handle_publication`` and the channel
table (hub/channels.py), encoded once.
Rule 2: the rooms behind the facade each keep one rule: the subscription
lifecycle (hub/lifecycle.py: joining -> live -> gone, one teardown),
positioning and recovery (hub/recovery.py, pure), deadlines
(hub/heartbeat.py), the outboxes and flush (hub/delivery.py), and the client
commands (hub/commands.py). The application API below (maps: hub/state_api.py)
goes through the same rooms as the client protocol, never around them.
Rule 3: hub state has one owner, the event loop: no locks, no threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from hubbub.auth.channels import Channel, ChannelRules
from hubbub.auth.tokens import TokenVerifier
from hubbub.codes import Disconnect, DisconnectInfo, Error, Unsubscribe
from hubbub.config.model import Config, TokenConfig
from hubbub.engines.base import (
    Engine,
    EpochMismatch,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PublishResult,
)
from hubbub.engines.factory import engine_from_config, map_engine_from_config
from hubbub.engines.maps import MapEngine
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub.channels import ChannelTable
from hubbub.hub.commands import Commands, ttl_until
from hubbub.hub.control import Control
from hubbub.hub.counters import (
    PUSH_REFRESH,
    PUSH_SUBSCRIBE,
    Counters,
    node_metrics,
    process_usage,
)
from hubbub.hub.decisions import Decisions
from hubbub.hub.delivery import Delivery
from hubbub.hub.deltas import without_flags
from hubbub.hub.emulation import Emulation
from hubbub.hub.eventlog import EventLog
from hubbub.hub.heartbeat import Heartbeat
from hubbub.hub.hooks import HookDecorators, Hooks
from hubbub.hub.ids import IdSource
from hubbub.hub.lifecycle import Lifecycle
from hubbub.hub.map_flow import MapFlows
from hubbub.hub.maps import Maps
from hubbub.hub.observer import Observers
from hubbub.hub.outages import Outages
from hubbub.hub.payloads import check_data, data_format, to_payload, to_raw
from hubbub.hub.polls import Polls
from hubbub.hub.session import Session, SubscriptionGone
from hubbub.hub.state_api import StateApi
from hubbub.hub.timers import TimerWheel
from hubbub.hub.tracing import Tracer, publication_frame
from hubbub.hub.transport import Transport
from hubbub.protocol.codec import JSON, Codec
from hubbub.protocol.messages import (
    ClientInfo,
    Join,
    Leave,
    Publication,
    Push,
    RefreshPush,
    StreamPosition,
    SubscribePush,
    SubscribeRequest,
)
from hubbub.version import __version__
from hubbub.webhooks import Webhooks

log = logging.getLogger("hubbub.hub")


class Hub(StateApi, HookDecorators):
    """A hubbub node: create it, register hooks, ``await start()``, attach transports."""

    def __init__(
        self,
        config: Config | None = None,
        *,
        engine: Engine | None = None,
        map_engine: MapEngine | None = None,
    ) -> None:
        self.config = config or Config()
        # The engines the configuration names (engine.*, broker.*, map_broker.*), unless
        # given: an embedded hub must not fall back to memory when the config says Redis.
        self.engine: Engine = engine if engine is not None else engine_from_config(self.config)
        self.map_engine: MapEngine = (
            map_engine if map_engine is not None else map_engine_from_config(self.config)
        )
        self.hooks = Hooks()
        self._ids = IdSource()  # client ids (and this node's)
        self.node_id = self._ids.new()[:12]
        self.channel_rules = ChannelRules(self.config.channel)
        self.tokens = TokenVerifier(self.config.client.token)
        sub_cfg = self.config.client.subscription_token  # the same keys as client.token
        keys = {name: getattr(sub_cfg, name) for name in TokenConfig.__struct_fields__}
        self.subscription_tokens = (
            TokenVerifier(TokenConfig(**keys)) if sub_cfg.enabled else self.tokens
        )
        self.timers = TimerWheel()
        self.outages = Outages()
        # Logs, metrics and live traces see connections through these (observer.py).
        self.observers = Observers()
        self.counters = Counters()  # what info, hubbub top and /metrics report
        self.observers.add(self.counters)
        self.observers.add(EventLog())
        self.channels = ChannelTable(lambda: self.delivery, self._insufficient)
        self.lifecycle = Lifecycle(self)
        self.heartbeat = Heartbeat(self)
        self.decisions = Decisions(self)  # issue 12: hooks and proxies decide client events
        self.webhooks = Webhooks(self.config)  # issue 12: signed webhooks (when enabled)
        self.commands = Commands(self)
        self.maps = Maps(self, self.map_engine)
        self.map_flow = MapFlows(self)
        self.polls = Polls(self)
        self.control = Control(self)  # server API actions and node info across nodes
        self.tracer = self.control.tracing = Tracer(self)  # live traces, on every node
        self._delivery: Delivery | None = None
        self._sessions: dict[str, Session] = {}  # every open session, connected or not
        # Sessions whose commands come over /emulation requests, by session id.
        self.emulated: dict[str, Session] = {}
        self.emulation = Emulation(self)  # /emulation requests, routed to the session's node
        self._users: dict[str, set[Session]] = {}  # connected sessions by user
        self._background: set[asyncio.Task[Any]] = set()
        self._started_at = 0.0
        self.closing = False  # close() has begun: every session is being sent away
        # The process ends right after close() (``hubbub serve``; set by server.run):
        # see close().
        self.exit_after_close = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start the engine and the timers, inside the running loop; a start that
        failed (the engine's backend unreachable) is undone and may be tried again."""
        if self._delivery is not None:
            return
        loop = asyncio.get_running_loop()
        self._delivery = Delivery(loop, limit=self.config.client.queue_max_size, on_slow=self._slow)
        self._started_at = time.time()
        try:
            await self.engine.start(self)
            await self.map_engine.start(self)
            self.control.start()
            self.timers.start()
            await self.webhooks.start(self.node_id)
        except BaseException:
            await self.timers.stop()
            with contextlib.suppress(Exception):
                await self.control.close()
            with contextlib.suppress(Exception):
                await self.map_engine.close()
            with contextlib.suppress(Exception):
                await self.engine.close()
            self._delivery = None
            self._started_at = 0.0
            raise

    async def close(self, disconnect: DisconnectInfo = Disconnect.SHUTDOWN) -> None:
        """Disconnect every client (3001 by default: they reconnect elsewhere) and stop.

        When the process ends right after (``exit_after_close``) and the clients'
        close frames are not waited for (``shutdown.close_timeout`` 0), a session
        whose end nobody outside this process hears of gets its pending output and
        close frame only: the rest of its teardown updates state that dies with the
        process, and the exit closes its socket (5,000 clients: ~0.1 s less before a
        restarted node can listen).
        """
        self.closing = True
        brief = self.sockets_left_to_exit
        for session in list(self._sessions.values()):
            session.close(disconnect, forget=not (brief and self.lifecycle.ends_unheard(session)))
        await self.polls.close()
        self.tracer.close()
        await self.wait_idle()
        await self.webhooks.close()
        await self.decisions.close()
        await self.timers.stop()
        await self.control.close()
        await self.map_engine.close()
        await self.engine.close()

    @property
    def sockets_left_to_exit(self) -> bool:
        """``close()`` has begun, the process ends right after it and the clients'
        close frames are not waited for: the exit closes the sockets left open."""
        return self.closing and self.exit_after_close and self.config.shutdown.close_timeout <= 0

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

    # --- sessions --------------------------------------------------------------------

    def open_session(
        self,
        transport: Transport,
        *,
        codec: Codec = JSON,
        emulation: bool = False,
        unidirectional: bool = False,
    ) -> Session:
        """A new connection: it must send connect within ``client.stale_close_delay``.

        ``codec``: the protocol it speaks; ``emulation``: its commands come over
        ``/emulation`` requests; ``unidirectional``: it sends no commands at all.
        """
        session = Session(
            self,
            self._ids.new(),
            transport,
            codec=codec,
            emulation=emulation,
            unidirectional=unidirectional,
        )
        if self.closing:
            session.close(Disconnect.SHUTDOWN)
            return session
        self._sessions[session.client_id] = session
        if emulation:
            self.emulated[session.session_id] = session
        self.heartbeat.watch_stale(session)
        return session

    def accept_session(self, session: Session) -> None:
        """Connect authenticated the client: count it for its user, start its deadlines.

        ``withdraw_session`` undoes this when the connect fails afterwards.
        """
        if session.closed:
            raise SubscriptionGone("session closed during connect")
        limit = self.config.client.user_connection_limit
        if limit and session.user and len(self._users.get(session.user, ())) >= limit:
            raise DisconnectRequest(Disconnect.CONNECTION_LIMIT)
        self._users.setdefault(session.user, set()).add(session)
        self.heartbeat.start(session)
        self.observers.connected(session)

    def withdraw_session(self, session: Session) -> None:
        """A connect failed after ``accept_session``: back to waiting for a connect."""
        self._forget_user(session)
        if not session.closed:
            self.heartbeat.watch_stale(session)

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
        self.observers.disconnected(session, disconnect, by_server=by_server, detail=detail)
        if session.emulation:
            self.emulated.pop(session.session_id, None)
        if session in self._users.get(session.user, ()):  # it was connected (issue 12)
            self.webhooks.disconnected(
                session.client_id, session.user, disconnect.code, disconnect.reason
            )
        self._forget_user(session)
        self.heartbeat.stop(session)
        self.lifecycle.end_session(session, disconnect)

    def _forget_user(self, session: Session) -> None:
        users = self._users.get(session.user)
        if users is not None:
            users.discard(session)
            if not users:
                del self._users[session.user]

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run background work tied to the hub; failures are logged, never lost."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def _slow(self, session: Session) -> None:
        detail = f"pending output over client.queue_max_size ({self.delivery.limit} bytes)"
        session.close(Disconnect.SLOW, flush=False, detail=detail)

    # --- engine events (EventHandler) ------------------------------------------------

    def handle_publication(
        self, channel: str, publication: Publication, position: StreamPosition
    ) -> None:
        self.counters.received_publications += 1
        traced = self.observers.traced_channels
        if traced and channel in traced:  # an admin traces it (empty while nobody does)
            frame = publication_frame(channel, publication)  # binary data as b64data
            self.observers.channel_event(channel, "publication", frame)
        self.channels.publication(channel, publication, position)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.counters.received_joins += 1
        push = Push(channel=channel, join=Join(info))
        if channel in self.observers.traced_channels:
            self.observers.channel_event(channel, "join", JSON.push(push))
        self.channels.join_leave(channel, push)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.counters.received_leaves += 1
        push = Push(channel=channel, leave=Leave(info))
        if channel in self.observers.traced_channels:
            self.observers.channel_event(channel, "leave", JSON.push(push))
        self.channels.join_leave(channel, push)

    def handle_control(self, data: bytes) -> None:
        self.control.handle(data)

    def handle_broker_lost(self, channels: Iterable[str]) -> None:
        """Events of ``channels`` may be lost: every subscriber must recover."""
        self.channels.broker_lost(channels)

    def _insufficient(self, subscription: Any) -> None:
        self.lifecycle.insufficient(subscription)

    # --- application API -------------------------------------------------------------

    def history_options(self, channel: Channel) -> HistoryOptions:
        opts = channel.options
        return HistoryOptions(
            size=opts.history_size,
            ttl=opts.history_ttl,
            meta_ttl=opts.history_meta_ttl or self.config.channel.history_meta_ttl,
        )

    async def publish_publication(
        self,
        channel: Channel,
        publication: Publication,
        *,
        skip_history: bool = False,
        idempotency_key: str = "",
    ) -> PublishResult:
        if channel.options.subscription_type != "stream":
            # A keyless publication would reach map and shared poll subscribers as garbage.
            raise ClientError(Error.BAD_REQUEST, "not a stream channel (map_publish for maps)")
        history = HistoryOptions() if skip_history else self.history_options(channel)
        if channel.options.delta_publish and not publication.delta:
            # Published as a delta: stored with the flag, so that every node patches it.
            publication = msgspec.structs.replace(publication, delta=True)
        counters = self.counters
        counters.published[channel.namespace] += 1
        if not counters.timing:
            return await self.engine.publish(
                channel.name, publication, history, idempotency_key=idempotency_key
            )
        started = time.perf_counter()
        result = await self.engine.publish(
            channel.name, publication, history, idempotency_key=idempotency_key
        )
        counters.publish_seconds.observe(time.perf_counter() - started)
        return result

    async def publish(
        self,
        channel: str,
        data: Any,
        *,
        tags: dict[str, str] | None = None,
        skip_history: bool = False,
        idempotency_key: str = "",
        delta: bool = False,
    ) -> StreamPosition:
        """Publish ``data`` (any JSON value, msgspec.Raw, or bytes: binary) to ``channel``
        from app code (``publication_data_format`` applies: 107); ``delta``: delta
        subscribers may get it as a patch."""
        resolved = self.channel_rules.resolve(channel)
        payload = to_payload(data) or msgspec.Raw(b"null")
        check_data(data_format(self.config, resolved.options), payload)
        publication = Publication(data=payload, tags=tags or None, delta=delta)
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
            page = await self.engine.history(
                channel, HistoryQuery(since, limit, reverse), self.history_options(resolved)
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc
        if page.publications:  # how a publication was published is not shown (deltas.py)
            page = HistoryPage(without_flags(page.publications), page.position)
        return page

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
        return [s for s in self._users.get(user, ()) if s.connected]

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
            self.heartbeat.watch_expiry(session)
            ttl = ttl_until(expire_at) if expire_at else 0
            session.push(Push(refresh=RefreshPush(bool(expire_at), ttl)), PUSH_REFRESH)

    def unsubscribe_user(self, user: str, channel: str, *, client: str = "") -> None:
        """Server-side unsubscribe: the client gets an ``unsubscribe`` push (2000)."""
        for session in self.sessions_of(user, client):
            subscription = session.subscriptions.get(channel)
            if subscription is not None:
                self.lifecycle.unsubscribe(subscription, Unsubscribe.SERVER)

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
        if resolved.options.subscription_type != "stream":
            raise ClientError(
                Error.BAD_REQUEST, "map and shared poll subscriptions are the client's"
            )
        request = SubscribeRequest(channel=channel)
        if recover_since is not None:
            request.recover = True
            request.offset = recover_since.offset
            request.epoch = recover_since.epoch
        push_join_leave = resolved.options.force_push_join_leave
        for session in self.sessions_of(user, client):
            if channel in session.subscriptions:
                continue
            try:
                subscription, result = await self.lifecycle.subscribe(
                    session,
                    resolved,
                    request,
                    chan_info=to_raw(info),
                    server_side=True,
                    push_join_leave=push_join_leave,
                )
            except SubscriptionGone:
                continue  # the client went away meanwhile
            push = SubscribePush(
                recoverable=result.recoverable,
                epoch=result.epoch,
                offset=result.offset,
                positioned=result.positioned,
                data=to_payload(data) or SubscribePush().data,
            )
            session.push(Push(channel=channel, subscribe=push), PUSH_SUBSCRIBE)
            # The subscribe push has no room for publications: what was recovered
            # since ``recover_since`` follows as ordinary publication pushes.
            for publication in result.publications or ():
                session.push_publication(channel, publication)
            joined = self.lifecycle.go_live(subscription)
            if joined is not None:
                await joined

    def channel_counts(self) -> dict[str, int]:
        """Channels with local subscribers and how many."""
        return self.channels.counts()

    def stats(self) -> dict[str, Any]:
        """This node's figures, as the ``info`` API reports them."""
        return {
            "uid": self.node_id,
            "name": self.node_id,
            "version": __version__,
            "num_clients": sum(1 for s in self._sessions.values() if s.connected),
            "num_users": len(self._users),
            "num_channels": len(self.channels.entries),
            "num_subs": sum(len(s.subscriptions) for s in self._sessions.values()),
            "uptime": int(time.time() - self._started_at) if self._started_at else 0,
            # As Centrifugo's node info; the items are cumulative (interval 0: read now).
            "metrics": {
                "interval": 0,
                "items": node_metrics(self.counters, self._delivery, self.outages.failures),
            },
            "process": process_usage(),
        }

    @property
    def sessions(self) -> dict[str, Session]:
        return self._sessions
