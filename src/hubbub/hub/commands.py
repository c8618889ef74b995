"""What each client command does: connect, subscribe, publish, history, rpc, ...

Rule 1: a handler checks, then acts, then RETURNS its ``Answer`` (or None for
``send``); it refuses by raising ClientError or DisconnectRequest. It never
writes a reply itself: ``Session._run`` queues the one reply of each command.
Rule 2: a handler that awaits re-checks afterwards what the await may have
changed (the session closed, the channel got subscribed meanwhile); the
subscription mechanics (joining, going live, teardown) are the lifecycle's
(hub/lifecycle.py), shared with the HTTP API.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec

from hubbub.auth.permissions import Action, Actor, Verdict, decide
from hubbub.auth.tokens import InvalidToken, SubscriptionClaims, TokenExpired
from hubbub.codes import Disconnect, Error
from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub.decisions import apply_override
from hubbub.hub.deltas import FOSSIL
from hubbub.hub.hooks import MessageEvent, SubscribeDecision, is_set
from hubbub.hub.payloads import check_data, data_format, from_payload, to_payload, to_raw
from hubbub.hub.session import Answer, Session, SubscriptionGone, SubState
from hubbub.protocol.messages import (
    NO_DATA,
    Command,
    ConnectResult,
    EmptyResult,
    HistoryResult,
    PresenceResult,
    PresenceStatsResult,
    RefreshResult,
    RPCResult,
    SubRefreshResult,
    SubscribeRequest,
    SubscribeResult,
)
from hubbub.protocol.messages import Publication as WirePublication
from hubbub.protocol.payload import Payload
from hubbub.version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from hubbub.auth.channels import Channel
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Subscription
    from hubbub.protocol import Received

log = logging.getLogger("hubbub.commands")

VERSION = __version__


class SubscribeGrant(msgspec.Struct):
    """An allowed subscribe (any subscription type): the channel (a decision may
    override its options), channel info, expiry, and the decision that shaped it."""

    channel: Channel
    chan_info: msgspec.Raw | None = None
    expire_at: float = 0.0  # unix seconds; 0: no expiry
    decision: SubscribeDecision | None = None


def ttl_until(expire_at: float) -> int:
    """Seconds until ``expire_at`` (unix time); 0 when past or when 0 (never expires)."""
    return max(int(expire_at - time.time()), 0)


class Commands:
    """Command handlers of one hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._table: dict[str, Callable[[Session, Command], Awaitable[Answer | None]]] = {
            "connect": self.connect,
            "subscribe": self.subscribe,
            "unsubscribe": self.unsubscribe,
            "publish": self.publish,
            "presence": self.presence,
            "presence_stats": self.presence_stats,
            "history": self.history,
            "ping": self.ping,
            "send": self.send,
            "rpc": self.rpc,
            "refresh": self.refresh,
            "sub_refresh": self.sub_refresh,
        }

    async def run(self, session: Session, received: Received) -> Answer | None:
        return await self._table[received.method](session, received.command)

    # --- connection ------------------------------------------------------------------

    async def connect(self, session: Session, command: Command) -> Answer:
        request = command.connect
        assert request is not None
        hub = self.hub
        client_cfg = hub.config.client
        channels: list[str] = []
        sub_options: dict[str, SubscribeDecision] = {}  # token ``subs`` claim, decision ``subs``
        if request.token:
            try:
                claims = await hub.tokens.verify_connection(request.token)
            except TokenExpired as exc:
                raise ClientError(Error.TOKEN_EXPIRED) from exc
            except InvalidToken as exc:
                detail = f"invalid connection token: {exc}"
                raise DisconnectRequest(Disconnect.INVALID_TOKEN, detail=detail) from exc
            session.user = claims.user
            session.conn_info = claims.info
            session.meta = claims.meta
            session.expire_at = float(claims.expire_at)
            channels.extend(claims.channels)
            channels.extend(claims.subs)
            sub_options = {name: SubscribeDecision(info=info) for name, info in claims.subs.items()}
        elif not (
            hub.decisions.accepts_without_token
            or client_cfg.allow_anonymous_connect_without_token
            or client_cfg.insecure
        ):
            raise ClientError(Error.UNAUTHORIZED)
        session.name = request.name
        session.version = request.version
        reply_data: Payload | None = None
        # --- issue 12: the decision point (connect proxy without a token, or on_connect) ---
        decision = await hub.decisions.connect(session, request, token_present=bool(request.token))
        if decision is not None:
            if decision.user is not None:
                session.user = decision.user
            if is_set(decision.info):
                session.conn_info = to_raw(decision.info)
            if is_set(decision.data):
                reply_data = to_payload(decision.data)
            if is_set(decision.meta):
                session.meta = to_raw(decision.meta)
            if decision.expire_at is not None:
                session.expire_at = float(decision.expire_at)
            channels.extend(decision.channels)
            channels.extend(decision.subs)
            sub_options.update(decision.subs)
        # --- end issue 12 ---
        personal = client_cfg.subscribe_to_user_personal_channel
        personal_channel = ""
        if personal.enabled and session.user:
            personal_channel = hub.channel_rules.personal_channel(
                session.user, personal.personal_channel_namespace
            )
            channels.append(personal_channel)
        if session.expire_at and session.expire_at <= time.time():
            # The token was valid (else 109 above): the expiry the hook chose is past.
            raise ClientError(Error.EXPIRED)
        channels = list(dict.fromkeys(channels))
        if len(channels) > client_cfg.channel_limit:
            # Server-side subscriptions are not the client's choice: refuse the connection.
            raise DisconnectRequest(Disconnect.CHANNEL_LIMIT)
        hub.accept_session(session)
        try:
            joined = await self._server_side(session, request.subs or {}, channels, sub_options)
            if session.closed:
                raise SubscriptionGone("closed during connect")
        except BaseException:
            # One way back: nothing of this connect stays (the client may connect again).
            for subscription in list(session.subscriptions.values()):
                hub.lifecycle.end(subscription)
            hub.withdraw_session(session)
            raise
        session.protocol.accept_connect()
        result = ConnectResult(
            client=session.client_id,
            version=VERSION,
            data=reply_data or NO_DATA,
            subs={s.name: r for s, r in joined} or None,
            ping=int(client_cfg.ping_interval),
            pong=not session.unidirectional,  # such a client has no way to answer
            node=hub.node_id,
            session=session.session_id,  # emulation: what /emulation requests name
        )
        result.expires, result.ttl = bool(session.expire_at), ttl_until(session.expire_at)
        if hub.decisions.server_refresh:  # issue 12: the server refreshes, not the client
            result.expires, result.ttl = False, 0

        # Server-side subscription pushes are only valid after the connect reply.
        live = [subscription for subscription, _ in joined]
        hub.webhooks.connected(session.client_id, session.user, session.conn_info)  # issue 12
        if personal.single_connection and personal_channel:
            return Answer(
                "connect",
                result,
                lambda: self._single_connection(
                    session, personal_channel, hub.lifecycle.go_live_all(live)
                ),
            )
        return Answer("connect", result, lambda: hub.lifecycle.go_live_all(live))

    async def _single_connection(
        self, session: Session, personal_channel: str, joins: Awaitable[None] | None
    ) -> None:
        """``single_connection``: once this connection is in its personal channel's
        presence, the user's other connections are closed (3504), as Centrifugo does."""
        if joins is not None:
            await joins
        hub = self.hub
        try:
            stats = await hub.engine.presence_stats(personal_channel)
            if stats.num_clients >= 2 and not session.closed:
                # Every node closes the user's other connections (the control plane).
                await hub.control.disconnect_user(
                    session.user, Disconnect.CONNECTION_LIMIT, whitelist=(session.client_id,)
                )
        except EngineUnavailable as exc:
            hub.outages.failed("single_connection", exc)

    async def _server_side(
        self,
        session: Session,
        wanted: dict[str, SubscribeRequest],
        channels: list[str],
        sub_options: dict[str, SubscribeDecision],
    ) -> list[tuple[Subscription, SubscribeResult]]:
        """Subscribe the connection to its server-side channels (joining, not live yet).

        A channel the rules refuse is skipped with a log line; anything else that
        fails fails the connect."""
        hub = self.hub
        joined: list[tuple[Subscription, SubscribeResult]] = []
        for name in channels:
            request = wanted.get(name) or SubscribeRequest(channel=name)
            options = sub_options.get(name) or SubscribeDecision()  # issue 12: with options
            try:
                channel = apply_override(hub.channel_rules.resolve(name), options.override)
                if channel.options.subscription_type != "stream":
                    # Map and shared poll subscriptions are the client's (paginated, tracked).
                    raise ClientError(Error.BAD_REQUEST, "not a stream channel")
                subscription, result = await hub.lifecycle.subscribe(
                    session,
                    channel,
                    request,
                    chan_info=to_raw(options.info) if is_set(options.info) else None,
                    expire_at=float(options.expire_at or 0),
                    server_side=True,
                    push_join_leave=self.push_join_leave(session, channel, request),
                )
                self.apply_subscribe_decision(result, channel, options)
                joined.append((subscription, result))
            except ClientError as exc:
                log.warning("client %s: server-side subscribe %s: %s", session.client_id, name, exc)
        return joined

    async def refresh(self, session: Session, command: Command) -> Answer:
        request = command.refresh
        assert request is not None
        if not request.token:
            raise ClientError(Error.BAD_REQUEST)
        try:
            claims = await self.hub.tokens.verify_connection(request.token)
        except TokenExpired as exc:
            raise ClientError(Error.TOKEN_EXPIRED) from exc
        except InvalidToken as exc:
            detail = f"invalid refresh token: {exc}"
            raise DisconnectRequest(Disconnect.INVALID_TOKEN, detail=detail) from exc
        if claims.user != session.user:
            detail = "refresh token for another user"
            raise DisconnectRequest(Disconnect.INVALID_TOKEN, detail=detail)
        session.expire_at = float(claims.expire_at)
        if claims.info is not None:
            session.conn_info = claims.info
        self.hub.heartbeat.watch_expiry(session)
        result = RefreshResult(client=session.client_id, version=VERSION)
        result.expires, result.ttl = bool(session.expire_at), ttl_until(session.expire_at)
        return Answer("refresh", result)

    # --- subscriptions ---------------------------------------------------------------

    async def subscribe(self, session: Session, command: Command) -> Answer:
        request = command.subscribe
        assert request is not None
        hub = self.hub
        channel = hub.channel_rules.resolve(request.channel)
        if request.delta and request.delta != FOSSIL:
            log.info("client %s: unknown delta type %r", session.client_id, request.delta)
            raise DisconnectRequest(Disconnect.BAD_REQUEST)
        if request.type or channel.options.subscription_type != "stream":
            # Map and shared poll subscriptions have their own flows (hub/map_flow.py).
            return await hub.map_flow.subscribe(session, channel, request)
        grant = await self.authorize_subscribe(session, channel, request)
        channel = grant.channel
        # Re-checked after the awaits above: the lifecycle refuses a closed session
        # and a channel subscribed meanwhile (105).
        subscription, result = await hub.lifecycle.subscribe(
            session,
            channel,
            request,
            chan_info=grant.chan_info,
            expire_at=grant.expire_at,
            push_join_leave=self.push_join_leave(session, channel, request),
        )
        result.expires, result.ttl = bool(grant.expire_at), ttl_until(grant.expire_at)
        self.apply_subscribe_decision(result, channel, grant.decision)
        return Answer("subscribe", result, lambda: hub.lifecycle.go_live(subscription))

    async def authorize_subscribe(
        self, session: Session, channel: Channel, request: SubscribeRequest
    ) -> SubscribeGrant:
        """Whether ``session`` may subscribe to ``channel`` (of any subscription type):
        the limits, the subscription token, then the decision point."""
        hub = self.hub
        if request.channel in session.subscriptions:
            raise ClientError(Error.ALREADY_SUBSCRIBED)
        if len(session.subscriptions) >= hub.config.client.channel_limit:
            raise ClientError(Error.LIMIT_EXCEEDED)
        grant = SubscribeGrant(channel)
        has_token = False
        if request.token:
            claims = await self._verify_subscription_token(session, request.channel, request.token)
            has_token = True
            grant.chan_info = claims.info
            grant.expire_at = float(claims.expire_at)
        # --- issue 12: the decision point (permissions, then subscribe proxy or on_subscribe) ---
        decision = await hub.decisions.subscribe(session, channel, request, has_token=has_token)
        if decision is not None:
            if is_set(decision.info):
                grant.chan_info = to_raw(decision.info)
            if decision.expire_at is not None:
                grant.expire_at = float(decision.expire_at)
            grant.channel = apply_override(channel, decision.override)
        # --- end issue 12 ---
        grant.decision = decision
        return grant

    def push_join_leave(
        self, session: Session, channel: Channel, request: SubscribeRequest
    ) -> bool:
        """Whether this subscription gets join/leave pushes: the namespace pushes them
        (or the client asks), and the client may see presence (the pushes carry user
        ids and conn_info, as presence does)."""
        opts = channel.options
        if not (opts.force_push_join_leave or (opts.join_leave and request.join_leave)):
            return False
        actor = Actor(session.user, subscribed=True, insecure=self.hub.config.client.insecure)
        return decide(Action.PRESENCE, channel, actor, hook=False) is Verdict.ALLOW

    async def sub_refresh(self, session: Session, command: Command) -> Answer:
        request = command.sub_refresh
        assert request is not None
        if request.type:  # shared poll: track / untrack keys (hub/polls.py)
            channel = self.hub.channel_rules.resolve(request.channel)
            return await self.hub.polls.sub_refresh(session, channel, request)
        subscription = session.subscriptions.get(request.channel)
        if subscription is None:
            raise ClientError(Error.PERMISSION_DENIED)
        claims = await self._verify_subscription_token(session, request.channel, request.token)
        if session.subscriptions.get(request.channel) is not subscription:
            raise ClientError(Error.PERMISSION_DENIED)  # unsubscribed while verifying
        subscription.expire_at = float(claims.expire_at)
        if subscription.state is SubState.LIVE:  # a joining one is watched once live
            self.hub.heartbeat.watch_subscription(subscription)
        result = SubRefreshResult()
        result.expires, result.ttl = bool(subscription.expire_at), ttl_until(subscription.expire_at)
        return Answer("sub_refresh", result)

    async def unsubscribe(self, session: Session, command: Command) -> Answer:
        request = command.unsubscribe
        assert request is not None
        subscription = session.subscriptions.get(request.channel)
        if subscription is not None:
            self.hub.lifecycle.end(subscription, by_client=True)
        self.hub.map_flow.forget(session, request.channel)
        return Answer("unsubscribe", EmptyResult())

    # --- channel actions -------------------------------------------------------------

    async def publish(self, session: Session, command: Command) -> Answer:
        request = command.publish
        assert request is not None
        hub = self.hub
        channel = hub.channel_rules.resolve(request.channel)
        if request.type or channel.options.subscription_type != "stream":
            return await hub.maps.client_publish(session, channel, request)
        fmt = data_format(hub.config, channel.options)
        check_data(fmt, request.data)
        data: Payload = request.data
        skip_history, tags, idempotency_key = False, None, ""
        # --- issue 12: the decision point (permissions, then publish proxy or on_publish) ---
        decision = await hub.decisions.publish(session, channel, data)
        if decision is not None:
            if is_set(decision.data):
                data = to_payload(decision.data) or msgspec.Raw(b"null")
                check_data(fmt, data)  # what the decider put instead
            skip_history = decision.skip_history
            tags, idempotency_key = decision.tags, decision.idempotency_key
        # --- end issue 12 ---
        subscription = session.subscriptions.get(request.channel)
        info = session.client_info(subscription.chan_info if subscription else None)
        published = await hub.publish_publication(
            channel,
            WirePublication(data=data, info=info, tags=tags or None),
            skip_history=skip_history,
            idempotency_key=idempotency_key,
        )
        offset = published.position.offset
        hub.webhooks.published(channel.name, session.client_id, session.user, data, offset)
        return Answer("publish", EmptyResult())

    async def presence(self, session: Session, command: Command) -> Answer:
        request = command.presence
        assert request is not None
        channel = self._channel_for(session, request.channel, Action.PRESENCE)
        if not channel.options.presence:
            raise ClientError(Error.NOT_AVAILABLE)
        members = await self.hub.engine.presence(request.channel)
        return Answer("presence", PresenceResult(members))

    async def presence_stats(self, session: Session, command: Command) -> Answer:
        request = command.presence_stats
        assert request is not None
        channel = self._channel_for(session, request.channel, Action.PRESENCE)
        if not channel.options.presence:
            raise ClientError(Error.NOT_AVAILABLE)
        stats = await self.hub.engine.presence_stats(request.channel)
        result = PresenceStatsResult(stats.num_clients, stats.num_users)
        return Answer("presence_stats", result)

    async def history(self, session: Session, command: Command) -> Answer:
        request = command.history
        assert request is not None
        self._channel_for(session, request.channel, Action.HISTORY)
        page = await self.hub.history(
            request.channel,
            limit=self.hub.client_history_limit(request.limit),
            since=request.since,
            reverse=request.reverse,
        )
        result = HistoryResult(
            publications=page.publications or None,
            epoch=page.position.epoch,
            offset=page.position.offset,
        )
        return Answer("history", result)

    # --- application calls -----------------------------------------------------------

    async def rpc(self, session: Session, command: Command) -> Answer:
        request = command.rpc
        assert request is not None
        # issue 12: the decision point (the method's RPC proxy, or on_rpc; else 108)
        data = await self.hub.decisions.rpc(session, request.method, request.data)
        result = RPCResult(data=data or NO_DATA)
        return Answer("rpc", result)

    async def send(self, session: Session, command: Command) -> None:
        request = command.send
        assert request is not None
        hook = self.hub.hooks.message
        if hook is not None:
            await hook(MessageEvent(session.client_id, session.user, from_payload(request.data)))

    async def ping(self, session: Session, command: Command) -> Answer:
        return Answer("ping", EmptyResult())

    # --- helpers ---------------------------------------------------------------------

    def apply_subscribe_decision(
        self, result: SubscribeResult, channel: Channel, decision: SubscribeDecision | None
    ) -> None:
        """The subscribe result as a decision shapes it (issue 12)."""
        if decision is not None and is_set(decision.data):
            result.data = to_payload(decision.data) or NO_DATA
        if self.hub.decisions.server_sub_refresh(channel):  # the server refreshes it
            result.expires, result.ttl = False, 0

    def _channel_for(self, session: Session, name: str, action: Action) -> Channel:
        """Resolve ``name`` and check ``action`` by the allow_* options (no hook for these)."""
        channel = self.hub.channel_rules.resolve(name)
        verdict = decide(action, channel, self.hub.decisions.actor(session, channel), hook=False)
        if verdict is not Verdict.ALLOW:
            raise ClientError(Error.PERMISSION_DENIED)
        return channel

    async def _verify_subscription_token(
        self, session: Session, channel: str, token: str
    ) -> SubscriptionClaims:
        try:
            claims = await self.hub.subscription_tokens.verify_subscription(token)
        except TokenExpired as exc:
            raise ClientError(Error.TOKEN_EXPIRED) from exc
        except InvalidToken as exc:
            # A forged or broken token is refused, the connection stays (Centrifugo
            # answers 103); a valid token for someone or something else is final (3500).
            log.info("client %s: invalid subscription token: %s", session.client_id, exc)
            raise ClientError(Error.PERMISSION_DENIED) from exc
        if (
            claims.channel != channel
            or claims.user != session.user
            or (claims.client and claims.client != session.client_id)
        ):
            detail = "subscription token for another channel, user or client"
            raise DisconnectRequest(Disconnect.INVALID_TOKEN, detail=detail)
        return claims
