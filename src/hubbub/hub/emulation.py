"""Commands of emulated sessions (HTTP streaming, SSE), wherever their request lands.

A client on ``http_stream`` or ``sse`` reads its stream from one node and sends
its commands in ``/emulation`` requests, which a load balancer may give to any
node. Each request names the session (its secret id) and the node that holds it.

Rule 1: the node that receives the request delivers the commands itself when the
session is here; otherwise it asks the named node through the control plane (a
survey of one node, sent to that node only, as Centrifugo does) and answers the
client once that node took the commands or said why not. Commands of one
request stay in order; requests of one client are in order when the client
waits for each answer (the SDKs send one at a time).
Rule 2: every outcome has one HTTP status, decided here: delivered 204; the
session is gone (its stream is closed already, the client reconnects) 204; too
many commands waiting 429; a node that is not alive 404 (the SDK reconnects);
no answer within the survey timeout, or the engine unreachable, 503.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import msgspec

from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError
from hubbub.hub.transport import CommandInbox

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub

log = logging.getLogger("hubbub.emulation")


class Outcome(enum.Enum):
    """What became of an ``/emulation`` request; ``status`` is its HTTP status."""

    DELIVERED = "delivered"
    GONE = "gone"  # no such session
    BUSY = "busy"
    NO_NODE = "no_node"
    NO_ANSWER = "no_answer"

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS = {
    Outcome.DELIVERED: 204,
    Outcome.GONE: 204,
    Outcome.BUSY: 429,
    Outcome.NO_NODE: 404,
    Outcome.NO_ANSWER: 503,
}


class Commands(msgspec.Struct, omit_defaults=True):
    """The commands of one request, as a node forwards them to another: JSON
    protocol frames as text, Protobuf ones as bytes (base64 in the control message)."""

    session: str
    text: str | None = None
    binary: bytes | None = None


class Answer(msgspec.Struct):
    outcome: Outcome


_commands = msgspec.json.Decoder(Commands)
_answer = msgspec.json.Decoder(Answer)


class Emulation:
    """One hub's ``/emulation``: local delivery, and routing to the node of a session."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def deliver_here(self, session_id: str, frame: bytes | str) -> Outcome:
        """Queue ``frame`` for the session ``session_id`` if this node holds it."""
        session = self.hub.emulated.get(session_id)
        if session is None:
            return Outcome.GONE
        transport = session.transport
        if isinstance(transport, CommandInbox) and not transport.deliver(frame):
            return Outcome.BUSY
        return Outcome.DELIVERED

    async def route(self, session_id: str, node: str, frame: bytes | str) -> Outcome:
        """Deliver here, or on ``node`` (the node the connect result named)."""
        hub = self.hub
        if session_id in hub.emulated or not node or node == hub.node_id:
            return self.deliver_here(session_id, frame)
        commands = Commands(session_id, text=frame if isinstance(frame, str) else None,
                            binary=frame if isinstance(frame, bytes) else None)  # fmt: skip
        try:
            raw = await hub.control.ask(
                node, "emulation", msgspec.Raw(msgspec.json.encode(commands))
            )
        except KeyError:
            return Outcome.NO_NODE
        except ClientError:  # no answer in time (logged by the control plane)
            return Outcome.NO_ANSWER
        except EngineUnavailable as exc:
            hub.outages.failed("routing an emulation request", exc)
            return Outcome.NO_ANSWER
        try:
            return _answer.decode(raw).outcome
        except msgspec.DecodeError:
            log.warning("node %s answered an emulation request with %r", node, bytes(raw)[:100])
            return Outcome.NO_ANSWER

    def answer(self, data: msgspec.Raw) -> Answer:
        """Another node forwards the commands of a session: deliver them here."""
        try:
            commands = _commands.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"a malformed emulation request: {exc}") from None
        frame: bytes | str = commands.binary if commands.binary is not None else commands.text or ""
        return Answer(self.deliver_here(commands.session, frame))
