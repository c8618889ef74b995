"""The subscription lifecycle: joining -> live -> gone, with one way back from anywhere.

Rule 1: ``subscribe`` is the one guarded way in. It puts the subscription in
the joining state (publications buffered), then awaits the engine subscribe,
the history read and the presence add; after EVERY await it checks that the
subscription is still joining (its session may have closed meanwhile); on any
failure it tears the subscription down and re-raises. The caller queues the
reply, then calls ``go_live`` in the same loop turn.
Rule 2: ``end`` is the ONE teardown: failure, unsubscribe (client or API),
gap, expiry and close all come through it. Its synchronous part takes the
subscription out of the session and the channel table at once; what needs the
engine (presence removal, the leave, the on_unsubscribe hook) runs in the
background, each step on its own so that one failure never skips the rest.
Rule 3: a presence entry or a join written by an await that completed after
the teardown is undone by whoever sees it last (the subscribe, or the
presence refresh), so no presence outlives its subscription.
Rule 4: a subscription that lost state is told so: a client-side one gets
unsubscribe 2500 (the SDK resubscribes and recovers), a server-side one
disconnects the client with 3010 (the SDKs never resubscribe server-side
subscriptions on their own; a reconnect recovers them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from hubbub.auth.channels import Channel
from hubbub.codes import Disconnect, DisconnectInfo, Error, Unsubscribe, UnsubscribeInfo
from hubbub.engines.base import EngineUnavailable, EpochMismatch, HistoryPage
from hubbub.errors import ClientError
from hubbub.hub import recovery
from hubbub.hub.channels import ChannelEntry
from hubbub.hub.counters import PUSH_UNSUBSCRIBE
from hubbub.hub.deltas import whole, without_flags
from hubbub.hub.hooks import UnsubscribeEvent, disconnect_event
from hubbub.hub.session import Session, Subscription, SubscriptionGone, SubState
from hubbub.protocol.messages import (
    Push,
    StreamPosition,
    SubscribeRequest,
    SubscribeResult,
    UnsubscribePush,
)

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub

log = logging.getLogger("hubbub.hub")

#: Presence entries expire unless refreshed (each ping refreshes them).
PRESENCE_TTL = 60.0


class _Cleanup(NamedTuple):
    """What a teardown leaves to do in the background."""

    subscription: Subscription
    notify: bool  # it was live: the on_unsubscribe hook is called
    by_server: bool  # the server ended it (API, expiry, gap, disconnect), not the client


class Positioner(msgspec.Struct, frozen=True):
    """How a subscribe learns its position: ``read`` runs once the node is
    subscribed at the broker (publications since are buffered)."""

    recoverable: bool
    positioned: bool
    read: Callable[[], Awaitable[recovery.Positioned]]


class Lifecycle:
    """Subscribe, go live and tear down subscriptions of a hub's sessions."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    # --- joining ---------------------------------------------------------------------

    async def subscribe(
        self,
        session: Session,
        channel: Channel,
        request: SubscribeRequest,
        *,
        chan_info: msgspec.Raw | None = None,
        expire_at: float = 0.0,
        server_side: bool = False,
        push_join_leave: bool = False,
        positioner: Positioner | None = None,
    ) -> tuple[Subscription, SubscribeResult]:
        """Subscribe ``session`` (permissions already checked) in the joining state.

        ``positioner``: how the reply learns its position; by default the channel's
        stream is read (recovery), a map subscription reads its change stream.
        Raises ClientError 105 when already subscribed, SubscriptionGone when the
        session closes meanwhile, and whatever the engine raises; nothing is left
        behind in any of these cases.
        """
        hub = self.hub
        name = channel.name
        previous = session.leaving.get(name) if session.leaving else None
        if previous:
            # The last subscription of this channel is still being torn down: its
            # presence removal and leave must land before this one's presence and join.
            await asyncio.wait(list(previous))
        if session.closed:
            raise SubscriptionGone(name)
        if name in session.subscriptions:
            raise ClientError(Error.ALREADY_SUBSCRIBED)
        if positioner is None:
            plan = self._recovery(channel, request)
            positioner = Positioner(
                plan.recoverable, plan.positioned, lambda: self._position(channel, request, plan)
            )
        # Delta compression needs a subscriber that gets every publication in order.
        delta = (
            positioner.positioned
            and bool(request.delta)
            and request.delta in channel.options.allowed_delta_types
        )
        subscription = Subscription(
            session=session,
            channel=channel,
            chan_info=chan_info,
            recoverable=positioner.recoverable,
            positioned=positioner.positioned,
            delta=delta,
            push_join_leave=push_join_leave,
            server_side=server_side,
            expire_at=expire_at,
        )
        subscription.extras = hub.maps.membership(subscription)
        session.subscriptions[name] = subscription
        entry, first = hub.channels.add(subscription)
        if first:
            hub.webhooks.channel_active(name)  # issue 12: occupied, if the cluster's first
        try:
            await self._engine_subscribed(name, entry, first)
            _still_joining(subscription)
            positioned = await positioner.read()
            _still_joining(subscription)
            subscription.epoch = positioned.result.epoch
            subscription.live_from = positioned.live_from
            hub.channels.baseline(subscription)
            if channel.options.presence:
                info = session.client_info(chan_info)
                await hub.engine.add_presence(name, session.client_id, info, PRESENCE_TTL)
                subscription.presence_added = True
                if _is_gone(subscription):  # Rule 3
                    task = hub.spawn(self._remove_presence(subscription))
                    _leaving(session, name, task)
                _still_joining(subscription)
        except BaseException:
            self._detach(subscription, push=None, by_server=True)
            raise
        result = positioned.result
        if delta:
            result.delta = True
            codec = session.codec
            if result.publications:
                result.publications = [whole(p, codec) for p in result.publications]
            if result.state:  # a map's last state page
                result.state = [whole(p, codec) for p in result.state]
        return subscription, result

    def _recovery(self, channel: Channel, request: SubscribeRequest) -> recovery.Recovery:
        opts = channel.options
        recoverable = opts.history_enabled and (
            opts.force_recovery or (opts.allow_recovery and request.recoverable)
        )
        positioned = opts.history_enabled and (
            recoverable or opts.force_positioning or (opts.allow_positioning and request.positioned)
        )
        return recovery.Recovery(
            recoverable=recoverable,
            positioned=positioned,
            cache_mode=opts.force_recovery_mode == "cache",
            max_publications=self.hub.config.client.recovery_max_publication_limit,
            auto=opts.auto_cache_recovery,
        )

    async def _engine_subscribed(self, name: str, entry: ChannelEntry, first: bool) -> None:
        """The node is subscribed to ``name`` at the engine: the first joiner subscribes,
        the others wait for its outcome and share it, failure included."""
        ready = entry.ready
        if first:
            try:
                await self.hub.pubsub_for(name).subscribe(name)
            except BaseException as exc:
                if not ready.done():
                    # A fresh error: the original's traceback would keep this frame alive.
                    ready.set_exception(EngineUnavailable(f"subscribe {name}: {exc!r}"))
                    ready.add_done_callback(_consume_exception)
                raise
            if not ready.done():
                ready.set_result(None)
        elif not ready.done():
            await asyncio.shield(ready)
        else:
            ready.result()  # raises when the shared subscribe failed: never live without it

    async def _position(
        self, channel: Channel, request: SubscribeRequest, plan: recovery.Recovery
    ) -> recovery.Positioned:
        query = recovery.plan(plan, request)
        if query is None:
            return recovery.conclude(plan, request, None, StreamPosition())
        page: HistoryPage | None
        try:
            page = await self.hub.engine.history(
                channel.name, query, self.hub.history_options(channel)
            )
            top = page.position
        except EpochMismatch as exc:
            page, top = None, exc.position
        if page is not None and page.publications:
            page = msgspec.structs.replace(page, publications=without_flags(page.publications))
        return recovery.conclude(plan, request, page, top)

    # --- live ------------------------------------------------------------------------

    def go_live(self, subscription: Subscription) -> Awaitable[None] | None:
        """The reply is queued: deliver what arrived meanwhile, then everything new.

        Returns the join announcement to await (after the reply, before the client's
        next command), or None.
        """
        if subscription.state is not SubState.JOINING:
            return None
        subscription.state = SubState.LIVE
        hub = self.hub
        if not hub.channels.go_live(subscription):
            self.insufficient(subscription)
            return None
        if subscription.channel.options.presence:  # issue 12: the presence join webhook
            session = subscription.session
            hub.webhooks.joined(
                subscription.name,
                session.client_id,
                session.user,
                session.conn_info,
                subscription.chan_info,
            )
        if subscription.expire_at:
            hub.heartbeat.watch_subscription(subscription)
        later = subscription.unsubscribe_when_live
        if later is not None:
            self.end(subscription, push=later)
            return None
        join: Awaitable[None] | None = None
        if subscription.channel.options.join_leave:
            subscription.announced = True
            hub.counters.sent_joins[subscription.channel.namespace] += 1
            info = subscription.session.client_info(subscription.chan_info)
            join = self._quietly("join", hub.engine.publish_join(subscription.name, info))
        if subscription.extras is not None:
            return self._announce(subscription, join)
        return join

    async def _announce(self, subscription: Subscription, join: Awaitable[None] | None) -> None:
        """The join, then the subscription's map presence entries (Rule 3 applies)."""
        if join is not None:
            await join
        extras = subscription.extras
        if extras is None or _is_gone(subscription):
            return
        await self._quietly("map presence", extras.added())
        if _is_gone(subscription):  # ended while the entries were written
            task = self.hub.spawn(self._quietly("map presence removal", extras.gone()))
            _leaving(subscription.session, subscription.name, task)

    def go_live_all(self, subscriptions: list[Subscription]) -> Awaitable[None] | None:
        """``go_live`` for several subscriptions (a connect's server-side ones)."""
        joins = [join for s in subscriptions if (join := self.go_live(s)) is not None]
        return _in_order(joins) if joins else None

    def insufficient(self, subscription: Subscription) -> None:
        """``subscription`` lost publications; tell its client how to recover (Rule 4)."""
        if subscription.server_side:
            subscription.session.close(Disconnect.INSUFFICIENT_STATE)
        else:
            self.end(subscription, push=Unsubscribe.INSUFFICIENT_STATE)

    # --- gone ------------------------------------------------------------------------

    def end(
        self,
        subscription: Subscription,
        *,
        push: UnsubscribeInfo | None = None,
        by_client: bool = False,
    ) -> None:
        """THE teardown of one subscription (Rule 2); ``push`` tells the client why;
        ``by_client``: the client's own unsubscribe command."""
        cleanup = self._detach(subscription, push=push, by_server=not by_client)
        if cleanup is not None:
            task = self.hub.spawn(self._cleanup(cleanup))
            _leaving(subscription.session, subscription.name, task)

    def unsubscribe(self, subscription: Subscription, push: UnsubscribeInfo) -> None:
        """A server-side unsubscribe: at once when live; a joining one finishes joining
        first, so the client sees its subscribe reply before the unsubscribe push."""
        if subscription.state is SubState.JOINING:
            subscription.unsubscribe_when_live = push
        else:
            self.end(subscription, push=push)

    def end_session(self, session: Session, disconnect: DisconnectInfo) -> None:
        """The session closed: every subscription goes, then on_disconnect is called."""
        subscriptions = list(session.subscriptions.values())
        detached = [self._detach(s, push=None, by_server=True) for s in subscriptions]
        ended = [cleanup for cleanup in detached if cleanup is not None]
        if ended or self.hub.hooks.disconnect is not None:
            self.hub.spawn(self._after_disconnect(session, ended, disconnect))

    def ends_unheard(self, session: Session) -> bool:
        """Nothing outside this process hears of ``session``'s end: no hook or webhook
        is told, no presence, join/leave or map presence is taken back. Wider than
        what ``_detach`` leaves to ``_cleanup``: a subscription still joining counts
        too, since only the teardown marking it gone makes its join take back what
        it added meanwhile."""
        hub = self.hub
        if hub.hooks.disconnect is not None or hub.webhooks.enabled:
            return False
        notify = hub.hooks.unsubscribe is not None
        return not any(
            sub.presence_added or sub.announced or sub.extras is not None or notify
            for sub in session.subscriptions.values()
        )

    def _detach(
        self, subscription: Subscription, *, push: UnsubscribeInfo | None, by_server: bool
    ) -> _Cleanup | None:
        """The synchronous part of the teardown; what remains to do in the background."""
        if subscription.state is SubState.GONE:
            return None
        was_live = subscription.state is SubState.LIVE
        subscription.state = SubState.GONE
        session = subscription.session
        name = subscription.name
        if session.subscriptions.get(name) is subscription:
            del session.subscriptions[name]
        if subscription.expiry is not None:
            subscription.expiry.cancel()
            subscription.expiry = None
        if was_live and subscription.channel.options.presence:  # issue 12: leave webhook
            self.hub.webhooks.left(
                name, session.client_id, session.user, session.conn_info, subscription.chan_info
            )
        if self.hub.channels.remove(subscription):
            self.hub.webhooks.channel_idle(name)  # issue 12: vacated, if the cluster's last
            self.hub.spawn(self._engine_unsubscribe(name))
        if push is not None and was_live:
            unsubscribe = UnsubscribePush(push.code, push.reason)
            session.push(Push(channel=name, unsubscribe=unsubscribe), PUSH_UNSUBSCRIBE)
            self.hub.counters.unsubscribes[push.code] += 1
        notify = was_live and self.hub.hooks.unsubscribe is not None
        extras = was_live and subscription.extras is not None
        if subscription.presence_added or subscription.announced or notify or extras:
            return _Cleanup(subscription, notify, by_server)
        return None

    async def _cleanup(self, cleanup: _Cleanup) -> None:
        """Presence, leave and hook of a torn-down subscription; each step on its own."""
        subscription = cleanup.subscription
        if subscription.presence_added:
            await self._remove_presence(subscription)
        if subscription.announced:
            self.hub.counters.sent_leaves[subscription.channel.namespace] += 1
            info = subscription.session.client_info(subscription.chan_info)
            await self._quietly("leave", self.hub.engine.publish_leave(subscription.name, info))
        if subscription.extras is not None:
            await self._quietly("map presence removal", subscription.extras.gone())
        hook = self.hub.hooks.unsubscribe
        if cleanup.notify and hook is not None:
            session = subscription.session
            event = UnsubscribeEvent(
                session.client_id, session.user, subscription.name, cleanup.by_server
            )
            await self._hook("on_unsubscribe", hook(event))

    async def _after_disconnect(
        self, session: Session, ended: list[_Cleanup], disconnect: DisconnectInfo
    ) -> None:
        for cleanup in ended:
            await self._cleanup(cleanup)
        hook = self.hub.hooks.disconnect
        if hook is not None:
            await self._hook(
                "on_disconnect", hook(disconnect_event(session.client_id, session.user, disconnect))
            )

    async def _remove_presence(self, subscription: Subscription) -> None:
        session = subscription.session
        removal = self.hub.engine.remove_presence(subscription.name, session.client_id)
        await self._quietly("presence removal", removal)

    async def _engine_unsubscribe(self, name: str) -> None:
        # Nobody came back meanwhile, and no admin traces it (the tracer lets go of it).
        if name not in self.hub.channels.entries and name not in self.hub.observers.traced_channels:
            unsubscribe = self.hub.pubsub_for(name).unsubscribe(name)
            await self._quietly("unsubscribe", unsubscribe)

    # --- presence refresh --------------------------------------------------------------

    def refresh_presence(self, session: Session) -> None:
        """Re-add the presence entries of ``session``'s live subscriptions (each ping)."""
        due = [
            s
            for s in session.subscriptions.values()
            if (s.presence_added or s.extras is not None) and s.state is SubState.LIVE
        ]
        if due:
            self.hub.spawn(self._refresh(due))

    async def _refresh(self, subscriptions: list[Subscription]) -> None:
        engine = self.hub.engine
        for subscription in subscriptions:
            if subscription.state is not SubState.LIVE:
                continue
            session = subscription.session
            if subscription.extras is not None:
                await self._quietly("map presence refresh", subscription.extras.refresh())
            if not subscription.presence_added:
                continue
            info = session.client_info(subscription.chan_info)
            added = engine.add_presence(subscription.name, session.client_id, info, PRESENCE_TTL)
            await self._quietly("presence refresh", added)
            if _is_gone(subscription):  # Rule 3: ended while the add ran
                task = self.hub.spawn(self._remove_presence(subscription))
                _leaving(session, subscription.name, task)

    # --- failures of background work -----------------------------------------------------

    async def _quietly(self, what: str, work: Awaitable[None]) -> None:
        """Await engine work whose failure must not stop what follows (one log line)."""
        try:
            await work
        except EngineUnavailable as exc:
            self.hub.outages.failed(what, exc)

    async def _hook(self, name: str, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("%s hook failed", name)


def _still_joining(subscription: Subscription) -> None:
    """After an await: the subscription may have been torn down meanwhile (Rule 1)."""
    if subscription.state is not SubState.JOINING:
        raise SubscriptionGone(subscription.name)


def _leaving(session: Session, name: str, task: asyncio.Task[None]) -> None:
    """Record ``task`` as teardown work of ``session``'s subscription to ``name``
    until it is done (Session.leaving)."""
    leaving = session.leaving
    if leaving is None:
        leaving = session.leaving = {}
    leaving.setdefault(name, []).append(task)

    def done(_: asyncio.Task[None]) -> None:
        current = session.leaving
        tasks = current.get(name) if current is not None else None
        if current is None or tasks is None or task not in tasks:
            return
        tasks.remove(task)
        if not tasks:
            del current[name]
            if not current:
                session.leaving = None

    task.add_done_callback(done)


async def _in_order(works: list[Awaitable[None]]) -> None:
    for work in works:
        await work


def _is_gone(subscription: Subscription) -> bool:
    """Read again after an await (a separate call, so that no narrowing from before
    the await survives it: the state may have changed while it ran)."""
    return subscription.state is SubState.GONE


def _consume_exception(future: asyncio.Future[None]) -> None:
    """Retrieve the outcome of an engine subscribe nobody waits for any more."""
    if not future.cancelled():
        future.exception()
