"""The proxy's requests and results: Centrifugo's proxy.proto as JSON-shaped Structs.

Rule: these are the HTTP proxy's wire shapes (field names of proxy.proto, zero
values omitted) and the values the hub reads; the gRPC transport converts
to and from them. Payloads (``data``, ``info``, ``meta``) are embedded raw JSON,
but ``data`` may be binary (protocol/payload.py). The hub always fills ``data``;
the proxy client moves it to ``b64data`` for a ``binary_encoding`` proxy, and
a binary one for every proxy (JSON cannot carry it). Results reach the hub
normalized by ``normalize_*``: base64 fields decoded into their twins
(``b64data`` may be binary), every other payload one line of valid JSON (a
pretty-printed answer would split the client protocol's frames).
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from msgspec import Raw

# The one absent payload: msgspec omits a default Raw by identity, so every
# empty payload must be this object (the client protocol's).
from hubbub.protocol.messages import NO_DATA as NO_DATA
from hubbub.protocol.payload import Binary, NotJSON, Payload, json_text

_NULL = b"null"


class MalformedAnswer(ValueError):
    """The backend's answer is not what the schema allows (the client gets error 100)."""


# --- requests (hubbub -> backend) -----------------------------------------------------


class ConnectRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    name: str = ""
    version: str = ""
    channels: list[str] | None = None  # the channels of the client's connect ``subs``


class RefreshRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    user: str = ""
    meta: Raw = NO_DATA


class SubscribeRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    user: str = ""
    channel: str = ""
    token: str = ""
    meta: Raw = NO_DATA
    data: Payload = NO_DATA
    b64data: str = ""


class PublishRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    user: str = ""
    channel: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    meta: Raw = NO_DATA


class RPCRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    user: str = ""
    method: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    meta: Raw = NO_DATA


class SubRefreshRequest(msgspec.Struct, omit_defaults=True):
    client: str
    transport: str
    protocol: str
    encoding: str = ""
    user: str = ""
    channel: str = ""
    meta: Raw = NO_DATA


class SharedPollItem(msgspec.Struct, omit_defaults=True):
    """A key a shared poll channel asks about (``version``: the node's, versioned mode)."""

    key: str
    version: int = 0


class SharedPollRefreshRequest(msgspec.Struct, omit_defaults=True):
    """The node asks for the current data of tracked keys (no client involved)."""

    channel: str
    items: list[SharedPollItem]
    encoding: str = ""
    meta: Raw = NO_DATA  # never sent: no connection is involved


ProxyRequest = (
    ConnectRequest
    | RefreshRequest
    | SubscribeRequest
    | PublishRequest
    | RPCRequest
    | SubRefreshRequest
    | SharedPollRefreshRequest
)

# --- results (backend -> hubbub) ------------------------------------------------------


class BoolValue(msgspec.Struct):
    value: bool = False


class SubscribeOptionOverride(msgspec.Struct, omit_defaults=True):
    """Per-subscription replacements of namespace options; absent: keep the option."""

    presence: BoolValue | None = None
    join_leave: BoolValue | None = None
    force_recovery: BoolValue | None = None
    force_positioning: BoolValue | None = None
    force_push_join_leave: BoolValue | None = None


class SubscribeOptions(msgspec.Struct, omit_defaults=True):
    """A server-side subscription of a connect result (``subs``)."""

    expire_at: int = 0
    info: Raw = NO_DATA
    b64info: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    override: SubscribeOptionOverride | None = None


class ConnectResult(msgspec.Struct, omit_defaults=True):
    user: str = ""
    expire_at: int = 0
    info: Raw = NO_DATA
    b64info: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    channels: list[str] | None = None
    subs: dict[str, SubscribeOptions] | None = None
    meta: Raw = NO_DATA


class RefreshResult(msgspec.Struct, omit_defaults=True):
    expired: bool = False
    expire_at: int = 0
    info: Raw = NO_DATA
    b64info: str = ""
    meta: Raw = NO_DATA


class SubscribeResult(msgspec.Struct, omit_defaults=True):
    expire_at: int = 0
    info: Raw = NO_DATA
    b64info: str = ""
    data: Payload = NO_DATA
    b64data: str = ""
    override: SubscribeOptionOverride | None = None


class PublishResult(msgspec.Struct, omit_defaults=True):
    data: Payload = NO_DATA
    b64data: str = ""
    skip_history: bool = False
    tags: dict[str, str] | None = None
    idempotency_key: str = ""


class RPCResult(msgspec.Struct, omit_defaults=True):
    data: Payload = NO_DATA
    b64data: str = ""


class SubRefreshResult(msgspec.Struct, omit_defaults=True):
    expired: bool = False
    expire_at: int = 0
    info: Raw = NO_DATA
    b64info: str = ""


class SharedPollResultItem(msgspec.Struct, omit_defaults=True):
    key: str = ""
    data: Raw = NO_DATA
    b64data: str = ""
    version: int = 0  # required in versioned mode
    removed: bool = False  # the key is gone: trackers are told, it is tracked no more


class SharedPollRefreshResult(msgspec.Struct, omit_defaults=True):
    items: list[SharedPollResultItem] | None = None  # keys left out are unchanged
    epoch: str = ""  # the publisher's epoch (versioned mode): a new one resets the channel


class ErrorBody(msgspec.Struct):
    code: int
    message: str = ""
    temporary: bool = False


class DisconnectBody(msgspec.Struct):
    code: int
    reason: str = ""


class ConnectResponse(msgspec.Struct):
    result: ConnectResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class RefreshResponse(msgspec.Struct):
    result: RefreshResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class SubscribeResponse(msgspec.Struct):
    result: SubscribeResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class PublishResponse(msgspec.Struct):
    result: PublishResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class RPCResponse(msgspec.Struct):
    result: RPCResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class SubRefreshResponse(msgspec.Struct):
    result: SubRefreshResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


class SharedPollRefreshResponse(msgspec.Struct):
    result: SharedPollRefreshResult | None = None
    error: ErrorBody | None = None
    disconnect: DisconnectBody | None = None


ProxyResponse = (
    ConnectResponse
    | RefreshResponse
    | SubscribeResponse
    | PublishResponse
    | RPCResponse
    | SubRefreshResponse
    | SharedPollRefreshResponse
)
ProxyResult = (
    ConnectResult
    | RefreshResult
    | SubscribeResult
    | PublishResult
    | RPCResult
    | SubRefreshResult
    | SharedPollRefreshResult
)

# --- payload encoding -----------------------------------------------------------------


def to_binary(request: ProxyRequest, *, binary: bool = True) -> None:
    """Move ``data`` to ``b64data``, in place: every payload for a ``binary_encoding``
    proxy (``binary``), only a binary payload (protocol/payload.py Rule 3) for others."""
    data = getattr(request, "data", NO_DATA)
    if data and (binary or type(data) is Binary):
        request.b64data = base64.b64encode(bytes(data)).decode()  # type: ignore[union-attr]
        request.data = NO_DATA  # type: ignore[union-attr]


def json_payload(raw: bytes, field: str, *, checked: bool) -> Raw:
    """A payload as one line of JSON; ``checked`` when a JSON parser already read it.

    JSON null counts as absent (``"data": null`` sends no data).
    """
    raw = raw.strip() if checked else raw
    if not raw or raw == _NULL:
        return NO_DATA
    if checked and b"\n" not in raw:
        return Raw(raw)
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise MalformedAnswer(f"{field} is not valid JSON: {exc}") from None
    if value is None:
        return NO_DATA
    return Raw(msgspec.json.encode(value))


def _from_b64(text: str, field: str) -> Raw:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedAnswer(f"{field} is not valid base64") from None
    # hubbub's clients speak JSON: a binary payload must be JSON text.
    return json_payload(raw, field, checked=False)


def _pick(raw: Raw, b64: str, field: str, *, checked: bool) -> Raw:
    if b64:
        return _from_b64(b64, "b64" + field)
    return json_payload(bytes(raw), field, checked=checked) if raw else NO_DATA


def _pick_data(raw: Payload, b64: str, field: str, *, checked: bool) -> Payload:
    """A ``data`` payload: from ``b64data``, JSON text is normalized as ``_pick`` does
    and any other bytes are a binary payload (protocol/payload.py), for Protobuf
    clients."""
    if b64:
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedAnswer(f"b64{field} is not valid base64") from None
        try:
            json_text(data)
        except NotJSON:
            return Binary(data)
        return json_payload(data, field, checked=False)
    if isinstance(raw, Binary):  # set by hubbub, never decoded from an answer
        return raw
    return json_payload(bytes(raw), field, checked=checked) if raw else NO_DATA


def normalize_result(result: ProxyResult, *, checked: bool) -> ProxyResult:
    """Decode base64 twins into ``data``/``info`` and make payloads one-line JSON, in place.

    ``checked``: payloads came from a parsed JSON document (the HTTP proxy), so
    they are valid JSON already; from gRPC they are bytes that must be checked.
    """
    if isinstance(result, ConnectResult):
        result.info = _pick(result.info, result.b64info, "info", checked=checked)
        result.data = _pick_data(result.data, result.b64data, "data", checked=checked)
        result.meta = _pick(result.meta, "", "meta", checked=checked)
        result.b64info = result.b64data = ""
        for options in (result.subs or {}).values():
            options.info = _pick(options.info, options.b64info, "subs.info", checked=checked)
            options.data = _pick_data(options.data, options.b64data, "subs.data", checked=checked)
            options.b64info = options.b64data = ""
    elif isinstance(result, SubscribeResult):
        result.info = _pick(result.info, result.b64info, "info", checked=checked)
        result.data = _pick_data(result.data, result.b64data, "data", checked=checked)
        result.b64info = result.b64data = ""
    elif isinstance(result, PublishResult | RPCResult):
        result.data = _pick_data(result.data, result.b64data, "data", checked=checked)
        result.b64data = ""
    elif isinstance(result, SharedPollRefreshResult):
        for item in result.items or ():
            item.data = _pick(item.data, item.b64data, "items.data", checked=checked)
            item.b64data = ""
    elif isinstance(result, RefreshResult):
        result.info = _pick(result.info, result.b64info, "info", checked=checked)
        result.meta = _pick(result.meta, "", "meta", checked=checked)
        result.b64info = ""
    else:
        result.info = _pick(result.info, result.b64info, "info", checked=checked)
        result.b64info = ""
    return result
