"""The gRPC proxy transport: Centrifugo's ``CentrifugoProxy`` service over grpc.aio.

Rule: one channel per endpoint (HTTP/2 multiplexes every call on it), opened
on first use in the running loop; messages are converted between the
JSON-shaped Structs of ``messages`` and the generated protobuf classes, field
by field by name, so the two schemas cannot drift apart unnoticed (a field
missing on one side raises at the first call of the test suite). A call
returns the response Struct or raises ``TransportFailure``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

# grpcio's C core writes a failed TLS handshake (an untrusted backend, a missing
# client certificate) to stderr at INFO, beside the logging module: one more line
# per failure, unformatted. The proxy's own WARNING line says it; only the core's
# errors are kept (a value set by the user wins). It must be set before grpc loads.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

import grpc
import grpc.aio
import msgspec
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from hubbub.config.backend import ProxyOptions
from hubbub.proxy import messages as m
from hubbub.proxy.grpcproto import proxy_pb2 as pb
from hubbub.proxy.http_transport import TransportFailure
from hubbub.proxy.tls import grpc_credentials, grpc_tls_failure

SERVICE = "centrifugal.centrifugo.proxy.CentrifugoProxy"
#: Calls in flight on one channel at once; more wait (within their timeout).
#: grpc.aio cancels calls when thousands start at once on a fresh channel.
MAX_IN_FLIGHT = 256

_R = TypeVar("_R", bound=msgspec.Struct)

#: Request Struct -> (method, protobuf request class, protobuf response class).
_METHODS: dict[type[msgspec.Struct], tuple[str, type[Message], type[Message]]] = {
    m.ConnectRequest: ("Connect", pb.ConnectRequest, pb.ConnectResponse),
    m.RefreshRequest: ("Refresh", pb.RefreshRequest, pb.RefreshResponse),
    m.SubscribeRequest: ("Subscribe", pb.SubscribeRequest, pb.SubscribeResponse),
    m.PublishRequest: ("Publish", pb.PublishRequest, pb.PublishResponse),
    m.RPCRequest: ("RPC", pb.RPCRequest, pb.RPCResponse),
    m.SubRefreshRequest: ("SubRefresh", pb.SubRefreshRequest, pb.SubRefreshResponse),
}


def target_of(endpoint: str) -> str:
    """``grpc://host:port`` -> ``host:port``."""
    return endpoint.removeprefix("grpc://").rstrip("/")


def to_protobuf(request: m.ProxyRequest, cls: type[Message]) -> Message:
    """A request Struct as its protobuf message (payloads as bytes)."""
    fields: dict[str, Any] = {}
    for name in request.__struct_fields__:
        value = getattr(request, name)
        if isinstance(value, msgspec.Raw):
            value = bytes(value)
        if value is None or value == "" or value == b"":
            continue
        fields[name] = value
    return cls(**fields)


def from_protobuf(message: Message) -> dict[str, Any]:
    """The fields set in ``message`` as builtins (bytes payloads as ``msgspec.Raw``)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {
                key: from_protobuf(item) if isinstance(item, Message) else item
                for key, item in value.items()
            }
        elif field.is_repeated:
            out[field.name] = [from_protobuf(v) if isinstance(v, Message) else v for v in value]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out[field.name] = from_protobuf(value)
        elif field.type == FieldDescriptor.TYPE_BYTES:
            out[field.name] = msgspec.Raw(value)
        else:
            out[field.name] = value
    return out


class GrpcTransport:
    """Unary calls to one ``grpc://`` endpoint."""

    def __init__(self, options: ProxyOptions, key: str) -> None:
        self.target = target_of(options.endpoint)
        grpc_options = options.grpc
        self._tls = grpc_options.tls
        self._key = f"{key}.grpc.tls"
        self._compression = grpc.Compression.Gzip if grpc_options.compression else None
        self._credentials: tuple[tuple[str, str], ...] = (
            ((grpc_options.credentials_key, grpc_options.credentials_value),)
            if grpc_options.credentials_key
            else ()
        )
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Callable[..., Any]] = {}
        self._slots: asyncio.Semaphore | None = None

    def _open(self) -> grpc.aio.Channel:
        options: list[tuple[str, Any]] = []
        if self._tls.enabled:
            if self._tls.server_name:
                options.append(("grpc.ssl_target_name_override", self._tls.server_name))
            root, private, cert = grpc_credentials(self._tls, self._key)
            credentials = grpc.ssl_channel_credentials(root, private, cert)
            return grpc.aio.secure_channel(
                self.target, credentials, options=options, compression=self._compression
            )
        return grpc.aio.insecure_channel(
            self.target, options=options, compression=self._compression
        )

    async def call(
        self,
        request: m.ProxyRequest,
        response_type: type[_R],
        metadata: Sequence[tuple[str, str]],
        seconds: float,
    ) -> _R:
        """Call the method of ``request``'s type, waiting at most ``seconds``."""
        method, request_cls, response_cls = _METHODS[type(request)]
        if self._channel is None:
            self._channel = self._open()
            self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        assert self._slots is not None
        stub = self._calls.get(method)
        if stub is None:
            stub = self._calls[method] = self._channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=request_cls.SerializeToString,
                response_deserializer=response_cls.FromString,
            )
        message = to_protobuf(request, request_cls)
        try:
            async with asyncio.timeout(seconds):
                async with self._slots:
                    reply = await stub(message, metadata=(*metadata, *self._credentials) or None)
        except TimeoutError:
            raise TransportFailure(f"no answer within {seconds:g}s") from None
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            if self._tls.enabled and exc.code() == grpc.StatusCode.UNAVAILABLE:
                host = self._tls.server_name or self.target.rpartition(":")[0]
                cause = grpc_tls_failure(details, host)
                if cause is not None:
                    raise TransportFailure(f"gRPC UNAVAILABLE: {cause}") from None
            raise TransportFailure(f"gRPC {exc.code().name}: {details}") from None
        except ValueError as exc:  # metadata grpc refuses (a header value it can not send)
            raise TransportFailure(f"gRPC call refused: {exc}") from None
        try:
            return msgspec.convert(from_protobuf(reply), response_type)
        except msgspec.ValidationError as exc:
            raise TransportFailure(f"unexpected answer: {exc}") from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._calls.clear()
