"""Positioning and recovery on subscribe, as pure functions: no engine, no await.

Rule 1: a subscribe reads history at most once. ``plan`` says which read
(``None``: the subscription is not positioned and reads nothing);
``conclude`` turns what the read returned (a page, or only the stream's
position when the client's epoch is gone) into the subscribe result.
Rule 2: recovery is never partial: either every publication after the
client's offset is in the page (at most ``max_publications``) and the result
says ``recovered: true`` with them, or it carries none of them.
Rule 3 (Centrifugo's): a recovered result carries the CLIENT's offset and the
publications that bring it to the top; otherwise the stream's top. The
subscription goes live from the top either way (``Positioned.live_from``).
Rule 4: ``auto_cache_recovery`` (cache mode only) recovers every subscribe:
one that did not ask gets the latest publication, the top, and no flags.
"""

from __future__ import annotations

import msgspec

from hubbub.codes import Error
from hubbub.engines.base import HistoryPage, HistoryQuery
from hubbub.errors import ClientError
from hubbub.protocol.messages import StreamPosition, SubscribeRequest, SubscribeResult

#: SubscribeRequest.flag bit: answer 112 instead of ``recovered: false``.
FLAG_REJECT_UNRECOVERED = 2


class Recovery(msgspec.Struct, frozen=True):
    """How one subscribe is positioned, decided from the channel's options and the request."""

    recoverable: bool  # the client may recover (and gets the stream position)
    positioned: bool  # the client tracks the stream position
    cache_mode: bool  # force_recovery_mode "cache": only the latest publication
    max_publications: int  # client.recovery_max_publication_limit
    auto: bool = False  # auto_cache_recovery: recover whether the client asks or not

    def wants(self, request: SubscribeRequest) -> bool:
        """Whether this subscribe tries to recover (and so reads publications)."""
        return self.recoverable and (request.recover or self.auto)


class Positioned(msgspec.Struct, frozen=True):
    result: SubscribeResult
    live_from: int  # publications up to this offset are covered by the reply


def plan(recovery: Recovery, request: SubscribeRequest) -> HistoryQuery | None:
    """The one history read a subscribe needs, or None when it needs none."""
    if not recovery.positioned:
        return None
    if recovery.wants(request):
        if recovery.cache_mode:
            return HistoryQuery(limit=1, reverse=True)
        since = StreamPosition(request.offset, request.epoch)
        return HistoryQuery(since=since, limit=recovery.max_publications + 1)
    return HistoryQuery(limit=0)


def conclude(
    recovery: Recovery,
    request: SubscribeRequest,
    page: HistoryPage | None,
    top: StreamPosition,
) -> Positioned:
    """The subscribe result from the read ``plan`` asked for.

    ``page`` is None when there was no read, or when the client's epoch is gone
    (then ``top`` is the stream's current position); otherwise ``top`` is
    ``page.position``. Raises ClientError 112 when the request's flag asks for
    it and the position could not be recovered.
    """
    if not recovery.positioned:
        return Positioned(SubscribeResult(), 0)
    result = SubscribeResult(
        recoverable=recovery.recoverable, positioned=True, epoch=top.epoch, offset=top.offset
    )
    if not recovery.wants(request):
        return Positioned(result, top.offset)
    # auto_cache_recovery recovers for a client that did not ask: it gets the
    # latest publication with the top position, and no recovery flags.
    asked = request.recover
    result.was_recovering = asked
    recovered = page is not None and (
        _cache_recovered(result, request, page)
        if recovery.cache_mode
        else _stream_recovered(result, request, page, recovery.max_publications)
    )
    if recovered:
        live_from = top.offset
        if result.publications:
            live_from = max(live_from, result.publications[-1].offset)
        if asked:
            result.recovered = True
            result.offset = request.offset
        return Positioned(result, live_from)
    if asked and request.flag & FLAG_REJECT_UNRECOVERED:
        raise ClientError(Error.UNRECOVERABLE_POSITION)
    return Positioned(result, top.offset)


def _stream_recovered(
    result: SubscribeResult, request: SubscribeRequest, page: HistoryPage, limit: int
) -> bool:
    """Every publication after the client's offset is in ``page``: put them in ``result``."""
    top = page.position.offset
    offset = request.offset
    if offset > top:
        return False
    missed = top - offset
    publications = page.publications
    if missed and not (
        missed <= limit and len(publications) == missed and publications[0].offset == offset + 1
    ):
        return False
    result.publications = publications or None
    return True


def _cache_recovered(result: SubscribeResult, request: SubscribeRequest, page: HistoryPage) -> bool:
    """Cache mode: the latest publication is the state; recovered when there is one."""
    if not page.publications:
        return False
    same_stream = request.epoch == page.position.epoch
    if same_stream and request.offset > page.position.offset:
        return False  # a position this stream never had
    latest = page.publications[0]
    if not same_stream or latest.offset > request.offset:
        result.publications = [latest]
    return True
