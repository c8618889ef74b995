"""What a consumed message asks for, and what applying it means for the message.

Rule 1 (Centrifugo's format): a message names its API method in a field or header
(``method_value``, ``method_header``) and carries the method's request as its
payload; without a method there, the payload is ``{"method": ..., "payload": ...}``
(the inner payload may also be a JSON string holding the request). In
publication data mode the payload is the data itself, published to the
comma-separated channels of another field (several channels: a broadcast).
Rule 2: every command goes through the HTTP API's dispatch (``execute``), so a
consumed command and a POST to ``/api/<method>`` do exactly the same thing.
Rule 3 (Centrifugo's outcome): an internal error (code 100: the engine is away)
means "retry" - the message stays unacknowledged and comes again; any other
error (malformed message, unknown method, a refused request) means "skip" - it
is acknowledged and logged once, so a bad message never loops.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from hubbub.codes import Error

log = logging.getLogger("hubbub.consumers")

#: The HTTP API's dispatch: ``{"result": ...}`` or ``{"error": ...}`` (a request not
#: of the method's shape too: code 107); None for an unknown method.
Execute = Callable[[str, msgspec.Raw], Awaitable[dict[str, Any] | None]]

APPLIED = "applied"
SKIPPED = "skipped"
RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: str  # APPLIED, SKIPPED (acknowledge, logged) or RETRY (do not acknowledge)
    why: str = ""


class _Envelope(msgspec.Struct):
    method: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"null")


@dataclass(frozen=True, slots=True)
class Command:
    method: str
    params: msgspec.Raw


def command(method: str, payload: bytes) -> Command | str:
    """The command of a message (Rule 1), or why it has none."""
    if method:
        return Command(method, msgspec.Raw(payload))
    try:
        envelope = msgspec.json.decode(payload, type=_Envelope)
    except msgspec.DecodeError as exc:
        return f"not a JSON object with method and payload: {exc}"
    params = bytes(envelope.payload)
    if params[:1] == b'"':  # the request as a JSON string
        params = msgspec.json.decode(params, type=str).encode()
    return Command(envelope.method, msgspec.Raw(params))


@dataclass(frozen=True, slots=True)
class PublicationFields:
    """Where publication data mode finds a publication's other parts."""

    channels: str
    idempotency_key: str
    delta: str
    tags_prefix: str


def publication(data: bytes, fields: Mapping[str, str], names: PublicationFields) -> Command | str:
    """The publish (one channel) or broadcast (several) of publication data mode."""
    channels = [c for c in fields.get(names.channels, "").split(",") if c]
    if not channels:
        return f"no channels in {names.channels!r}"
    delta = fields.get(names.delta, "") if names.delta else ""
    if delta.lower() not in ("", "true", "false", "1", "0", "t", "f"):
        return f"{names.delta!r} is not a boolean: {delta!r}"
    request: dict[str, Any] = {}
    try:
        msgspec.json.decode(data)
        request["data"] = msgspec.Raw(data)
    except msgspec.DecodeError:  # not JSON: binary data, as the API's b64data
        request["b64data"] = base64.b64encode(data).decode()
    if names.idempotency_key and fields.get(names.idempotency_key):
        request["idempotency_key"] = fields[names.idempotency_key]
    if delta.lower() in ("true", "1", "t"):
        request["delta"] = True
    if names.tags_prefix:
        tags = {
            k[len(names.tags_prefix) :]: v
            for k, v in fields.items()
            if k.startswith(names.tags_prefix)
        }
        if tags:
            request["tags"] = tags
    if len(channels) == 1:
        request["channel"] = channels[0]
        return Command("publish", msgspec.Raw(msgspec.json.encode(request)))
    request["channels"] = channels
    return Command("broadcast", msgspec.Raw(msgspec.json.encode(request)))


def _internal(reply: Mapping[str, Any]) -> bool:
    error = reply.get("error")
    return isinstance(error, Mapping) and error.get("code") == Error.INTERNAL.code


async def apply(execute: Execute, found: Command | str) -> Outcome:
    """Run the command through the API; the outcome for the message (Rule 3)."""
    if isinstance(found, str):
        return Outcome(SKIPPED, found)
    reply = await execute(found.method, found.params)
    if reply is None:
        return Outcome(SKIPPED, f"unknown method {found.method!r}")
    if _internal(reply):
        return Outcome(RETRY, f"{found.method}: internal error")
    result = reply.get("result")
    inner = []
    if isinstance(result, Mapping):  # a broadcast's per-channel, a batch's per-command
        inner = list(result.get("responses") or result.get("replies") or [])
    if any(isinstance(r, Mapping) and _internal(r) for r in inner):
        return Outcome(RETRY, f"{found.method}: internal error in a part of it")
    if "error" in reply:
        error = reply["error"]
        return Outcome(
            SKIPPED, f"{found.method} refused: {error.get('code')} {error.get('message')}"
        )
    return Outcome(APPLIED)


class Backoff:
    """Waits between attempts to reach a store: doubling from ``first`` to ``most``."""

    def __init__(self, first: float = 0.2, most: float = 5.0) -> None:
        self.first = first
        self.most = most
        self.current = first

    def next(self) -> float:
        wait = self.current
        self.current = min(self.current * 2, self.most)
        return wait

    def reset(self) -> None:
        self.current = self.first
