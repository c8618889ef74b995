"""The application API of state synchronisation, part of the hub's facade.

Rule: these are the same operations as the ``map_*`` server API methods, on
the same rooms (hub/maps.py), never around them; ``pubsub_for`` names the one
broker that carries a channel's events (the engine, the map engine, or none for
a shared poll channel fed by its backend).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from hubbub.engines.base import Engine, HistoryPage
from hubbub.engines.maps import MapEngine, MapResult, StatePage
from hubbub.errors import ClientError
from hubbub.protocol.messages import StreamPosition

if TYPE_CHECKING:
    from hubbub.auth.channels import ChannelRules
    from hubbub.hub.hooks import Hooks
    from hubbub.hub.maps import Maps


_F = TypeVar("_F")


class _NoBroker:
    """The broker of channels whose events come from elsewhere (shared poll)."""

    async def subscribe(self, channel: str) -> None:
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None


NO_BROKER = _NoBroker()


class StateApi:
    """Map channels for the application (``hub.map_publish(...)``, ``on_map_publish``),
    and brokers."""

    # Set by the Hub.
    maps: Maps
    engine: Engine
    map_engine: MapEngine
    channel_rules: ChannelRules
    hooks: Hooks

    def on_map_publish(self, fn: _F) -> _F:
        """Decide client writes to map channels (instead of the map.allow_* options)."""
        self.hooks.map_publish = fn  # type: ignore[assignment]
        return fn

    def pubsub_for(self, channel: str) -> Engine | MapEngine | _NoBroker:
        """The broker that delivers ``channel``'s events: the map engine for map
        channels; none for shared poll channels unless they take direct publishes."""
        try:
            options = self.channel_rules.resolve(channel).options
        except ClientError:
            return self.engine
        if options.is_map:
            return self.map_engine
        if options.subscription_type == "shared_poll" and not options.shared_poll.publish_enabled:
            return NO_BROKER
        return self.engine

    # --- map channels (the same operations as the map_* server API methods) -------------

    async def map_publish(
        self,
        channel: str,
        key: str,
        data: Any,
        *,
        key_mode: str = "",
        idempotency_key: str = "",
        version: int = 0,
        version_epoch: str = "",
        score: int = 0,
        tags: dict[str, str] | None = None,
        delta: bool = False,
    ) -> MapResult:
        """Set ``key`` of map channel ``channel`` to ``data`` (any JSON value)."""
        return await self.maps.publish(
            channel,
            key,
            data,
            key_mode=key_mode,
            idempotency_key=idempotency_key,
            version=version,
            version_epoch=version_epoch,
            score=score,
            tags=tags,
            delta=delta,
        )

    async def map_remove(self, channel: str, key: str, *, idempotency_key: str = "") -> MapResult:
        """Remove ``key`` from map channel ``channel``."""
        return await self.maps.remove(channel, key, idempotency_key=idempotency_key)

    async def map_state(self, channel: str) -> dict[str, Any]:
        """Every entry of map channel ``channel``: key -> decoded data."""
        entries: dict[str, Any] = {}
        cursor = ""
        while True:
            page = await self.maps.read_state(channel, cursor=cursor, limit=1000)
            for publication in page.entries:
                entries[publication.key] = msgspec.json.decode(publication.data)
            cursor = page.cursor
            if not cursor:
                return entries

    async def map_read_state(
        self, channel: str, *, cursor: str = "", limit: int = 0, key: str = "", asc: bool = False
    ) -> StatePage:
        """One page of map channel ``channel``'s entries (``cursor`` of the next page)."""
        return await self.maps.read_state(channel, cursor=cursor, limit=limit, key=key, asc=asc)

    async def map_read_stream(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
    ) -> HistoryPage:
        """Map channel ``channel``'s change stream."""
        return await self.maps.read_stream(channel, since=since, limit=limit, reverse=reverse)

    async def map_stats(self, channel: str) -> int:
        """How many entries map channel ``channel`` has."""
        return await self.maps.stats(channel)

    async def map_clear(self, channel: str) -> None:
        """Drop every entry of map channel ``channel`` (subscribers reload)."""
        await self.maps.clear(channel)
