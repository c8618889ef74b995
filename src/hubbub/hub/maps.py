"""Map channels: how a namespace stores its maps, and every write and read of them.

Rule 1: one place turns a namespace's ``map.*`` options into how its channels
are stored (``store``), checks that a channel is a map channel, and writes
(client publish and remove, the server API, the Python API, map presence),
so each of those goes through the same checks and reaches subscribers the
same way: the map engine assigns the offset and delivers through the hub's
channel table (engines/maps.py, Rule 1).
Rule 2: a client write is checked like a stream publish, with the
``map.allow_publish_for_*`` / ``map.allow_remove_for_*`` options (or the
``on_map_publish`` hook when one is registered); ``map.client_key`` makes the
key the client id or user id whatever the client sent; presence maps
(``map_clients``, ``map_users``) are written by the server only.
Rule 3: a write the engine suppresses (key mode, version, idempotency) is not
an error: the API reports ``suppressed`` and its reason, a client gets ``{}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.codes import Error
from hubbub.config.model import ChannelOptions
from hubbub.engines.base import EpochMismatch, HistoryPage, HistoryQuery
from hubbub.engines.maps import (
    DEFAULT_STREAM_SIZE,
    DEFAULT_STREAM_TTL,
    KEY_MODES,
    MapEngine,
    MapResult,
    MapStore,
    MapWrite,
    StatePage,
)
from hubbub.errors import ClientError
from hubbub.hub.hooks import is_set
from hubbub.hub.map_presence import MapMembership
from hubbub.hub.payloads import check_data, data_format
from hubbub.hub.session import Answer
from hubbub.protocol.messages import EmptyResult, Publication, StreamPosition
from hubbub.protocol.payload import Binary

if TYPE_CHECKING:
    from hubbub.auth.channels import Channel
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session, Subscription
    from hubbub.protocol.messages import PublishRequest

log = logging.getLogger("hubbub.maps")

#: Presence maps keep an entry this long after its last renewal (Centrifugo: 60 s).
PRESENCE_KEY_TTL = 60.0
#: ``map.client_key`` values: the key a client writes is its client id or user id.
CLIENT_KEYS = ("", "client_id", "user_id")


def map_store(options: ChannelOptions, default_meta_ttl: float) -> MapStore:
    """How the channels of a namespace with these options keep their map."""
    m = options.map
    key_ttl = m.key_ttl
    if not key_ttl and options.subscription_type in ("map_clients", "map_users"):
        key_ttl = PRESENCE_KEY_TTL
    return MapStore(
        key_ttl=key_ttl,
        stream_size=m.stream_size or DEFAULT_STREAM_SIZE,
        stream_ttl=m.stream_ttl or DEFAULT_STREAM_TTL,
        meta_ttl=m.meta_ttl or default_meta_ttl,
        ordered=m.ordered,
    )


class Maps:
    """The map channels of one hub: stores, writes, reads, map presence."""

    def __init__(self, hub: Hub, engine: MapEngine) -> None:
        self.hub = hub
        self.engine = engine
        self._stores: dict[str, MapStore] = {}  # by namespace ("" for without_namespace)

    def store(self, channel: Channel) -> MapStore:
        store = self._stores.get(channel.namespace)
        if store is None:
            default_meta_ttl = self.hub.config.channel.history_meta_ttl
            store = map_store(channel.options, default_meta_ttl)
            self._stores[channel.namespace] = store
        return store

    def resolve(self, name: str) -> Channel:
        """The map channel ``name``: 107 for an empty name or a channel of another type."""
        if not name:
            raise ClientError(Error.BAD_REQUEST, "channel required")
        channel = self.hub.channel_rules.resolve(name)
        if not channel.options.is_map:
            raise ClientError(Error.BAD_REQUEST, "not a map channel")
        return channel

    # --- map presence ------------------------------------------------------------------

    def membership(self, subscription: Subscription) -> MapMembership | None:
        """The map entries ``subscription`` keeps while it lives (map_presence.py)."""
        opts = subscription.channel.options
        clients = opts.map_clients_presence_channel_prefix
        users = opts.map_users_presence_channel_prefix
        owned = opts.is_map and opts.map.remove_client_on_unsubscribe
        if not (clients or users or owned):
            return None
        name = subscription.name
        return MapMembership(
            self,
            subscription,
            clients_channel=self._presence_channel(clients, name),
            users_channel=self._presence_channel(users, name),
            owned_channel=name if owned else "",
        )

    def _presence_channel(self, prefix: str, name: str) -> str:
        if not prefix:
            return ""
        target = prefix + name
        try:
            self.resolve(target)
        except ClientError as exc:
            log.warning("map presence channel %s: %s", target, exc.error.message)
            return ""
        return target

    async def write(self, name: str, publication: Publication, write: MapWrite) -> MapResult:
        """A server-side write (map presence, expiry of owned keys) to map channel ``name``."""
        channel = self.resolve(name)
        return await self.engine.publish(name, publication, self.store(channel), write)

    # --- client writes -----------------------------------------------------------------

    async def client_publish(
        self, session: Session, channel: Channel, request: PublishRequest
    ) -> Answer:
        """A client's ``publish`` with ``type: 1`` (a key, maybe ``removed``)."""
        opts = channel.options
        if request.type != 1 or not opts.is_map:
            raise ClientError(Error.BAD_REQUEST, "map publish needs a map channel")
        if opts.subscription_type != "map":
            raise ClientError(Error.PERMISSION_DENIED)  # presence maps: the server's
        hub = self.hub
        key = request.key
        client_key = opts.map.client_key
        if client_key == "client_id":
            key = session.client_id
        elif client_key == "user_id":
            key = session.user
        payload = request.data
        if isinstance(payload, Binary):  # map state and its engines hold JSON
            raise ClientError(Error.BAD_REQUEST, "binary data in a map channel")
        data: msgspec.Raw = payload
        if not request.removed:
            check_data(data_format(hub.config, opts), data)
        decision = await hub.decisions.map_publish(
            session, channel, key, data, removed=request.removed
        )
        if decision is not None:
            if decision.key is not None:
                key = decision.key
            if is_set(decision.data) and not request.removed:
                data = msgspec.Raw(msgspec.json.encode(decision.data))
        if not key:
            raise ClientError(Error.BAD_REQUEST, "key required")
        subscription = session.subscriptions.get(channel.name)
        info = session.client_info(subscription.chan_info if subscription else None)
        if request.removed:
            publication = Publication(info=info, key=key, removed=True)
        else:
            publication = Publication(data=data, info=info, key=key, delta=opts.delta_publish)
        await self.engine.publish(channel.name, publication, self.store(channel), MapWrite())
        return Answer("publish", EmptyResult())

    # --- the application's and the API's writes and reads -------------------------------

    async def publish(
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
        """Set ``key`` of map channel ``channel`` to ``data`` (any JSON value or Raw);
        ``delta``: delta subscribers may get it as a patch of the key's last value."""
        resolved = self.resolve(channel)
        if not key:
            raise ClientError(Error.BAD_REQUEST, "key required")
        if key_mode not in KEY_MODES:
            raise ClientError(Error.BAD_REQUEST, 'key_mode must be "if_new" or "if_exists"')
        raw = data if isinstance(data, msgspec.Raw) else msgspec.Raw(msgspec.json.encode(data))
        check_data(data_format(self.hub.config, resolved.options), raw)
        delta = delta or resolved.options.delta_publish
        publication = Publication(data=raw, key=key, score=score, tags=tags or None, delta=delta)
        write = MapWrite(
            key_mode=key_mode,
            idempotency_key=idempotency_key,
            version=version,
            version_epoch=version_epoch,
        )
        return await self.engine.publish(channel, publication, self.store(resolved), write)

    async def remove(self, channel: str, key: str, *, idempotency_key: str = "") -> MapResult:
        """Remove ``key`` from map channel ``channel`` (suppressed when it is absent)."""
        resolved = self.resolve(channel)
        if not key:
            raise ClientError(Error.BAD_REQUEST, "key required")
        publication = Publication(key=key, removed=True)
        write = MapWrite(idempotency_key=idempotency_key)
        return await self.engine.publish(channel, publication, self.store(resolved), write)

    async def read_state(
        self,
        channel: str,
        *,
        cursor: str = "",
        limit: int = 0,
        key: str = "",
        asc: bool = False,
        revision: StreamPosition | None = None,
    ) -> StatePage:
        """A page of the entries; 112 when ``revision`` names a stream that is gone."""
        resolved = self.resolve(channel)
        try:
            return await self.engine.read_state(
                channel,
                self.store(resolved),
                cursor=cursor,
                limit=limit,
                key=key,
                asc=asc,
                revision=revision,
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc

    async def read_stream(
        self,
        channel: str,
        *,
        since: StreamPosition | None = None,
        limit: int = 0,
        reverse: bool = False,
    ) -> HistoryPage:
        """The change stream (limit 0: only the position); 112 for a stale ``since``."""
        resolved = self.resolve(channel)
        try:
            return await self.engine.read_stream(
                channel, self.store(resolved), HistoryQuery(since, limit, reverse)
            )
        except EpochMismatch as exc:
            raise ClientError(Error.UNRECOVERABLE_POSITION) from exc

    async def stats(self, channel: str) -> int:
        """How many entries map channel ``channel`` has."""
        resolved = self.resolve(channel)
        return await self.engine.stats(channel, self.store(resolved))

    async def clear(self, channel: str) -> None:
        """Drop the entries and the stream; subscribers reload from a new epoch."""
        self.resolve(channel)
        await self.engine.clear(channel)
        # This node's subscribers hold entries that are gone: they load the state again.
        self.hub.channels.lost([channel], "map cleared")
