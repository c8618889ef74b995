"""One client connection inside the hub: its identity, subscriptions and lifecycle.

Rule: a session runs its commands one at a time, in the order they arrived;
each command's outcome is a reply (result or error) or a close, decided in
``_run`` alone: ClientError -> error reply, DisconnectRequest -> close with its
code, any other exception -> error 100 and a log line.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from hubbub.auth.channels import Channel
from hubbub.codes import Disconnect, DisconnectInfo, Error
from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub.limits import CommandRate
from hubbub.hub.transport import Transport
from hubbub.protocol import ClientProtocol, ProtocolViolation, Received, State
from hubbub.protocol.codec import encode_error
from hubbub.protocol.messages import NO_DATA, ClientInfo

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub

log = logging.getLogger("hubbub.session")


@dataclass(slots=True)
class Subscription:
    """A session's subscription to one channel."""

    channel: Channel
    chan_info: msgspec.Raw | None = None
    recoverable: bool = False
    positioned: bool = False
    push_join_leave: bool = False
    server_side: bool = False
    expire_at: float = 0.0  # unix seconds; 0: no expiry (subscription token exp)
    live_from: int = 0  # publications up to this offset went out with the subscribe reply


class Session:
    """A connected (or connecting) client."""

    __slots__ = (
        "client_id",
        "closed",
        "conn_info",
        "expire_at",
        "hub",
        "meta",
        "name",
        "protocol",
        "rate",
        "subscriptions",
        "transport",
        "user",
        "version",
    )

    def __init__(self, hub: Hub, client_id: str, transport: Transport) -> None:
        self.hub = hub
        self.client_id = client_id
        self.transport = transport
        self.protocol = ClientProtocol()
        self.user = ""
        self.conn_info: msgspec.Raw | None = None
        self.meta: msgspec.Raw | None = None
        self.name = ""
        self.version = ""
        self.expire_at = 0.0  # unix seconds; 0: the connection never expires
        self.subscriptions: dict[str, Subscription] = {}
        self.closed = False
        limits = hub.config.client
        self.rate = (
            CommandRate(limits.command_rate_limit, limits.command_rate_burst)
            if limits.command_rate_limit > 0
            else None
        )

    @property
    def connected(self) -> bool:
        return self.protocol.state is State.CONNECTED

    def client_info(self, chan_info: msgspec.Raw | None = None) -> ClientInfo:
        return ClientInfo(
            user=self.user,
            client=self.client_id,
            conn_info=self.conn_info or NO_DATA,
            chan_info=chan_info or NO_DATA,
        )

    # --- input -----------------------------------------------------------------------

    async def handle_frame(self, frame: bytes | str) -> None:
        """Run every command of a received text frame, in order."""
        try:
            commands = self.protocol.receive_frame(frame)
        except ProtocolViolation as exc:
            self.close(exc.disconnect, detail=exc.detail)
            return
        rate = self.rate
        for received in commands:
            if self.closed:
                return
            if rate is not None and not rate.take():
                if rate.exhausted:
                    detail = "commands refused in a row past client.command_rate_burst"
                    self.close(Disconnect.TOO_MANY_REQUESTS, detail=detail)
                    return
                if received.command.id:
                    self.send(encode_error(received.command.id, Error.TOO_MANY_REQUESTS))
                self.hub.observers.command_done(self, received, 0.0, Error.TOO_MANY_REQUESTS.code)
                if received.method == "connect":
                    self.protocol.reject_connect()
                    return
                continue
            await self._run(received)
            if received.method == "connect" and not self.connected:
                # The connect failed: what followed it in the frame has no connection.
                return

    async def _run(self, received: Received) -> None:
        command_id = received.command.id
        started = time.perf_counter()
        error = 0
        try:
            await self.hub.commands.run(self, received)
        except ClientError as exc:
            error = exc.error.code
            if received.method == "connect":
                self.protocol.reject_connect()
            if command_id:
                self.send(encode_error(command_id, exc.error))
        except DisconnectRequest as exc:
            error = exc.disconnect.code
            self.close(exc.disconnect, detail=exc.detail)
        except EngineUnavailable as exc:  # an outage: error 100 (temporary), no traceback
            error = Error.INTERNAL.code
            self.hub.outages.failed(received.method, exc)
            if received.method == "connect":
                self.protocol.reject_connect()
            if command_id:
                self.send(encode_error(command_id, Error.INTERNAL))
        except Exception:
            error = Error.INTERNAL.code
            log.exception("client %s: %s failed", self.client_id, received.method)
            if received.method == "connect":
                self.protocol.reject_connect()
            if command_id:
                self.send(encode_error(command_id, Error.INTERNAL))
        self.hub.observers.command_done(self, received, time.perf_counter() - started, error)

    # --- output ----------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue an encoded reply or push; it goes out with this loop turn's flush."""
        if not self.closed:
            self.hub.delivery.send(self, data)

    def close(self, disconnect: DisconnectInfo, *, flush: bool = True, detail: str = "") -> None:
        """Close with ``disconnect``: pending output first (unless slow), then the close frame.

        ``detail`` says why, for the log line (a misbehaving client's offence).
        """
        if self.closed:
            return
        self.protocol.close(disconnect)
        if flush:
            self.hub.delivery.flush_session(self)
        else:
            self.protocol.drop_output()
        self.closed = True
        self.transport.close(disconnect.code, disconnect.reason)
        self.hub.forget_session(self, disconnect, by_server=True, detail=detail)

    def transport_closed(
        self, disconnect: DisconnectInfo, *, by_server: bool = False, detail: str = ""
    ) -> None:
        """The peer went away (or the transport failed) without us closing.

        ``by_server``: the transport closed it for the peer's fault (a framing
        error, described by ``detail``).
        """
        if not self.closed:
            self.closed = True
            self.protocol.close(disconnect)
            self.protocol.drop_output()
            self.hub.forget_session(self, disconnect, by_server=by_server, detail=detail)
