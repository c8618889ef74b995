"""The server HTTP API: ``POST /api/<method>`` with ``X-API-Key``, as Centrifugo's.

Rule: transport problems get HTTP statuses (401 no or wrong key, 404 unknown
method, 400 a body that is not valid JSON of the method's shape, 413 too big);
a well-formed request the hub refuses gets HTTP 200 with
``{"error": {"code", "message"}}``, like Centrifugo, so ``cent`` raises its
API error. Success is ``{"result": {...}}``. ``HttpApi.admit`` and
``HttpApi.answer`` are the API without a web framework: the aiohttp route
(``handle``) and the ASGI application (hubbub.asgi) both go through them.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from hubbub.codes import Disconnect, DisconnectInfo, Error, disconnect_info
from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError
from hubbub.hub.hub import Hub
from hubbub.hub.payloads import check_data, data_format
from hubbub.protocol.codec import compact_json
from hubbub.protocol.messages import NO_DATA, Publication, StreamPosition
from hubbub.protocol.payload import Payload, from_b64, to_container
from hubbub.server.api_bodies import BadParams as BadParams  # admin.py catches it too
from hubbub.server.api_bodies import decode as _decode
from hubbub.server.api_maps import MapApiMethods
from hubbub.server.http_answer import ApiAnswer

log = logging.getLogger("hubbub.api")

#: The largest API request body, in bytes: larger ones get 413 (whatever the
#: aiohttp application's own ``client_max_size``, which the API does not use).
MAX_BODY = 10 * 1024 * 1024
#: Bytes read from the request body at a time.
_CHUNK = 65536


async def read_body(request: web.Request, limit: int = MAX_BODY) -> bytes:
    """The request body, at most ``limit`` bytes (413 beyond, before reading it all)."""
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    body = bytearray()
    while chunk := await request.content.read(_CHUNK):
        body += chunk
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return bytes(body)


# --- request shapes ------------------------------------------------------------------


class PublishParams(msgspec.Struct):
    channel: str
    data: msgspec.Raw = NO_DATA
    b64data: str = ""  # binary data as base64 (protocol/payload.py): used instead of data
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False  # delta subscribers may get it as a patch (hub/deltas.py)


class BroadcastParams(msgspec.Struct):
    channels: list[str]
    data: msgspec.Raw = NO_DATA
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""
    delta: bool = False


class ChannelParams(msgspec.Struct):
    channel: str


class HistoryParams(msgspec.Struct):
    channel: str
    limit: int = 0
    since: StreamPosition | None = None
    reverse: bool = False


class ChannelsParams(msgspec.Struct):
    pattern: str = ""


class EmptyParams(msgspec.Struct):
    pass


class DisconnectParams(msgspec.Struct):
    code: int = 0
    reason: str = ""


class UserDisconnectParams(msgspec.Struct):
    user: str
    client: str = ""
    session: str = ""
    whitelist: list[str] | None = None
    disconnect: DisconnectParams | None = None


class UserChannelParams(msgspec.Struct):
    user: str
    channel: str
    client: str = ""
    session: str = ""


class UserSubscribeParams(msgspec.Struct):
    user: str
    channel: str
    client: str = ""
    session: str = ""
    info: msgspec.Raw = NO_DATA
    data: msgspec.Raw = NO_DATA
    recover_since: StreamPosition | None = None


class RefreshParams(msgspec.Struct):
    user: str
    client: str = ""
    session: str = ""
    expired: bool = False
    expire_at: int = 0


class ConnectionsParams(msgspec.Struct):
    user: str = ""  # "": every connection (up to ``limit``)
    limit: int = 100


class BatchParams(msgspec.Struct):
    commands: list[dict[str, msgspec.Raw]]
    parallel: bool = False


Handler = Callable[[msgspec.Raw], Awaitable[dict[str, Any]]]


def _payload(data: msgspec.Raw, b64data: str) -> Payload:
    """A publish's data: ``b64data`` decoded (binary, as Centrifugo) when given."""
    if not b64data:
        return data
    try:
        return from_b64(b64data)
    except ValueError as exc:
        raise ClientError(Error.BAD_REQUEST, f"b64data {exc}") from None


class HttpApi(MapApiMethods):
    """The API methods of one hub, dispatched by name."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._methods: dict[str, Handler] = {
            "publish": self.publish,
            "broadcast": self.broadcast,
            "presence": self.presence,
            "presence_stats": self.presence_stats,
            "history": self.history,
            "history_remove": self.history_remove,
            "channels": self.channels,
            "info": self.info,
            "disconnect": self.disconnect,
            "unsubscribe": self.unsubscribe,
            "subscribe": self.subscribe,
            "refresh": self.refresh,
            "connections": self.connections,
            "batch": self.batch,
            "map_publish": self.map_publish,
            "map_remove": self.map_remove,
            "map_read_state": self.map_read_state,
            "map_read_stream": self.map_read_stream,
            "map_stats": self.map_stats,
            "map_clear": self.map_clear,
            "shared_poll_publish": self.shared_poll_publish,
        }

    # --- HTTP boundary ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp route: ``POST /api/{method}``."""
        admitted = self.admit(
            request.match_info["method"], request.headers.get, request.content_length
        )
        if isinstance(admitted, ApiAnswer):
            answer = admitted
        else:
            answer = await self.answer(admitted, await read_body(request))
        return web.Response(
            status=answer.status, body=answer.body, headers={"Content-Type": answer.content_type}
        )

    def admit(
        self, method: str, header: Callable[[str], str | None], content_length: int | None
    ) -> Handler | ApiAnswer:
        """The handler of ``method`` if the request may run, else the refusal;
        decided before the body is read. ``header(name)``: a request header."""
        config = self.hub.config.http_api
        if config.disabled:
            return ApiAnswer.refusal(404, "http api is disabled")
        if not config.insecure and not self._authorized(header):
            return ApiAnswer.refusal(401, "missing or wrong X-API-Key")
        handler = self._methods.get(method)
        if handler is None:
            return ApiAnswer.refusal(404, "unknown api method")
        if content_length is not None and content_length > MAX_BODY:
            return ApiAnswer.refusal(413, f"the body is over {MAX_BODY} bytes")
        return handler

    async def answer(self, handler: Handler, body: bytes) -> ApiAnswer:
        """Run an admitted call with its body."""
        try:
            reply = await self._call(handler, msgspec.Raw(body or b"{}"))
        except BadParams as exc:
            return ApiAnswer.refusal(400, f"bad request: {exc}")
        if handler == self.batch and "result" in reply:
            reply = reply["result"]  # Centrifugo answers a batch with {"replies": [...]} itself
        return ApiAnswer(200, msgspec.json.encode(reply))

    async def execute(self, method: str, params: msgspec.Raw) -> dict[str, Any] | None:
        """Run API ``method`` with ``params`` (JSON) for another door (the admin API):
        ``{"result": ...}`` or ``{"error": ...}``; None for an unknown method.
        Raises BadParams when ``params`` do not have the method's shape."""
        handler = self._methods.get(method)
        if handler is None:
            return None
        reply = await self._call(handler, params)
        if handler == self.batch and "result" in reply:
            reply = reply["result"]
        return reply

    def _authorized(self, header: Callable[[str], str | None]) -> bool:
        expected = self.hub.config.http_api.key
        if not expected:
            return False
        given = header("X-API-Key") or ""
        if not given:
            auth = header("Authorization") or ""
            if auth.lower().startswith("apikey "):
                given = auth[7:].strip()
        # Constant time: the comparison must not tell how much of the key matched.
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _call(self, handler: Handler, body: msgspec.Raw) -> dict[str, Any]:
        """Run ``handler``: its result or its error reply; counted (hub.counters)."""
        method = getattr(handler, "__name__", "call")
        started = time.perf_counter()
        error = Error.INTERNAL.code
        try:
            reply = {"result": await handler(body)}
            error = 0
            return reply
        except ClientError as exc:
            error = exc.error.code
            return {"error": {"code": exc.error.code, "message": exc.error.message}}
        except BadParams:
            error = Error.BAD_REQUEST.code
            raise
        except EngineUnavailable as exc:
            self.hub.outages.failed(f"api {method}", exc)
            return {"error": {"code": Error.INTERNAL.code, "message": Error.INTERNAL.message}}
        except Exception:
            log.exception("api call failed")
            return {"error": {"code": Error.INTERNAL.code, "message": Error.INTERNAL.message}}
        finally:
            self.hub.counters.api_call(method, time.perf_counter() - started, error)

    # --- methods ---------------------------------------------------------------------

    async def publish(self, body: msgspec.Raw) -> dict[str, Any]:
        params: PublishParams = _decode(body, PublishParams)
        return await self._publish_one(
            params.channel,
            _payload(params.data, params.b64data),
            params.skip_history,
            params.tags,
            params.idempotency_key,
            params.delta,
        )

    async def _publish_one(
        self,
        channel: str,
        data: Payload,
        skip_history: bool,
        tags: dict[str, str] | None,
        idempotency_key: str,
        delta: bool = False,
        *,
        compacted: bool = False,
    ) -> dict[str, Any]:
        if not data:
            raise ClientError(Error.BAD_REQUEST, "data required")
        resolved = self.hub.channel_rules.resolve(channel)
        check_data(data_format(self.hub.config, resolved.options), data)
        if not compacted and isinstance(data, msgspec.Raw):
            data = compact_json(data)
        result = await self.hub.publish_publication(
            resolved,
            Publication(data=data, tags=tags or None, delta=delta),
            skip_history=skip_history,
            idempotency_key=idempotency_key,
        )
        position = result.position
        return {"offset": position.offset, "epoch": position.epoch} if position.epoch else {}

    async def broadcast(self, body: msgspec.Raw) -> dict[str, Any]:
        """Publish to every channel at once (as Centrifugo does): the publishes start
        in one loop turn, so a pipelined engine sends them as one batch; the
        responses keep the channels' order, each its result or its own error."""
        params: BroadcastParams = _decode(body, BroadcastParams)
        data = _payload(params.data, params.b64data)
        if data and isinstance(data, msgspec.Raw):
            data = compact_json(data)  # once, not per channel

        async def one(channel: str) -> dict[str, Any]:
            try:
                result = await self._publish_one(
                    channel,
                    data,
                    params.skip_history,
                    params.tags,
                    params.idempotency_key,
                    params.delta,
                    compacted=True,
                )
            except ClientError as exc:
                return {"error": {"code": exc.error.code, "message": exc.error.message}}
            except EngineUnavailable as exc:  # this channel's shard is away: its own error
                self.hub.outages.failed("api broadcast", exc)
                return {"error": {"code": Error.INTERNAL.code, "message": Error.INTERNAL.message}}
            return {"result": result}

        responses = await asyncio.gather(*(one(channel) for channel in params.channels))
        return {"responses": list(responses)}

    async def presence(self, body: msgspec.Raw) -> dict[str, Any]:
        params: ChannelParams = _decode(body, ChannelParams)
        self._require_presence(params.channel)
        members = await self.hub.engine.presence(params.channel)
        return {"presence": members}

    async def presence_stats(self, body: msgspec.Raw) -> dict[str, Any]:
        params: ChannelParams = _decode(body, ChannelParams)
        self._require_presence(params.channel)
        stats = await self.hub.engine.presence_stats(params.channel)
        return {"num_clients": stats.num_clients, "num_users": stats.num_users}

    def _require_presence(self, channel: str) -> None:
        if not self.hub.channel_rules.resolve(channel).options.presence:
            raise ClientError(Error.NOT_AVAILABLE)

    async def history(self, body: msgspec.Raw) -> dict[str, Any]:
        params: HistoryParams = _decode(body, HistoryParams)
        page = await self.hub.history(
            params.channel,
            limit=self.hub.client_history_limit(params.limit),
            since=params.since,
            reverse=params.reverse,
        )
        result: dict[str, Any] = {
            "publications": [to_container(p) for p in page.publications],
            "epoch": page.position.epoch,
            "offset": page.position.offset,
        }
        return result

    async def history_remove(self, body: msgspec.Raw) -> dict[str, Any]:
        params: ChannelParams = _decode(body, ChannelParams)
        self.hub.channel_rules.resolve(params.channel)
        await self.hub.engine.remove_history(params.channel)
        return {}

    async def channels(self, body: msgspec.Raw) -> dict[str, Any]:
        params: ChannelsParams = _decode(body, ChannelsParams)
        pattern = params.pattern
        counts = await self.hub.control.channel_counts()  # every node's
        return {
            "channels": {
                name: {"num_clients": count}
                for name, count in counts.items()
                if not pattern or fnmatch.fnmatchcase(name, pattern)
            }
        }

    async def info(self, body: msgspec.Raw) -> dict[str, Any]:
        _decode(body, EmptyParams)
        return {"nodes": [msgspec.to_builtins(node) for node in self.hub.control.nodes()]}

    async def disconnect(self, body: msgspec.Raw) -> dict[str, Any]:
        params: UserDisconnectParams = _decode(body, UserDisconnectParams)
        reason: DisconnectInfo = Disconnect.FORCE_DISCONNECT
        if params.disconnect is not None and params.disconnect.code:
            code = params.disconnect.code
            if not (3000 <= code <= 4999):
                raise ClientError(Error.BAD_REQUEST, "disconnect code must be 3000..4999")
            reason = disconnect_info(code, params.disconnect.reason)
        await self.hub.control.disconnect_user(
            params.user, reason, client=params.client, whitelist=params.whitelist or ()
        )
        return {}

    async def unsubscribe(self, body: msgspec.Raw) -> dict[str, Any]:
        params: UserChannelParams = _decode(body, UserChannelParams)
        self.hub.channel_rules.resolve(params.channel)
        await self.hub.control.unsubscribe_user(params.user, params.channel, client=params.client)
        return {}

    async def subscribe(self, body: msgspec.Raw) -> dict[str, Any]:
        params: UserSubscribeParams = _decode(body, UserSubscribeParams)
        await self.hub.control.subscribe_user(
            params.user,
            params.channel,
            client=params.client,
            info=compact_json(params.info) if params.info else None,
            data=compact_json(params.data) if params.data else None,
            recover_since=params.recover_since,
        )
        return {}

    async def refresh(self, body: msgspec.Raw) -> dict[str, Any]:
        params: RefreshParams = _decode(body, RefreshParams)
        await self.hub.control.refresh_user(
            params.user, client=params.client, expired=params.expired, expire_at=params.expire_at
        )
        return {}

    async def connections(self, body: msgspec.Raw) -> dict[str, Any]:
        """Connections (of ``user``, or all up to ``limit``) on every node, as
        Centrifugo PRO's ``connections`` method shapes them."""
        params: ConnectionsParams = _decode(body, ConnectionsParams)
        if params.limit <= 0:
            return {"connections": {}}
        return {"connections": await self.hub.control.connections(params.user, params.limit)}

    async def batch(self, body: msgspec.Raw) -> dict[str, Any]:
        params: BatchParams = _decode(body, BatchParams)
        for command in params.commands:
            if len(command) != 1:
                raise BadParams("each batch command has exactly one method")

        async def run(command: dict[str, msgspec.Raw]) -> dict[str, Any]:
            ((method, method_body),) = command.items()
            handler = self._methods.get(method)
            if handler is None or method == "batch":
                return {
                    "error": {"code": Error.METHOD_NOT_FOUND.code, "message": "method not found"}
                }
            reply = await self._call(handler, method_body)
            return {method: reply["result"]} if "result" in reply else reply

        if params.parallel:  # at once (publishes travel together); replies in command order
            return {"replies": list(await asyncio.gather(*map(run, params.commands)))}
        return {"replies": [await run(command) for command in params.commands]}
