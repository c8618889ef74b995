"""The map subscribe: state pages, then stream pages, then live (Centrifugo 6.8's protocol).

A map subscription is several ``subscribe`` commands of one flow (client.proto
``phase``: 2 state, 1 stream, 0 live):

    client                                   server
    subscribe{type:1, phase:2}           ->  authorise; page 1 of the state, the
                                             stream position it was read at (frozen)
    subscribe{phase:2, cursor, offset}   ->  next page; entries changed after the
                                             frozen offset left out (the stream has them)
    subscribe{phase:1, offset, epoch}    ->  stream page, or live once within a page
                                             of the top (phase 0 in the reply)

Rule 1: only the first command of a flow is authorised (token, hook, allow_*);
its grant is kept on the session (``Session.map_flows``) until the flow goes
live, fails, is abandoned (``map.subscribe_catch_up_timeout``: disconnect 3008
on its next page) or the client unsubscribes. A page without a flow is 103.
Rule 2: state and stream pages are reads; they subscribe nothing.
Rule 3: going live is the lifecycle's one guarded subscribe (hub/lifecycle.py),
positioned by reading the change stream from the flow's position: the node is
subscribed first (publications buffered), the read brings the client to the
top, buffered publications above it follow the reply. A position the stream
no longer covers (epoch changed, trimmed, too far behind) is 112, and the
SDK starts again from the state.
Rule 4: shared poll subscriptions (type 4) go to hub/polls.py.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from hubbub.codes import Disconnect, Error
from hubbub.engines.base import EpochMismatch, HistoryQuery
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub import recovery
from hubbub.hub.commands import SubscribeGrant, ttl_until
from hubbub.hub.deltas import whole, without_flags
from hubbub.hub.lifecycle import Positioner
from hubbub.hub.session import Answer, SubscriptionGone
from hubbub.protocol.messages import Publication, StreamPosition, SubscribeResult

if TYPE_CHECKING:
    from hubbub.auth.channels import Channel
    from hubbub.config.model import MapOptions
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session
    from hubbub.protocol.codec import Codec
    from hubbub.protocol.messages import SubscribeRequest

#: SubscribeRequest.type -> the namespace's subscription_type it must match.
SUBSCRIPTION_TYPES = {0: "stream", 1: "map", 2: "map_clients", 3: "map_users", 4: "shared_poll"}
PHASE_LIVE, PHASE_STREAM, PHASE_STATE = 0, 1, 2
#: SubscribeResult.type of a map subscription.
RESULT_TYPE_MAP = 1
# Centrifugo's defaults for the map.* page sizes and catch-up time.
DEFAULT_PAGE_SIZE = 100
MIN_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
CATCH_UP_TIMEOUT = 5.0


def page_size(requested: int, options: MapOptions) -> int:
    """The page a client gets: its ``limit`` (or the default) within min and max."""
    size = requested if requested > 0 else options.default_page_size or DEFAULT_PAGE_SIZE
    low = options.min_page_size or MIN_PAGE_SIZE
    high = options.max_page_size or MAX_PAGE_SIZE
    return max(low, min(size, high)) if low <= high else high


class MapFlow(msgspec.Struct):
    """A map subscribe between its first page and live (Rule 1)."""

    started: float  # monotonic seconds
    grant: SubscribeGrant
    epoch: str = ""  # of the first state page (or the recovering client's)
    offset: int = 0  # the stream position the first state page was read at
    captured: bool = False
    stream_top: int = -1  # the stream's top at the first stream page


class MapFlows:
    """Map subscribe flows of a hub's sessions."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def subscribe(
        self, session: Session, channel: Channel, request: SubscribeRequest
    ) -> Answer:
        """One ``subscribe`` command of a map (or shared poll) subscription."""
        opts = channel.options
        if SUBSCRIPTION_TYPES.get(request.type) != opts.subscription_type:
            raise ClientError(Error.BAD_REQUEST, "subscription type does not match the channel")
        if opts.subscription_type == "shared_poll":
            return await self.hub.polls.subscribe(session, channel, request)
        if request.tf:
            raise ClientError(Error.BAD_REQUEST, "tags filter not allowed")
        name = channel.name
        flows = session.map_flows
        flow = flows.get(name) if flows else None
        if request.cursor or (request.phase != PHASE_STATE and flow is not None):
            if flow is None:
                raise ClientError(Error.PERMISSION_DENIED)
            if self._expired(flow, opts.map):
                self.forget(session, name)
                raise DisconnectRequest(Disconnect.SLOW)
        else:
            if request.phase == PHASE_STREAM and not request.recover:
                raise ClientError(Error.PERMISSION_DENIED)
            flow = await self._start(session, channel, request)
        try:
            if request.phase == PHASE_STATE:
                return await self._state_page(session, channel, request, flow)
            if request.phase == PHASE_STREAM:
                return await self._stream_page(session, channel, request, flow)
            if request.phase == PHASE_LIVE:
                since = StreamPosition(request.offset, request.epoch)
                return await self._live(session, channel, request, flow, None, since, True)
            raise ClientError(Error.BAD_REQUEST, "invalid map phase")
        except BaseException:
            self.forget(session, name, flow)
            raise

    def forget(self, session: Session, name: str, flow: MapFlow | None = None) -> None:
        """Drop ``session``'s flow for ``name`` (only ``flow``, when given)."""
        flows = session.map_flows
        if flows is not None and (flow is None or flows.get(name) is flow):
            flows.pop(name, None)
            if not flows:
                session.map_flows = None

    async def _start(
        self, session: Session, channel: Channel, request: SubscribeRequest
    ) -> MapFlow:
        """Authorise the first command of a flow and keep its grant (Rule 1)."""
        now = time.monotonic()
        flows = session.map_flows
        if flows:  # abandoned flows of other channels go
            rules = self.hub.channel_rules
            for other, old in list(flows.items()):
                if self._expired(old, rules.resolve(other).options.map, now):
                    del flows[other]
        # Flows in progress count against the channel limit like subscriptions.
        limit = self.hub.config.client.channel_limit
        if len(session.subscriptions) + len(session.map_flows or ()) >= limit:
            raise ClientError(Error.LIMIT_EXCEEDED)
        grant = await self.hub.commands.authorize_subscribe(session, channel, request)
        if session.closed:
            raise SubscriptionGone(channel.name)
        if channel.name in session.subscriptions:
            raise ClientError(Error.ALREADY_SUBSCRIBED)
        flow = MapFlow(started=now, grant=grant)
        if request.phase != PHASE_STATE:
            flow.epoch = request.epoch  # a recovering client's stream
        if session.map_flows is None:
            session.map_flows = {}
        session.map_flows[channel.name] = flow
        return flow

    @staticmethod
    def _expired(flow: MapFlow, options: MapOptions, now: float | None = None) -> bool:
        timeout = options.subscribe_catch_up_timeout or CATCH_UP_TIMEOUT
        return (now if now is not None else time.monotonic()) - flow.started > timeout

    def _check(self, session: Session, channel: Channel, flow: MapFlow) -> None:
        """After an await: the session and the flow are still there (Rule 1)."""
        flows = session.map_flows
        if session.closed or flows is None or flows.get(channel.name) is not flow:
            raise SubscriptionGone(channel.name)

    # --- phases ------------------------------------------------------------------------

    async def _state_page(
        self, session: Session, channel: Channel, request: SubscribeRequest, flow: MapFlow
    ) -> Answer:
        maps = self.hub.maps
        opts = channel.options
        limit = page_size(request.limit, opts.map)
        revision = None
        if request.cursor and (request.offset or request.epoch):
            revision = StreamPosition(request.offset, request.epoch)
        try:
            page = await maps.engine.read_state(
                channel.name,
                maps.store(channel),
                cursor=request.cursor,
                limit=limit,
                asc=request.asc,
                revision=revision,
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc
        self._check(session, channel, flow)
        if not request.cursor:
            flow.epoch, flow.offset, flow.captured = page.position.epoch, page.position.offset, True
        since = StreamPosition(flow.offset, flow.epoch) if flow.captured else page.position
        if not page.cursor and since.offset + limit >= page.position.offset:
            # The last page, and the stream is within a page of it: live at once.
            return await self._live(session, channel, request, flow, page.entries, since, False)
        result = SubscribeResult(
            type=RESULT_TYPE_MAP,
            phase=PHASE_STATE,
            cursor=page.cursor,
            epoch=since.epoch,
            offset=since.offset,
            state=_for_client(page.entries, _delta_agreed(channel, request), session.codec),
        )
        return Answer("subscribe", result)

    async def _stream_page(
        self, session: Session, channel: Channel, request: SubscribeRequest, flow: MapFlow
    ) -> Answer:
        maps = self.hub.maps
        store = maps.store(channel)
        since = StreamPosition(request.offset, request.epoch)
        if since.epoch and flow.epoch and since.epoch != flow.epoch:
            raise ClientError(Error.UNRECOVERABLE_POSITION)
        limit = page_size(request.limit, channel.options.map)
        if flow.stream_top < 0:
            try:
                top = await maps.engine.read_stream(channel.name, store, HistoryQuery(limit=0))
            except EpochMismatch as exc:  # pragma: no cover - no since, no mismatch
                raise ClientError(Error.UNRECOVERABLE_POSITION) from exc
            self._check(session, channel, flow)
            if since.epoch and top.position.epoch != since.epoch:
                raise ClientError(Error.UNRECOVERABLE_POSITION)
            flow.stream_top = top.position.offset
        if since.offset + limit >= flow.stream_top:
            return await self._live(session, channel, request, flow, None, since, True)
        try:
            page = await maps.engine.read_stream(
                channel.name, store, HistoryQuery(since=since, limit=limit)
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc
        self._check(session, channel, flow)
        publications = page.publications
        if not _continues(since.offset, publications, page.position.offset):
            raise ClientError(Error.UNRECOVERABLE_POSITION)  # the stream lost some of it
        delta = _delta_agreed(channel, request)
        result = SubscribeResult(
            type=RESULT_TYPE_MAP,
            phase=PHASE_STREAM,
            epoch=page.position.epoch,
            offset=publications[-1].offset if publications else since.offset,
            publications=_for_client(publications, delta, session.codec),
        )
        return Answer("subscribe", result)

    async def _live(
        self,
        session: Session,
        channel: Channel,
        request: SubscribeRequest,
        flow: MapFlow,
        state: list[Publication] | None,
        since: StreamPosition,
        recovering: bool,
    ) -> Answer:
        """Subscribe for real (Rule 3); ``state``: the last state page, sent with it."""
        hub = self.hub
        opts = channel.options
        maps = hub.maps
        store = maps.store(channel)
        mode = opts.map
        live_limit = mode.live_transition_max_publication_limit or (
            mode.max_page_size or MAX_PAGE_SIZE
        )
        recoverable = mode.mode != "ephemeral"

        async def catch_up() -> recovery.Positioned:
            try:
                page = await maps.engine.read_stream(
                    channel.name, store, HistoryQuery(since=since, limit=live_limit + 1)
                )
            except EpochMismatch as exc:
                raise ClientError(Error.UNRECOVERABLE_POSITION) from exc
            top = page.position
            publications = page.publications
            if (
                ((recovering or since.epoch) and since.epoch != top.epoch)
                or len(publications) > live_limit
                or not _continues(since.offset, publications, top.offset)
            ):
                raise ClientError(Error.UNRECOVERABLE_POSITION)
            # Flags stripped here; the lifecycle escapes the data when delta is agreed.
            result = SubscribeResult(
                type=RESULT_TYPE_MAP,
                phase=PHASE_LIVE,
                epoch=top.epoch,
                offset=top.offset,
                recoverable=recoverable,
                publications=without_flags(publications) or None,
                state=without_flags(state or []) or None,
                publish_debounce=int(opts.client_publish_debounce_interval * 1000),
            )
            if recovering and request.recover:
                result.was_recovering = result.recovered = True
            return recovery.Positioned(result, top.offset)

        grant = flow.grant
        channel = grant.channel  # as the decision point may have overridden its options
        subscription, result = await hub.lifecycle.subscribe(
            session,
            channel,
            request,
            chan_info=grant.chan_info,
            expire_at=grant.expire_at,
            push_join_leave=hub.commands.push_join_leave(session, channel, request),
            positioner=Positioner(recoverable, True, catch_up),
        )
        self.forget(session, channel.name, flow)
        result.expires, result.ttl = bool(grant.expire_at), ttl_until(grant.expire_at)
        hub.commands.apply_subscribe_decision(result, channel, grant.decision)
        return Answer("subscribe", result, lambda: hub.lifecycle.go_live(subscription))


def _for_client(entries: list[Publication], delta: bool, codec: Codec) -> list[Publication] | None:
    """Page entries as a client gets them: without the published-as-delta flags and,
    when the flow goes live with delta, with JSON-string data (hub/deltas.py Rule 1)."""
    entries = without_flags(entries)
    if delta:
        entries = [p if p.removed else whole(p, codec) for p in entries]
    return entries or None


def _delta_agreed(channel: Channel, request: SubscribeRequest) -> bool:
    """Whether the flow goes live with delta (the lifecycle decides the same way)."""
    return bool(request.delta) and request.delta in channel.options.allowed_delta_types


def _continues(offset: int, publications: list[Publication], top: int) -> bool:
    """``publications`` follow ``offset`` without a hole (up to ``top`` if none)."""
    if not publications:
        return offset >= top
    return publications[0].offset == offset + 1
