"""The server API methods of map and shared poll channels (Centrifugo 6.8's names
and shapes): ``map_publish``, ``map_remove``, ``map_read_state``,
``map_read_stream``, ``map_stats``, ``map_clear`` and ``shared_poll_publish``.

Rule: each decodes its body, calls the hub's room for it (hub/maps.py,
hub/polls.py) and shapes the result as Centrifugo does; errors travel as in
every API method (server/api.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import msgspec

from hubbub.codes import Error
from hubbub.engines.maps import MapResult
from hubbub.errors import ClientError
from hubbub.protocol.codec import compact_json
from hubbub.protocol.messages import NO_DATA, Publication, StreamPosition
from hubbub.server.api_bodies import decode as _decode

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub


class MapPublishParams(msgspec.Struct):
    channel: str = ""
    key: str = ""
    data: msgspec.Raw = NO_DATA
    b64data: str = ""
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    key_mode: str = ""
    version: int = 0
    version_epoch: str = ""
    score: int = 0
    delta: bool = False


class MapRemoveParams(msgspec.Struct):
    channel: str = ""
    key: str = ""
    idempotency_key: str = ""


class MapReadStateParams(msgspec.Struct):
    channel: str = ""
    cursor: str = ""
    limit: int = 0
    key: str = ""
    asc: bool = False
    revision_offset: int = 0
    revision_epoch: str = ""


class MapReadStreamParams(msgspec.Struct):
    channel: str = ""
    limit: int = 0
    reverse: bool = False
    since_offset: int = 0
    since_epoch: str = ""


class SharedPollPublishParams(msgspec.Struct):
    channel: str = ""
    key: str = ""
    data: msgspec.Raw = NO_DATA
    b64data: str = ""
    version: int = 0
    epoch: str = ""


class MapChannelParams(msgspec.Struct):
    channel: str = ""


class MapEntry(msgspec.Struct, omit_defaults=True):
    """An entry of map_read_state / map_read_stream (Centrifugo's MapEntry)."""

    key: str = ""
    data: msgspec.Raw = NO_DATA
    tags: dict[str, str] | None = None
    offset: int = 0
    score: int = 0
    removed: bool = False
    time: int = 0


def _entries(publications: list[Publication]) -> list[MapEntry]:
    return [
        # Map channels hold JSON only (a binary client write is refused: hub/maps.py).
        MapEntry(
            p.key,
            cast(msgspec.Raw, p.data) if not p.removed else NO_DATA,
            p.tags,
            p.offset,
            p.score,
            p.removed,
        )
        for p in publications
    ]


def _map_result(result: MapResult) -> dict[str, Any]:
    reply: dict[str, Any] = {"offset": result.position.offset, "epoch": result.position.epoch}
    if result.suppressed:
        reply["suppressed"] = True
        reply["suppress_reason"] = result.reason
    return reply


def _position(offset: int, epoch: str) -> StreamPosition | None:
    """The position a request names, or None when it names none (both empty)."""
    return StreamPosition(offset, epoch) if offset or epoch else None


class MapApiMethods:
    """The map and shared poll methods of ``HttpApi``."""

    hub: Hub

    async def map_publish(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapPublishParams = _decode(body, MapPublishParams)
        data = compact_json(params.data) if params.data else NO_DATA
        if params.b64data:
            raise ClientError(Error.BAD_REQUEST, "b64data needs the protobuf protocol")
        result = await self.hub.maps.publish(
            params.channel,
            params.key,
            data,
            key_mode=params.key_mode,
            idempotency_key=params.idempotency_key,
            version=params.version,
            version_epoch=params.version_epoch,
            score=params.score,
            tags=params.tags,
            delta=params.delta,
        )
        return _map_result(result)

    async def map_remove(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapRemoveParams = _decode(body, MapRemoveParams)
        result = await self.hub.maps.remove(
            params.channel, params.key, idempotency_key=params.idempotency_key
        )
        return _map_result(result)

    async def map_read_state(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapReadStateParams = _decode(body, MapReadStateParams)
        revision = _position(params.revision_offset, params.revision_epoch)
        page = await self.hub.maps.read_state(
            params.channel,
            cursor=params.cursor,
            limit=params.limit,
            key=params.key,
            asc=params.asc,
            revision=revision,
        )
        reply: dict[str, Any] = {
            "entries": _entries(page.entries),
            "offset": page.position.offset,
            "epoch": page.position.epoch,
        }
        if page.cursor:
            reply["cursor"] = page.cursor
        return reply

    async def map_read_stream(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapReadStreamParams = _decode(body, MapReadStreamParams)
        since = _position(params.since_offset, params.since_epoch)
        page = await self.hub.maps.read_stream(
            params.channel,
            since=since,
            limit=self.hub.client_history_limit(params.limit),
            reverse=params.reverse,
        )
        return {
            "entries": _entries(page.publications),
            "offset": page.position.offset,
            "epoch": page.position.epoch,
        }

    async def map_stats(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapChannelParams = _decode(body, MapChannelParams)
        return {"num_keys": await self.hub.maps.stats(params.channel)}

    async def map_clear(self, body: msgspec.Raw) -> dict[str, Any]:
        params: MapChannelParams = _decode(body, MapChannelParams)
        await self.hub.maps.clear(params.channel)
        return {}

    async def shared_poll_publish(self, body: msgspec.Raw) -> dict[str, Any]:
        params: SharedPollPublishParams = _decode(body, SharedPollPublishParams)
        if params.b64data:
            raise ClientError(Error.BAD_REQUEST, "b64data needs the protobuf protocol")
        data = compact_json(params.data) if params.data else NO_DATA
        await self.hub.polls.publish(params.channel, params.key, data, params.version, params.epoch)
        return {}
