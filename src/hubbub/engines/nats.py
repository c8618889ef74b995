"""The NATS broker: channels without history travel between nodes through NATS.

Centrifugo v6 keys: ``broker.enabled: true``, ``broker.type: "nats"``,
``broker.nats.url``, ``broker.nats.prefix``. The broker wraps the engine
(``engine.type``) and splits the work:

Rule 1: NATS carries what needs no state: publications of channels without
history (and without an idempotency key), join/leave, and control messages
(``P.control``, ``P.node.<id>``). Channel C's subject is ``P.channel.C``
(C encoded when it holds characters a subject cannot: ``P.channel.~<base64>``).
This is at most once: a publication sent while a node's NATS connection is
down does not reach that node, and the node is told (``handle_broker_lost``:
its subscribers get 2500 and resubscribe).
Rule 2: the engine keeps the rest: channels with history (or an idempotency
key) are published through it, so offsets, epochs and recovery are exactly
the engine's (Redis: ordered, recoverable); history and presence are read
from it. With the memory engine, the loader refuses history and presence
(each node would keep its own).
Rule 3: ``subscribe`` returns once the NATS server has the subscription, so
a history read after it cannot miss a publication; the engine's subscription
is made as well (a channel may have history). The proof is a message of the
node's own (``_sync``): published after the SUB, on a subject only this
connection subscribes to, it comes back once the server has handled every
command sent before it (one connection's commands are handled in order).
nats-py's ``flush()`` proves nothing here: it writes its PING straight to the
socket, ahead of the commands still waiting in its buffer, so its PONG may
come back before the server has seen the SUB.
Rule 4: NATS errors stop here as ``EngineUnavailable``; the connection is
made in the background and re-made by nats-py; lost/back are logged once each.
A connection nats-py gives up for good (it closes on a server -ERR such as
"maximum subscriptions exceeded" and never reconnects) is made again here as at
start, with the node's subscriptions (``_on_closed``); a subscribe that failed
leaves no subscription behind, so the one that broke a server limit is not
made again, and once the server's max_subscriptions is known (from its
refusal) a subscribe past it is refused here, without breaking the connection.
Closing the broker is not an outage: nothing is logged and nobody is told.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import re
import ssl
from typing import Any
from urllib.parse import urlsplit

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.errors import Error as NatsError

from hubbub.engines.base import (
    Engine,
    EngineUnavailable,
    EventHandler,
    HistoryOptions,
    HistoryPage,
    HistoryQuery,
    PresenceStats,
    PublishResult,
)
from hubbub.engines.health import Reachability
from hubbub.protocol.messages import ClientInfo, Publication, StreamPosition
from hubbub.protocol.payload import from_container, to_container
from hubbub.tasks import stop_task

log = logging.getLogger("hubbub.engines.nats")

#: Reconnect pacing (seconds) while the NATS server cannot be reached.
RECONNECT_WAIT = 1
#: broker.nats.dial_timeout's default (Centrifugo's): connecting, TLS included.
CONNECT_TIMEOUT = 1.0
#: How long the server may take to confirm commands already sent (``_sync``).
SYNC_TIMEOUT = 2.0
#: Characters a channel may keep in its subject (anything else: the encoded form).
_SUBJECT_SAFE = re.compile(r"[A-Za-z0-9_\-:#$@!,=+/]+")

_publication_decoder = msgspec.json.Decoder(Publication)
_info_decoder = msgspec.json.Decoder(ClientInfo)
_encode = msgspec.json.encode
_NATS_ERRORS = (NatsError, OSError, TimeoutError)


async def require_tls(url: str) -> None:
    """ConnectionError unless the NATS server at ``url`` requires TLS.

    nats-py upgrades a connection to TLS only when the server's INFO says
    ``tls_required``; against any other server it would talk in the clear
    whatever TLS context it was given. So with a ``tls`` section enabled the
    INFO line is read first, and a server that does not require TLS is an
    outage saying so (Centrifugo's client refuses it likewise). The caller bounds
    the time it takes (asyncio.timeout).
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 4222)
    try:
        line = await reader.readline()
    finally:
        writer.close()
    info: Any = None
    if line.startswith(b"INFO "):
        with contextlib.suppress(msgspec.DecodeError):
            info = msgspec.json.decode(line[5:])
    if not isinstance(info, dict):
        raise ConnectionError(f"{url} is not a NATS server (no INFO line)")
    if not info.get("tls_required"):
        raise ConnectionError(
            f"TLS: the NATS server at {url} does not require TLS, and nats-py would "
            "then connect without it: enable TLS on the server (without allow_non_tls) "
            "or disable tls here"
        )


def channel_subject(prefix: str, channel: str) -> str:
    if _SUBJECT_SAFE.fullmatch(channel):
        return f"{prefix}.channel.{channel}"
    encoded = base64.urlsafe_b64encode(channel.encode()).decode().rstrip("=")
    return f"{prefix}.channel.~{encoded}"


class NatsBroker:
    """An Engine: NATS for stateless events, ``engine`` for history and presence."""

    def __init__(
        self,
        engine: Engine,
        url: str,
        *,
        prefix: str = "centrifugo",
        dial_timeout: float = CONNECT_TIMEOUT,
        tls: ssl.SSLContext | None = None,
        tls_hostname: str = "",
    ) -> None:
        """``tls``: the context of the connection (broker.nats.tls; None: plain, or
        the system's authorities for a tls:// url); ``tls_hostname``: the name the
        server's certificate is checked against instead of the url's host;
        ``dial_timeout``: a connection attempt's bound (broker.nats.dial_timeout)."""
        self.engine = engine
        self.url = url
        self.dial_timeout = dial_timeout
        self._tls: dict[str, Any] = {}
        if tls is not None:
            self._tls["tls"] = tls
        if tls_hostname:
            self._tls["tls_hostname"] = tls_hostname
        self.prefix = prefix
        self.pipelined = engine.pipelined
        self.health = Reachability(f"nats {url}", log)
        self._nc: NatsClient | None = None
        self._handler: EventHandler | None = None
        self._subs: dict[str, Subscription] = {}  # channel -> its NATS subscription
        self._channels: dict[str, str] = {}  # subject -> channel
        self._control: list[Subscription] = []
        self._connector: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        #: ``_sync``: the subject only this connection subscribes to, and the waiters.
        self._sync_subject = ""
        self._sync_waiters: dict[bytes, asyncio.Future[None]] = {}
        self._sync_tokens = itertools.count()
        #: How many channels the server lets this node subscribe to, learned when it
        #: refused one past its max_subscriptions (None: no limit met yet).
        self._channel_cap: int | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self, handler: EventHandler) -> None:
        self._handler = handler
        await self.engine.start(handler)
        self._start_connecting()

    def _start_connecting(self) -> None:
        self._connector = asyncio.get_running_loop().create_task(
            self._connect_until_done(), name=f"nats-connect {self.url}"
        )

    async def _connect_until_done(self) -> None:
        """The first connection (nats-py makes the later ones itself), with the
        node's own subscriptions in place on the server before it counts."""
        handler = self._handler
        assert handler is not None
        while True:
            nc = NatsClient()
            try:
                if "tls" in self._tls:
                    async with asyncio.timeout(self.dial_timeout):
                        await require_tls(self.url)
                await nc.connect(
                    servers=[self.url],
                    # nats-py annotates an int; it is a wait_for timeout, a float works
                    connect_timeout=self.dial_timeout,  # type: ignore[arg-type]
                    reconnect_time_wait=RECONNECT_WAIT,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                    name="hubbub",
                    **self._tls,
                )
                self._sync_subject = nc.new_inbox()
                await nc.subscribe(self._sync_subject, cb=self._on_sync)
                control = [
                    await nc.subscribe(subject, cb=self._on_control)
                    for subject in (
                        f"{self.prefix}.control",
                        f"{self.prefix}.node.{handler.node_id}",
                    )
                ]
                for channel in list(self._subs):  # a connection made again (_on_closed)
                    subject = channel_subject(self.prefix, channel)
                    self._subs[channel] = await nc.subscribe(subject, cb=self._on_message)
                await self._sync(nc)
            except _NATS_ERRORS as exc:
                if not self._closed:  # else: closed meanwhile, its cancellation lost (tasks.py)
                    self.health.failed(self._cause(exc))
                with contextlib.suppress(Exception):
                    await nc.close()
                if self._closed:
                    return
                await asyncio.sleep(RECONNECT_WAIT)
                continue
            break
        self._control = control
        self._nc = nc
        self.health.succeeded()
        self._connected.set()

    def _cause(self, exc: BaseException) -> BaseException | str:
        """What a connection error says in the log (a timeout has no text of its own)."""
        if isinstance(exc, TimeoutError):  # also nats-py's, and asyncio's
            steps = "connecting, the TLS handshake" if "tls" in self._tls else "connecting"
            return (
                f"no answer within {self.dial_timeout:g} s (broker.nats.dial_timeout: "
                f"{steps}) or {SYNC_TIMEOUT:g} s (the server's replies)"
            )
        return exc

    async def _sync(self, nc: NatsClient) -> None:
        """Return once the server has handled every command sent on ``nc`` before.

        A token published to ``_sync_subject`` travels behind those commands in
        nats-py's buffer and the server handles them in order: its coming back
        proves they were handled (Rule 3). TimeoutError after SYNC_TIMEOUT.
        """
        token = str(next(self._sync_tokens)).encode()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sync_waiters[token] = waiter
        try:
            await nc.publish(self._sync_subject, token)
            async with asyncio.timeout(SYNC_TIMEOUT):
                await waiter
        finally:
            self._sync_waiters.pop(token, None)

    async def _on_sync(self, msg: Msg) -> None:
        waiter = self._sync_waiters.pop(msg.data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self) -> None:
        self._closed = True  # from now on, the connection's events are ours, not an outage
        await stop_task(self._connector)
        self._connector = None
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.drain()
        await self.engine.close()

    @property
    def available(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected and self.engine.available

    # --- NATS connection events --------------------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        if not self._closed:
            self.health.failed(self._cause(exc))

    async def _on_disconnected(self) -> None:
        if self._closed or self._nc is None:  # closing, or a first attempt that failed
            return
        self.health.failed("disconnected")
        handler = self._handler
        if handler is not None and self._subs:
            # What was published meanwhile does not come back: subscribers must recover.
            handler.handle_broker_lost(list(self._subs))

    async def _on_closed(self) -> None:
        """nats-py gave the connection up (after ``_on_disconnected``, which told the
        subscribers): connect again as at start, unless the broker is closing."""
        nc = self._nc
        if self._closed or nc is None:  # closing, or a first attempt that failed
            return
        self._nc = None
        self._connected.clear()
        for waiter in self._sync_waiters.values():  # their subscribes fail (and undo) now
            if not waiter.done():
                waiter.set_exception(ConnectionClosedError())
        cause = nc.last_error or "closed"
        self.health.failed(f"the client closed the connection for good ({cause})")
        self._start_connecting()

    async def _on_reconnected(self) -> None:
        if not self._closed:
            self._channel_cap = None  # a server restarted may have another limit
            self.health.succeeded()  # nats-py subscribed everything again

    def _client(self) -> NatsClient:
        nc = self._nc
        if nc is None or not nc.is_connected:
            raise EngineUnavailable(f"nats {self.url}: not connected")
        return nc

    # --- interest ----------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        await self.engine.subscribe(channel)
        if channel in self._subs:
            return
        nc = self._client()
        if self._channel_cap is not None and len(self._subs) >= self._channel_cap:
            # Asking would only break the connection again (nats-py closes it on the
            # server's -ERR): refused here, the node's other channels undisturbed.
            raise EngineUnavailable(
                f"nats {self.url}: the server's max_subscriptions allows this node "
                f"{self._channel_cap} channels"
            )
        subject = channel_subject(self.prefix, channel)
        error_before = nc.last_error
        try:
            subscription = await nc.subscribe(subject, cb=self._on_message)
            self._subs[channel] = subscription
            self._channels[subject] = channel
            await self._sync(nc)  # the server has it: nothing is missed (Rule 3)
            if nc.last_error is not error_before:
                # The server answered the SUB with an -ERR (read before the sync
                # message, which followed it): refused, e.g. past max_subscriptions.
                if "maximum subscriptions" in str(nc.last_error).lower():
                    self._channel_cap = len(self._subs) - 1  # those before this one
                raise NatsError(f"the server refused the subscription: {nc.last_error}")
        except _NATS_ERRORS as exc:
            # No subscription is left behind (one a server limit refused would break
            # the connection made again, Rule 4); the engine's is the caller's to undo.
            self._channels.pop(subject, None)
            made = self._subs.pop(channel, None)
            if made is not None:
                with contextlib.suppress(*_NATS_ERRORS):
                    await made.unsubscribe()
            self.health.failed(exc)
            raise EngineUnavailable(f"nats {self.url}: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        subscription = self._subs.pop(channel, None)
        if subscription is not None:
            self._channels.pop(subscription.subject, None)
            with contextlib.suppress(*_NATS_ERRORS):
                await subscription.unsubscribe()
        await self.engine.unsubscribe(channel)

    # --- events ------------------------------------------------------------------------

    async def _publish(self, subject: str, data: bytes) -> None:
        nc = self._client()
        try:
            await nc.publish(subject, data)
        except _NATS_ERRORS as exc:
            self.health.failed(exc)
            raise EngineUnavailable(f"nats {self.url}: {exc}") from exc

    async def publish(
        self,
        channel: str,
        publication: Publication,
        history: HistoryOptions,
        *,
        idempotency_key: str = "",
    ) -> PublishResult:
        if history.enabled or idempotency_key:
            return await self.engine.publish(
                channel, publication, history, idempotency_key=idempotency_key
            )
        publication.offset = 0
        await self._publish(
            channel_subject(self.prefix, channel), b"p0::" + _encode(to_container(publication))
        )
        return PublishResult(StreamPosition())

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._publish(channel_subject(self.prefix, channel), b"j" + _encode(info))

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._publish(channel_subject(self.prefix, channel), b"l" + _encode(info))

    async def publish_control(self, data: bytes, node: str = "") -> None:
        subject = f"{self.prefix}.node.{node}" if node else f"{self.prefix}.control"
        await self._publish(subject, data)

    async def _on_message(self, msg: Msg) -> None:
        handler = self._handler
        channel = self._channels.get(msg.subject)
        if handler is None or channel is None:
            return
        data = msg.data
        try:
            kind = data[:1]
            if kind == b"p":
                handler.handle_publication(
                    channel, from_container(_publication_decoder.decode(data[4:])), StreamPosition()
                )
            elif kind == b"j":
                handler.handle_join(channel, _info_decoder.decode(data[1:]))
            elif kind == b"l":
                handler.handle_leave(channel, _info_decoder.decode(data[1:]))
        except Exception:
            log.exception("nats broker: bad message on %s", msg.subject)

    async def _on_control(self, msg: Msg) -> None:
        handler = self._handler
        if handler is not None:
            try:
                handler.handle_control(msg.data)
            except Exception:
                log.exception("nats broker: a control message failed")

    # --- the engine's part -------------------------------------------------------------

    async def history(
        self, channel: str, query: HistoryQuery, history: HistoryOptions
    ) -> HistoryPage:
        return await self.engine.history(channel, query, history)

    async def remove_history(self, channel: str) -> None:
        await self.engine.remove_history(channel)

    async def add_presence(
        self, channel: str, client_id: str, info: ClientInfo, expire: float
    ) -> None:
        await self.engine.add_presence(channel, client_id, info, expire)

    async def remove_presence(self, channel: str, client_id: str) -> None:
        await self.engine.remove_presence(channel, client_id)

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return await self.engine.presence(channel)

    async def presence_stats(self, channel: str) -> PresenceStats:
        return await self.engine.presence_stats(channel)
