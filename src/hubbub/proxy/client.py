"""One configured proxy for one event: prepare the request, call, interpret the answer.

Rule: this is the one boundary where the backend's answer enters hubbub.
Exactly one of four things comes out of ``call``:
  - the result (normalized, see ``messages``);
  - ``ClientError`` with the backend's ``error`` (code, message, temporary);
  - ``DisconnectRequest`` with the backend's ``disconnect`` (code, reason);
  - ``ProxyUnavailable`` (a ClientError with 100 "internal server error", or the
    error an HTTP status is configured to become) when there is no usable
    answer: refused, timed out, an HTTP status other than 200, a body that is
    not the schema. That case logs ONE line (no traceback) naming the proxy,
    the endpoint and what went wrong; a burst of failures of one proxy is
    summed up in the next line rather than logged one by one.
Every call is reported to the ``CallRecorder`` (the hub's counters): when it
starts, and when it ends with its duration and whether it was that last case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import msgspec

from hubbub.codes import DisconnectInfo, Error, ErrorInfo
from hubbub.config.backend import ProxyOptions, TransformDisconnect
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.proxy import messages as m
from hubbub.proxy.http_transport import HttpPool, HttpTransport, TransportFailure

if TYPE_CHECKING:
    from hubbub.proxy.grpc_transport import GrpcTransport

log = logging.getLogger("hubbub.proxy")

#: After a failure is logged, further failures of the same proxy within this
#: many seconds are counted and reported with the next line.
LOG_INTERVAL = 1.0
#: The longest disconnect reason a close frame carries (bytes).
MAX_REASON = 32

_Result = TypeVar("_Result", bound=m.ProxyResult)
_Response = TypeVar("_Response", bound=m.ProxyResponse)

#: Request type -> response type.
RESPONSES: dict[type[msgspec.Struct], type[m.ProxyResponse]] = {
    m.ConnectRequest: m.ConnectResponse,
    m.RefreshRequest: m.RefreshResponse,
    m.SubscribeRequest: m.SubscribeResponse,
    m.PublishRequest: m.PublishResponse,
    m.RPCRequest: m.RPCResponse,
    m.SubRefreshRequest: m.SubRefreshResponse,
    m.SharedPollRefreshRequest: m.SharedPollRefreshResponse,
}
_DECODERS = {request: msgspec.json.Decoder(response) for request, response in RESPONSES.items()}
_encode = msgspec.json.encode


#: A proxy's metric labels, as Centrifugo's: protocol ("http", "grpc"), type (the
#: event: connect, refresh, subscribe, publish, sub_refresh, rpc), name.
CallKey = tuple[str, str, str]


class CallRecorder(Protocol):
    """Who counts proxy calls (``hub.counters``)."""

    def proxy_started(self, key: CallKey) -> None: ...

    def proxy_done(self, key: CallKey, seconds: float, failed: bool) -> None:
        """``failed``: no usable answer (the client got ``ProxyUnavailable``)."""


class _NoRecorder:
    def proxy_started(self, key: CallKey) -> None:
        pass

    def proxy_done(self, key: CallKey, seconds: float, failed: bool) -> None:
        pass


class ProxyUnavailable(ClientError):
    """The backend gave no usable answer; the reply carries ``error`` (100 by default)."""

    cause = ""  # what went wrong (refused, timed out, HTTP status ...), for log lines


class ProxyClient(Generic[_Result]):
    """The proxy ``name`` used for ``event``, as configured under ``key``."""

    def __init__(
        self,
        event: str,
        name: str,
        options: ProxyOptions,
        *,
        key: str,
        pool: HttpPool,
        grpc: GrpcTransport | None = None,
        recorder: CallRecorder | None = None,
    ) -> None:
        self.event = event
        self.name = name
        self.key: CallKey = ("grpc" if grpc is not None else "http", event, name)
        self._recorder: CallRecorder = recorder or _NoRecorder()
        self.endpoint = options.endpoint
        self.timeout = options.timeout
        self.binary = options.binary_encoding
        self.encoding = "binary" if options.binary_encoding else "json"
        self.include_meta = options.include_connection_meta
        self.header_names = tuple(dict.fromkeys(h.lower() for h in options.http_headers))
        self._http = None if grpc is not None else HttpTransport(pool, options, key)
        self._grpc = grpc
        self._transforms = {t.status_code: t for t in options.http.status_to_code_transforms}
        self._logged_at = -LOG_INTERVAL
        self._suppressed = 0
        # The caller logs outages itself (shared poll: one line per outage, not per call).
        self.quiet = False

    def __repr__(self) -> str:
        return f"ProxyClient({self.event!r}, {self.name!r}, {self.endpoint!r})"

    async def call(
        self, request: m.ProxyRequest, headers: Callable[[], Mapping[str, str]] | None = None
    ) -> _Result:
        """Ask the backend; ``headers`` gives the client's upgrade-request headers
        (lower-case names), read only when this proxy forwards some."""
        request.encoding = self.encoding
        if self._grpc is None:  # gRPC carries payloads as bytes
            m.to_binary(request, binary=self.binary)
        if not self.include_meta and not isinstance(request, m.ConnectRequest):
            request.meta = m.NO_DATA
        forwarded: list[tuple[str, str]] = []
        if self.header_names and headers is not None:
            available = headers()
            forwarded = [(n, available[n]) for n in self.header_names if n in available]
        recorder = self._recorder
        recorder.proxy_started(self.key)
        started = time.perf_counter()
        failed = False
        try:
            response = await self._exchange(request, forwarded)
            result = response.result
            if response.error is not None:
                error = response.error
                raise ClientError(ErrorInfo(error.code, error.message, error.temporary))
            if response.disconnect is not None:
                raise DisconnectRequest(self._disconnect(response.disconnect))
            if result is None:  # {} allows with an empty result, as {"result": {}}
                result = _empty_result(response)
            m.normalize_result(result, checked=self._grpc is None)
        except (TransportFailure, m.MalformedAnswer) as exc:
            failed = True
            raise self._unavailable(str(exc), Error.INTERNAL) from None
        finally:
            recorder.proxy_done(self.key, time.perf_counter() - started, failed)
        return result  # type: ignore[return-value]

    async def _exchange(
        self, request: m.ProxyRequest, forwarded: list[tuple[str, str]]
    ) -> m.ProxyResponse:
        response_type = RESPONSES[type(request)]
        if self._grpc is not None:
            return await self._grpc.call(request, response_type, forwarded, self.timeout)
        assert self._http is not None
        status, body = await self._http.post(_encode(request), forwarded)
        if status != 200:
            transform = self._transforms.get(status)
            if transform is not None:
                if transform.to_disconnect.code:
                    raise DisconnectRequest(self._disconnect(transform.to_disconnect))
                e = transform.to_error
                raise ClientError(ErrorInfo(e.code, e.message, e.temporary))
            raise TransportFailure(f"HTTP status {status}")
        try:
            decoded: m.ProxyResponse = _DECODERS[type(request)].decode(body)
        except msgspec.DecodeError as exc:
            raise TransportFailure(f"malformed JSON answer: {exc}") from None
        return decoded

    def _disconnect(self, body: m.DisconnectBody | TransformDisconnect) -> DisconnectInfo:
        code, reason = body.code, body.reason
        if not 3000 <= code <= 4999:
            raise m.MalformedAnswer(f"disconnect code {code} is outside 3000..4999")
        encoded = reason.encode()
        if len(encoded) > MAX_REASON:
            reason = encoded[:MAX_REASON].decode(errors="ignore")
        return DisconnectInfo(code, reason)

    def _unavailable(self, why: str, error: ErrorInfo) -> ProxyUnavailable:
        now = time.monotonic()
        if self.quiet:
            pass
        elif now - self._logged_at >= LOG_INTERVAL:
            more = f" (and {self._suppressed} more failures)" if self._suppressed else ""
            log.warning(
                "%s proxy %s (%s) failed: %s; the client gets error %d%s",
                self.event,
                self.name,
                self.endpoint,
                why,
                error.code,
                more,
            )
            self._logged_at, self._suppressed = now, 0
        else:
            self._suppressed += 1
        unavailable = ProxyUnavailable(error)
        unavailable.cause = why
        return unavailable


def _empty_result(response: m.ProxyResponse) -> m.ProxyResult:
    result_type = {
        m.ConnectResponse: m.ConnectResult,
        m.RefreshResponse: m.RefreshResult,
        m.SubscribeResponse: m.SubscribeResult,
        m.PublishResponse: m.PublishResult,
        m.RPCResponse: m.RPCResult,
        m.SubRefreshResponse: m.SubRefreshResult,
        m.SharedPollRefreshResponse: m.SharedPollRefreshResult,
    }[type(response)]
    result: m.ProxyResult = result_type()
    return result
