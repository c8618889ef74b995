"""A ``nats_jetstream`` consumer: API commands read from a JetStream stream, as
Centrifugo's.

Rule 1: the stream ``stream_name`` exists (it is the application's); every node
creates (or finds) the durable pull consumer ``durable_consumer_name`` on it -
new messages only, subjects filtered by ``subjects``, explicit acks, 30 seconds
to ack - and fetches from it, so each message goes to one node. A message is
acknowledged once its command was applied or skipped (commands.py Rule 3); a
retry is a NAK (delivered again, after a pause so an outage does not spin); a
message never acknowledged (the node died) comes again after the ack wait.
Rule 2: the method is the ``method_header`` header when set, else the body is
``{"method", "payload"}``; publication data mode takes the channels and options
from ``publication_data_mode``'s headers and the data from the body.
Rule 3: NATS away (at start, or lost later) is one warning line, then attempts
with a growing pause (up to 5 seconds) until it answers again (one info line).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import BadRequestError

from hubbub.config.model import NatsJetStreamConsumer
from hubbub.config.tls import client_context
from hubbub.consumers.commands import (
    RETRY,
    SKIPPED,
    Backoff,
    Command,
    Execute,
    PublicationFields,
    apply,
    command,
    publication,
)
from hubbub.engines.nats import require_tls

log = logging.getLogger("hubbub.consumers")

ACK_WAIT = 30.0  # seconds before an unacknowledged message is delivered again
FETCH_WAIT = 5.0  # a fetch waits this long for messages (and lets shutdown in)
NAK_DELAY = 1.0  # a retried message comes back after this pause
CONNECT_TIMEOUT = 2.0  # seconds for a connection to the NATS server


class NatsJetStreamReader:
    """Fetches and applies the messages of one durable JetStream consumer."""

    def __init__(
        self,
        label: str,
        config: NatsJetStreamConsumer,
        execute: Execute,
        *,
        key: str = "consumers[].nats_jetstream",  # where config is, named by a TLS error
    ) -> None:
        self.label = label
        # Built once (the loader checked it): nats-py reuses it for every reconnection.
        self._tls = client_context(config.tls, f"{key}.tls") if config.tls.enabled else None
        self.config = config
        self.execute = execute
        self.applied = 0
        self.skipped = 0
        self._nc: Any = None
        self._down = False
        self._stopping = False
        self.idle = asyncio.Event()  # clear while a message is being applied
        self.idle.set()
        mode = config.publication_data_mode
        self._fields = PublicationFields(
            mode.channels_header,
            mode.idempotency_key_header,
            mode.delta_header,
            mode.tags_header_prefix,
        )

    def stop(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            await nc.close()

    async def run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            try:
                if self._nc is None:
                    if self._tls is not None:  # nats-py alone could connect in the clear
                        async with asyncio.timeout(CONNECT_TIMEOUT):
                            await require_tls(self.config.url)
                    self._nc = await nats.connect(self.config.url, **self._options())
                subscription = await self._bind()
                self._up()
                backoff.reset()
                try:
                    await self._fetch_loop(subscription)
                finally:
                    with contextlib.suppress(nats.errors.Error, OSError):
                        await subscription.unsubscribe()
            except (TimeoutError, nats.errors.Error, OSError) as exc:
                # The client reconnects on its own; the loop binds again once it has.
                self._fail(exc)
                await asyncio.sleep(backoff.next())

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "name": f"hubbub {self.label}",
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1.0,
            "connect_timeout": CONNECT_TIMEOUT,
            "allow_reconnect": True,
            "error_cb": self._quiet,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
        }
        config = self.config
        if config.credentials_file:
            options["user_credentials"] = config.credentials_file
        elif config.username:
            options["user"], options["password"] = config.username, config.password
        elif config.token:
            options["token"] = config.token
        if self._tls is not None:
            options["tls"] = self._tls
            if config.tls.server_name:
                options["tls_hostname"] = config.tls.server_name
        return options

    async def _bind(self) -> Any:
        js = self._nc.jetstream()
        subjects = list(self.config.subjects)
        consumer = ConsumerConfig(
            durable_name=self.config.durable_consumer_name,
            deliver_policy=DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
        )
        if len(subjects) == 1:
            consumer.filter_subject = subjects[0]
        elif subjects:
            consumer.filter_subjects = subjects  # needs nats-server 2.10
        try:
            await js.add_consumer(self.config.stream_name, consumer)
        except BadRequestError as exc:
            # It exists with other settings (another version of this config): use it.
            if "already" not in str(exc).lower():
                raise
        return await js.pull_subscribe_bind(
            durable=self.config.durable_consumer_name, stream=self.config.stream_name
        )

    async def _fetch_loop(self, subscription: Any) -> None:
        while not self._stopping:
            try:
                messages = await subscription.fetch(batch=1, timeout=FETCH_WAIT)
            except nats.errors.TimeoutError:
                continue  # nothing new (or NATS away: the client is reconnecting)
            self._up()
            for message in messages:
                self._busy = True
                try:
                    await self._apply(message)
                finally:
                    self.idle = asyncio.Event()  # clear while a message is being applied
        self.idle.set()

    async def _apply(self, message: Any) -> None:
        headers: dict[str, str] = dict(message.headers or {})
        found: Command | str
        if self.config.publication_data_mode.enabled:
            found = publication(message.data, headers, self._fields)
        else:
            method = headers.get(self.config.method_header, "") if self.config.method_header else ""
            found = command(method, message.data)
        outcome = await apply(self.execute, found)
        if outcome.verdict == RETRY:
            await message.nak(delay=NAK_DELAY)
            return
        if outcome.verdict == SKIPPED:
            self.skipped += 1
            log.error(
                "%s: skipped message %s of stream %s: %s",
                self.label,
                message.metadata.sequence.stream,
                self.config.stream_name,
                outcome.why,
            )
        else:
            self.applied += 1
        await message.ack()

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.info("%s: NATS answers again: reading %s", self.label, self.config.stream_name)

    def _fail(self, exc: BaseException) -> None:
        if not self._down and not self._stopping:  # closing at shutdown is no outage
            self._down = True
            log.warning(
                "%s: NATS JetStream unavailable (%s): retrying until it answers",
                self.label,
                str(exc) or type(exc).__name__,
            )

    async def _quiet(self, exc: Exception) -> None:
        """Each failed (re)connect attempt: one line per outage (_fail)."""
        if self._nc is None or not self._nc.is_connected:
            self._fail(exc)
        else:
            log.debug("%s: NATS: %s", self.label, exc)

    async def _disconnected(self) -> None:
        self._fail(ConnectionError("disconnected"))

    async def _reconnected(self) -> None:
        pass  # the next fetch that answers logs it (_up)
