"""The one decision point of client events: a proxy, a Python hook, or hubbub's rules.

Rule 1: for each event and scope exactly one decider answers: the proxy
configured for it, else the hook registered for it, else hubbub's own rules
(tokens and the allow_* options; RPC without either answers 108). Scopes:
connect without a token (connect proxy), connect with a token (never
proxied, as in Centrifugo: the hook still sees it), refresh, each channel
namespace for subscribe, publish and sub_refresh, each RPC namespace for rpc.
Proxy lookups were resolved per namespace at startup (``proxy.ProxyRouter``).
Rule 2: channel permissions keep one order (``auth.permissions.decide``):
private channel, subscription token, user-limited channel, then the
decider, then the options; a rule is never applied twice or skipped.
Rule 3: a proxy's answer becomes the decision object a hook returns (payloads
as ``msgspec.Raw`` or ``Binary``), so ``commands`` applies one kind of answer,
once.
Rule 4: server-side refresh (a refresh proxy or ``on_refresh`` hook; the same
for subscriptions in a namespace with a sub_refresh decider) happens when the
expiry comes; an answer that did not come (backend down) is retried after
``REFRESH_RETRY_DELAY`` and never closes the connection; after the await the
session and its expiry are checked again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from hubbub.auth.permissions import Action, Actor, Verdict, decide
from hubbub.codes import Disconnect, Error, Unsubscribe
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub.hooks import (
    UNSET,
    ChannelOverride,
    ConnectDecision,
    ConnectEvent,
    MapPublishDecision,
    MapPublishEvent,
    PublishDecision,
    PublishEvent,
    RefreshDecision,
    RefreshEvent,
    RPCEvent,
    RPCResponse,
    SubRefreshDecision,
    SubRefreshEvent,
    SubscribeDecision,
    SubscribeEvent,
    is_set,
)
from hubbub.hub.payloads import from_payload, from_raw, to_payload, to_raw
from hubbub.hub.session import SubState
from hubbub.proxy import ProxyRouter, ProxyUnavailable
from hubbub.proxy import messages as pm

if TYPE_CHECKING:
    from hubbub.auth.channels import Channel
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session, Subscription
    from hubbub.protocol.messages import ConnectRequest, SubscribeRequest
    from hubbub.protocol.payload import Payload

log = logging.getLogger("hubbub.decisions")

#: A server-side refresh whose decider gave no answer is tried again after this.
REFRESH_RETRY_DELAY = 10.0


class Decisions:
    """Who decides each client event of one hub, and asking them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.proxies = ProxyRouter(hub.config, recorder=hub.counters)

    async def close(self) -> None:
        await self.proxies.close()

    def actor(self, session: Session, channel: Channel, *, has_token: bool = False) -> Actor:
        return Actor(
            user=session.user,
            subscribed=channel.name in session.subscriptions,
            has_token=has_token,
            insecure=self.hub.config.client.insecure,
        )

    # --- connection ------------------------------------------------------------------

    @property
    def reads_headers(self) -> bool:
        """Whether a decider may ask for a connection's handshake headers: any proxy
        (each may forward them) or ``on_connect`` (its event carries them). Without
        one, transports need not keep them (a browser's head, cookies included,
        would be most of an idle connection's memory)."""
        return self.proxies.any or self.hub.hooks.connect is not None

    @property
    def accepts_without_token(self) -> bool:
        """Whether a decider can authenticate a connection that sent no token."""
        return self.proxies.connect is not None or self.hub.hooks.connect is not None

    async def connect(
        self, session: Session, request: ConnectRequest, *, token_present: bool
    ) -> ConnectDecision | None:
        proxy = None if token_present else self.proxies.connect
        if proxy is not None:
            result = await proxy.call(
                pm.ConnectRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    data=request.data or pm.NO_DATA,
                    name=request.name,
                    version=request.version,
                    channels=list(request.subs) if request.subs else None,
                ),
                _headers_of(session),
            )
            return _connect_decision(result)
        hook = self.hub.hooks.connect
        if hook is None:
            return None
        return await hook(
            ConnectEvent(
                client=session.client_id,
                user=session.user,
                token_present=token_present,
                data=from_payload(request.data),
                name=request.name,
                version=request.version,
                remote=session.remote,
                headers=session.transport.headers,
                channels=tuple(request.subs or ()),
                **_transport_of(session),
            )
        )

    @property
    def server_refresh(self) -> bool:
        """Whether the server refreshes expiring connections (the client gets
        ``expires: false`` and never sends ``refresh``)."""
        return self.proxies.refresh is not None or self.hub.hooks.refresh is not None

    async def refresh(self, session: Session) -> RefreshDecision:
        proxy = self.proxies.refresh
        if proxy is not None:
            result = await proxy.call(
                pm.RefreshRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    user=session.user,
                    meta=session.meta or pm.NO_DATA,
                ),
                _headers_of(session),
            )
            return RefreshDecision(
                expired=result.expired,
                expire_at=result.expire_at,
                info=result.info or UNSET,
                meta=result.meta or UNSET,
            )
        hook = self.hub.hooks.refresh
        assert hook is not None  # only called when server_refresh
        event = RefreshEvent(
            session.client_id, session.user, from_raw(session.meta), **_transport_of(session)
        )
        return await hook(event)

    def refresh_due(self, session: Session, expire_at: float) -> None:
        """The expiry timer fired (``heartbeat.watch_expiry``): ask the decider."""
        if not session.closed and session.expire_at == expire_at:
            self.hub.spawn(self._refresh_session(session, expire_at))

    async def _refresh_session(self, session: Session, expire_at: float) -> None:
        try:
            decision: RefreshDecision | None = await self.refresh(session)
        except ProxyUnavailable:
            decision = None  # logged by the proxy client
        except (ClientError, DisconnectRequest) as exc:
            # An error or disconnect has no meaning for refresh: the connection expires.
            log.info("client %s: refresh answered %s: expired", session.client_id, exc)
            decision = RefreshDecision(expired=True)
        except Exception:
            log.exception("client %s: on_refresh hook failed", session.client_id)
            decision = None
        if session.closed or session.expire_at != expire_at:
            return  # closed, or refreshed some other way, meanwhile
        heartbeat = self.hub.heartbeat
        if decision is None:
            heartbeat.watch_expiry(session, due=time.time() + REFRESH_RETRY_DELAY)
            return
        if decision.expired or (decision.expire_at and decision.expire_at <= time.time()):
            session.close(Disconnect.EXPIRED)
            return
        if is_set(decision.info):
            session.conn_info = to_raw(decision.info)
        if is_set(decision.meta):
            session.meta = to_raw(decision.meta)
        session.expire_at = float(decision.expire_at)
        heartbeat.watch_expiry(session)

    # --- channels --------------------------------------------------------------------

    async def subscribe(
        self, session: Session, channel: Channel, request: SubscribeRequest, *, has_token: bool
    ) -> SubscribeDecision | None:
        """None: allowed as is; a decision: allowed with changes; ClientError: refused."""
        proxy = self.proxies.channel(channel.namespace).subscribe
        hook = self.hub.hooks.subscribe
        verdict = decide(
            Action.SUBSCRIBE,
            channel,
            self.actor(session, channel, has_token=has_token),
            hook=proxy is not None or hook is not None,
        )
        if verdict is Verdict.ALLOW:
            return None
        if verdict is Verdict.DENY:
            raise ClientError(Error.PERMISSION_DENIED)
        if proxy is not None:
            result = await proxy.call(
                pm.SubscribeRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    user=session.user,
                    channel=channel.name,
                    meta=session.meta or pm.NO_DATA,
                    data=request.data or pm.NO_DATA,
                ),
                _headers_of(session),
            )
            return _subscribe_decision(result)
        assert hook is not None
        return await hook(
            SubscribeEvent(
                session.client_id,
                session.user,
                channel.name,
                from_payload(request.data),
                meta=from_raw(session.meta),
                **_transport_of(session),
            )
        )

    async def publish(
        self, session: Session, channel: Channel, data: Payload
    ) -> PublishDecision | None:
        """None: publish as sent; a decision: publish with changes; ClientError: refused."""
        proxy = self.proxies.channel(channel.namespace).publish
        hook = self.hub.hooks.publish
        verdict = decide(
            Action.PUBLISH,
            channel,
            self.actor(session, channel),
            hook=proxy is not None or hook is not None,
        )
        if verdict is Verdict.ALLOW:
            return None
        if verdict is Verdict.DENY:
            raise ClientError(Error.PERMISSION_DENIED)
        if proxy is not None:
            result = await proxy.call(
                pm.PublishRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    user=session.user,
                    channel=channel.name,
                    data=data or pm.NO_DATA,
                    meta=session.meta or pm.NO_DATA,
                ),
                _headers_of(session),
            )
            return PublishDecision(
                data=result.data or UNSET,
                skip_history=result.skip_history,
                tags=result.tags or None,
                idempotency_key=result.idempotency_key,
            )
        assert hook is not None
        return await hook(
            PublishEvent(
                session.client_id,
                session.user,
                channel.name,
                from_payload(data),
                meta=from_raw(session.meta),
                **_transport_of(session),
            )
        )

    async def map_publish(
        self, session: Session, channel: Channel, key: str, data: msgspec.Raw, *, removed: bool
    ) -> MapPublishDecision | None:
        """A client's write (``removed``: removal) of ``key`` in a map channel: the
        map.allow_* options, else the ``on_map_publish`` hook decides."""
        hook = self.hub.hooks.map_publish
        action = Action.MAP_REMOVE if removed else Action.MAP_PUBLISH
        verdict = decide(action, channel, self.actor(session, channel), hook=hook is not None)
        if verdict is Verdict.ALLOW:
            return None
        if verdict is Verdict.DENY:
            raise ClientError(Error.PERMISSION_DENIED)
        assert hook is not None
        value = None if removed else from_raw(data)
        event = MapPublishEvent(session.client_id, session.user, channel.name, key, value, removed)
        return await hook(event)

    def server_sub_refresh(self, channel: Channel) -> bool:
        """Whether the server refreshes expiring subscriptions of ``channel``."""
        return (
            self.proxies.channel(channel.namespace).sub_refresh is not None
            or self.hub.hooks.sub_refresh is not None
        )

    async def sub_refresh(self, session: Session, channel: Channel) -> SubRefreshDecision:
        proxy = self.proxies.channel(channel.namespace).sub_refresh
        if proxy is not None:
            result = await proxy.call(
                pm.SubRefreshRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    user=session.user,
                    channel=channel.name,
                    meta=session.meta or pm.NO_DATA,
                ),
                _headers_of(session),
            )
            return SubRefreshDecision(
                expired=result.expired,
                expire_at=result.expire_at,
                info=result.info or UNSET,
            )
        hook = self.hub.hooks.sub_refresh
        assert hook is not None  # only called when server_sub_refresh
        return await hook(
            SubRefreshEvent(
                session.client_id,
                session.user,
                channel.name,
                meta=from_raw(session.meta),
                **_transport_of(session),
            )
        )

    def sub_refresh_due(self, subscription: Subscription, expire_at: float) -> None:
        """The subscription's expiry timer fired (``heartbeat.watch_subscription``)."""
        subscription.expiry = None
        if subscription.state is SubState.LIVE and subscription.expire_at == expire_at:
            self.hub.spawn(self._refresh_subscription(subscription, expire_at))

    async def _refresh_subscription(self, subscription: Subscription, expire_at: float) -> None:
        session = subscription.session
        try:
            decision: SubRefreshDecision | None = await self.sub_refresh(
                session, subscription.channel
            )
        except ProxyUnavailable:
            decision = None
        except (ClientError, DisconnectRequest) as exc:
            log.info(
                "client %s: sub_refresh of %s answered %s: expired",
                session.client_id,
                subscription.name,
                exc,
            )
            decision = SubRefreshDecision(expired=True)
        except Exception:
            log.exception("client %s: on_sub_refresh hook failed", session.client_id)
            decision = None
        if subscription.state is not SubState.LIVE or subscription.expire_at != expire_at:
            return  # gone, or refreshed some other way, meanwhile
        heartbeat = self.hub.heartbeat
        if decision is None:
            heartbeat.watch_subscription(subscription, due=time.time() + REFRESH_RETRY_DELAY)
            return
        if decision.expired or (decision.expire_at and decision.expire_at <= time.time()):
            self.hub.lifecycle.end(subscription, push=Unsubscribe.EXPIRED)
            return
        if is_set(decision.info):
            subscription.chan_info = to_raw(decision.info)
        subscription.expire_at = float(decision.expire_at)
        heartbeat.watch_subscription(subscription)

    # --- application calls -----------------------------------------------------------

    async def rpc(self, session: Session, method: str, data: Payload) -> Payload | None:
        """The RPC's result data; 108 when neither a proxy nor a hook answers RPC."""
        proxy = self.proxies.rpc(method)
        if proxy is not None:
            result = await proxy.call(
                pm.RPCRequest(
                    client=session.client_id,
                    transport=session.transport_name,
                    protocol=session.codec.name,
                    user=session.user,
                    method=method,
                    data=data or pm.NO_DATA,
                    meta=session.meta or pm.NO_DATA,
                ),
                _headers_of(session),
            )
            return result.data or None
        hook = self.hub.hooks.rpc
        if hook is None:
            raise ClientError(Error.NOT_AVAILABLE)
        response = await hook(
            RPCEvent(
                session.client_id,
                session.user,
                method,
                from_payload(data),
                meta=from_raw(session.meta),
                **_transport_of(session),
            )
        )
        return to_payload(response.data if isinstance(response, RPCResponse) else response)


def _transport_of(session: Session) -> dict[str, str]:
    """The transport and protocol of ``session``, as hook events and proxy requests name
    them (Centrifugo's names: websocket, sse, http_stream, uni_*; json, protobuf)."""
    return {"transport": session.transport_name, "protocol": session.codec.name}


def apply_override(channel: Channel, override: ChannelOverride | None) -> Channel:
    """``channel`` with the namespace options a decision overrides for one subscription."""
    if override is None:
        return channel
    changes = {
        name: value
        for name in (
            "presence",
            "join_leave",
            "force_recovery",
            "force_positioning",
            "force_push_join_leave",
        )
        if (value := getattr(override, name)) is not None
    }
    if not changes:
        return channel
    options = msgspec.structs.replace(channel.options, **changes)
    if options.force_recovery and not options.history_enabled:
        # Recovery needs history: an override can not conjure it (the config check's rule).
        options = msgspec.structs.replace(options, force_recovery=False)
    return msgspec.structs.replace(channel, options=options)


def _headers_of(session: Session) -> Callable[[], dict[str, str]]:
    return lambda: session.transport.headers


def _override(raw: pm.SubscribeOptionOverride | None) -> ChannelOverride | None:
    if raw is None:
        return None

    def value(field: pm.BoolValue | None) -> bool | None:
        return None if field is None else field.value

    return ChannelOverride(
        presence=value(raw.presence),
        join_leave=value(raw.join_leave),
        force_recovery=value(raw.force_recovery),
        force_positioning=value(raw.force_positioning),
        force_push_join_leave=value(raw.force_push_join_leave),
    )


def _subscribe_decision(result: pm.SubscribeResult | pm.SubscribeOptions) -> SubscribeDecision:
    return SubscribeDecision(
        info=result.info or UNSET,
        data=result.data or UNSET,
        expire_at=result.expire_at or None,
        override=_override(result.override),
    )


def _connect_decision(result: pm.ConnectResult) -> ConnectDecision:
    return ConnectDecision(
        user=result.user,
        info=result.info or UNSET,
        data=result.data or UNSET,
        channels=list(result.channels or ()),
        expire_at=result.expire_at or None,
        subs={name: _subscribe_decision(o) for name, o in (result.subs or {}).items()},
        meta=result.meta or UNSET,
    )
