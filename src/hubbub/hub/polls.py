"""Shared poll subscriptions: clients track keys, the node polls the backend for them.

    subscribe{type: 4}                    -> a subscription (no data yet)
    sub_refresh{type: 1, track: [{signature, items: [{key, version}]}], untrack}
                                          -> keys tracked; data the node has and the
                                             client lacks comes in the reply
    sub_refresh{type: 2, untrack: [...]}  -> keys untracked
    pub{key, data, version} / pub{key, removed}  pushes to the key's trackers

Rule 1: a node polls once per ``refresh_interval`` per channel, for the union of
the keys its clients track, in batches of ``refresh_batch_size`` spread over
the interval, through the namespace's refresh proxy (``channel.proxy.
shared_poll_refresh`` or a named one); every channel shares one bound on
requests in flight (``shared_poll.concurrency_limit``). A key tracked with
version 0 that the node has no data for is polled at once (with the other
cold keys of the moment), not at the next cycle.
Rule 2: only what changed is pushed, and only to the key's trackers that do
not have it: ``versioned`` compares the backend's versions, ``versionless``
the data's digest and numbers the changes itself (versions valid within the
channel's epoch on this node). A key the backend says is ``removed`` is
removed for its trackers and tracked no more.
Rule 3: a backend that fails (down, slow, an error answer) changes nothing:
no push, the data kept is the last good one; the channel backs off (the
interval doubles per failed cycle, at most ``MAX_BACKOFF``), one log line
per channel when it starts failing and one when it answers again.
Rule 4: a tracked key is authorised by a signature (auth/poll_signatures.py);
it stays tracked until untracked, until its subscription ends, or until its
signature's expiry plus ``track_expired_extra_delay`` passed without a new track.
Rule 5: ``shared_poll_publish`` (versioned channels with ``publish_enabled``)
goes through the engine like any publication; the channel table hands it to
this channel's sink, which applies it like a polled item (a new epoch resets
the channel: every subscriber resubscribes with 2500).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.auth.poll_signatures import InvalidSignature, PollSecrets, SignatureExpired, verify
from hubbub.codes import Error
from hubbub.engines.base import HistoryOptions
from hubbub.engines.memory import new_epoch
from hubbub.errors import ClientError, DisconnectRequest
from hubbub.hub import recovery
from hubbub.hub.commands import ttl_until
from hubbub.hub.counters import PUSH_PUBLICATION
from hubbub.hub.lifecycle import Positioner
from hubbub.hub.session import Answer, SubState
from hubbub.protocol.codec import Codec
from hubbub.protocol.messages import Publication, SubRefreshResult, SubscribeResult
from hubbub.protocol.payload import Binary
from hubbub.proxy import messages as pm
from hubbub.tasks import stop_task

if TYPE_CHECKING:
    from hubbub.auth.channels import Channel
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session, Subscription
    from hubbub.protocol.messages import SubRefreshRequest, SubscribeRequest
    from hubbub.proxy.client import ProxyClient

log = logging.getLogger("hubbub.polls")

TRACK, UNTRACK = 1, 2
#: The epoch of a versioned channel whose publisher's epoch is not known yet.
UNKNOWN_EPOCH = "-"
#: The longest a failing channel waits between cycles, seconds.
MAX_BACKOFF = 60.0
#: Cold keys tracked within this window are polled in one request.
COLD_WINDOW = 0.01


class _Tracked:
    __slots__ = ("expire_at", "version")

    def __init__(self, version: int, expire_at: float) -> None:
        self.version = version  # what the client has
        self.expire_at = expire_at  # unix seconds; 0: never


class _Key:
    __slots__ = ("data", "digest", "fresh_until", "trackers", "version")

    def __init__(self) -> None:
        self.version = 0
        self.data: msgspec.Raw | None = None
        self.digest = b""
        self.fresh_until = 0.0  # a direct publish made the next poll of it needless
        self.trackers: dict[Subscription, _Tracked] = {}


class PollChannel:
    """The tracked keys of one shared poll channel on this node, and its poll loop."""

    def __init__(self, polls: Polls, channel: Channel, proxy: ProxyClient[Any]) -> None:
        self.polls = polls
        self.name = channel.name
        self.options = channel.options.shared_poll
        self.versioned = self.options.mode == "versioned"
        self.proxy = proxy
        self.epoch = new_epoch()  # versionless: the synthetic versions' epoch
        self.backend_epoch = ""  # versioned: the publisher's epoch
        self.keys: dict[str, _Key] = {}
        self.by_subscription: dict[Subscription, set[str]] = {}
        self.failures = 0
        self._cold: dict[str, None] = {}  # keys to poll at once, in the order tracked
        self._cold_handle: asyncio.TimerHandle | None = None
        self._empty_since = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"poll {self.name}")

    @property
    def reply_epoch(self) -> str:
        """The epoch a subscriber is told: its versions are good while it stays.

        Versioned: the publisher's, or "-" while it is unknown (the SDK resets its
        versions when a known epoch changes, so an unknown one must not be "").
        """
        if self.versioned:
            return self.backend_epoch or UNKNOWN_EPOCH
        return self.epoch

    async def close(self) -> None:
        if self._cold_handle is not None:
            self._cold_handle.cancel()
        await stop_task(self._task)

    # --- tracking ----------------------------------------------------------------------

    def track(
        self,
        subscription: Subscription,
        batches: list[tuple[list[pm.SharedPollItem], float]],
        untrack: list[str],
    ) -> list[Publication]:
        """Track the batches' keys (each with its expiry); the data the client lacks."""
        lacking: list[Publication] = []
        mine = self.by_subscription.setdefault(subscription, set())
        for items, expire_at in batches:
            for item in items:
                entry = self.keys.get(item.key)
                if entry is None:
                    entry = self.keys[item.key] = _Key()
                tracked = entry.trackers[subscription] = _Tracked(item.version, expire_at)
                mine.add(item.key)
                if entry.data is not None and entry.version > item.version:
                    lacking.append(
                        Publication(data=entry.data, key=item.key, version=entry.version)
                    )
                    tracked.version = entry.version
                elif entry.data is None and item.version == 0:
                    self._cold[item.key] = None
        self.untrack(subscription, untrack)
        if self._cold and self._cold_handle is None:
            loop = asyncio.get_running_loop()
            self._cold_handle = loop.call_later(COLD_WINDOW, self._poll_cold)
        return lacking

    def untrack(self, subscription: Subscription, keys: list[str]) -> None:
        mine = self.by_subscription.get(subscription)
        for key in keys:
            entry = self.keys.get(key)
            if entry is not None:
                entry.trackers.pop(subscription, None)
                if not entry.trackers:
                    del self.keys[key]
            if mine is not None:
                mine.discard(key)

    def tracked_count(self, subscription: Subscription) -> int:
        return len(self.by_subscription.get(subscription, ()))

    def _sweep(self, now: float) -> None:
        """Drop trackers whose subscription ended or whose signature ran out (Rule 4)."""
        for subscription, keys in list(self.by_subscription.items()):
            gone = subscription.state is SubState.GONE
            expired = [
                key for key in keys if gone or _expired(self.keys.get(key), subscription, now)
            ]
            if expired:
                self.untrack(subscription, expired)
            if not self.by_subscription[subscription]:
                del self.by_subscription[subscription]

    # --- polling -----------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.options.refresh_interval
        while True:
            try:
                if not await self._cycle():
                    return
            except Exception:
                log.exception("shared poll %s: cycle failed", self.name)
                await asyncio.sleep(interval)

    async def _cycle(self) -> bool:
        """One refresh cycle; False once the channel stopped (idle)."""
        loop = asyncio.get_running_loop()
        interval = self.options.refresh_interval
        self._sweep(time.time())
        if not self.keys:
            if self.name in self.polls.hub.channels.entries:
                self._empty_since = time.monotonic()
            elif time.monotonic() - self._empty_since >= self.options.channel_shutdown_delay:
                self.polls.forget(self)
                return False
            await asyncio.sleep(min(interval, self.options.channel_shutdown_delay or interval))
            return True
        started = loop.time()
        now = time.time()
        keys = [k for k, entry in self.keys.items() if entry.fresh_until <= now]
        size = max(self.options.refresh_batch_size, 1)
        batches = [keys[i : i + size] for i in range(0, len(keys), size)]
        polls = []
        for index, batch in enumerate(batches):
            # Spread the batches over the interval (Rule 1).
            delay = started + index * interval / len(batches) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            polls.append(loop.create_task(self._poll(batch)))
        answered = all(await asyncio.gather(*polls)) if polls else True
        self.failures = 0 if answered else self.failures + 1
        wait = interval
        if not answered:  # back off (Rule 3)
            wait = max(interval, min(interval * 2**self.failures, MAX_BACKOFF))
        await asyncio.sleep(max(0.0, started + wait - loop.time()))
        return True

    def _poll_cold(self) -> None:
        self._cold_handle = None
        keys = [key for key in self._cold if key in self.keys]
        self._cold.clear()
        size = max(self.options.refresh_batch_size, 1)
        for start in range(0, len(keys), size):
            self.polls.spawn(self._poll(keys[start : start + size]))

    async def _poll(self, keys: list[str]) -> bool:
        """One backend request for ``keys``; False when the backend gave no answer."""
        async with self.polls.limit:
            asked = [key for key in keys if key in self.keys]  # untracked while waiting
            if not asked:
                return True
            items = [
                pm.SharedPollItem(key, self.keys[key].version if self.versioned else 0)
                for key in asked
            ]
            request = pm.SharedPollRefreshRequest(channel=self.name, items=items)
            try:
                result = await self.proxy.call(request)
            except (ClientError, DisconnectRequest) as exc:
                self.polls.failed(self, exc)
                return False
        self.polls.answered(self)
        self.apply(result, set(asked))
        return True

    # --- changes -----------------------------------------------------------------------

    def apply(self, result: pm.SharedPollRefreshResult, asked: set[str]) -> None:
        """What the backend answered for ``asked`` (Rule 2)."""
        if self._epoch_changed(result.epoch):
            return
        for item in result.items or ():
            entry = self.keys.get(item.key)
            if entry is None or item.key not in asked:
                continue  # untracked meanwhile, or not asked: never deliver it
            if item.removed:
                self._removed(item.key, entry)
                continue
            if not item.data:
                continue  # unchanged (versioned: only the version)
            if self.versioned:
                if item.version <= entry.version:
                    continue
                version = item.version
            else:
                digest = hashlib.blake2b(bytes(item.data), digest_size=16).digest()
                if digest == entry.digest:
                    continue
                entry.digest, version = digest, entry.version + 1
            entry.version, entry.data = version, item.data
            self._deliver(item.key, entry)

    def on_publication(self, publication: Publication) -> None:
        """A ``shared_poll_publish`` delivered by the engine (Rule 5)."""
        if self._epoch_changed(publication.epoch):
            return
        entry = self.keys.get(publication.key)
        if entry is None or publication.version <= entry.version:
            return  # nobody here tracks it, or it is not newer
        data = publication.data
        if isinstance(data, Binary):  # never: shared_poll_publish takes JSON data only
            return
        entry.version, entry.data = publication.version, data
        entry.fresh_until = time.time() + self.options.refresh_interval
        self._deliver(publication.key, entry)

    def _epoch_changed(self, epoch: str) -> bool:
        """A new publisher epoch resets the channel (its versions mean nothing now)."""
        if not epoch or not self.versioned:
            return False
        if self.backend_epoch and epoch != self.backend_epoch:
            log.info("shared poll %s: publisher epoch changed, subscribers reload", self.name)
            self.backend_epoch = epoch
            self.keys.clear()
            self.by_subscription.clear()
            self.polls.hub.channels.lost([self.name], "shared poll epoch changed")
            return True
        self.backend_epoch = epoch
        return False

    def _deliver(self, key: str, entry: _Key) -> None:
        assert entry.data is not None
        self._push(entry, Publication(data=entry.data, key=key, version=entry.version))

    def _removed(self, key: str, entry: _Key) -> None:
        self._push(entry, Publication(key=key, removed=True))
        del self.keys[key]
        for subscription in entry.trackers:
            keys = self.by_subscription.get(subscription)
            if keys is not None:
                keys.discard(key)

    def _push(self, entry: _Key, publication: Publication) -> None:
        """``publication`` to the key's trackers that lack it, encoded once per codec."""
        version = publication.version
        frames: dict[Codec, bytes] = {}
        delivery = self.polls.hub.delivery
        for subscription, tracked in entry.trackers.items():
            if subscription.state is not SubState.LIVE:
                continue
            if version and tracked.version >= version:
                continue  # it has this one already
            tracked.version = version
            session = subscription.session
            codec = session.codec
            frame = frames.get(codec)
            if frame is None:
                frame = frames[codec] = codec.publication_push(self.name, publication)
            delivery.send(session, frame, PUSH_PUBLICATION)


def _expired(entry: _Key | None, subscription: Subscription, now: float) -> bool:
    if entry is None:
        return True
    tracked = entry.trackers.get(subscription)
    return tracked is None or bool(tracked.expire_at and tracked.expire_at < now)


class Polls:
    """The shared poll channels of a hub."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        config = hub.config.shared_poll
        self.secrets = PollSecrets(
            config.hmac_secret_key,
            config.hmac_previous_secret_key,
            config.hmac_previous_secret_key_valid_until,
        )
        self.limit = asyncio.Semaphore(max(config.concurrency_limit, 1))
        self.channels: dict[str, PollChannel] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failing: set[str] = set()

    async def close(self) -> None:
        for channel in list(self.channels.values()):
            await channel.close()
        self.channels.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def channel(self, channel: Channel) -> PollChannel:
        """The node's poll state of ``channel``, started when missing."""
        poll = self.channels.get(channel.name)
        if poll is None:
            proxy = self.hub.decisions.proxies.shared_poll(self.hub.config, channel.options)
            proxy.quiet = True  # Rule 3: one line per outage, from here
            poll = self.channels[channel.name] = PollChannel(self, channel, proxy)
            table = self.hub.channels
            table.sinks[channel.name] = poll.on_publication
            entry = table.entries.get(channel.name)
            if entry is not None:
                entry.sink = poll.on_publication
        return poll

    def forget(self, poll: PollChannel) -> None:
        """``poll`` stopped (idle past channel_shutdown_delay)."""
        if self.channels.get(poll.name) is poll:
            del self.channels[poll.name]
            self.hub.channels.sinks.pop(poll.name, None)

    def failed(self, poll: PollChannel, exc: Exception) -> None:
        if poll.name not in self._failing:
            self._failing.add(poll.name)
            log.warning(
                "shared poll %s: backend %s gave no data (%s); clients keep what they have",
                poll.name,
                poll.proxy.endpoint,
                getattr(exc, "cause", "") or exc,
            )

    def answered(self, poll: PollChannel) -> None:
        if poll.name in self._failing:
            self._failing.discard(poll.name)
            log.info("shared poll %s: backend answers again", poll.name)

    # --- client commands ---------------------------------------------------------------

    async def subscribe(
        self, session: Session, channel: Channel, request: SubscribeRequest
    ) -> Answer:
        hub = self.hub
        grant = await hub.commands.authorize_subscribe(session, channel, request)
        channel = grant.channel
        poll = self.channel(channel)

        async def position() -> recovery.Positioned:
            return recovery.Positioned(SubscribeResult(epoch=poll.reply_epoch), 0)

        subscription, result = await hub.lifecycle.subscribe(
            session,
            channel,
            request,
            chan_info=grant.chan_info,
            expire_at=grant.expire_at,
            push_join_leave=hub.commands.push_join_leave(session, channel, request),
            positioner=Positioner(False, False, position),
        )
        result.expires, result.ttl = bool(grant.expire_at), ttl_until(grant.expire_at)
        hub.commands.apply_subscribe_decision(result, channel, grant.decision)
        return Answer("subscribe", result, lambda: hub.lifecycle.go_live(subscription))

    async def sub_refresh(
        self, session: Session, channel: Channel, request: SubRefreshRequest
    ) -> Answer:
        """Track (type 1) or untrack (type 2) keys of a shared poll subscription."""
        if request.type not in (TRACK, UNTRACK) or channel.options.subscription_type != (
            "shared_poll"
        ):
            raise ClientError(Error.BAD_REQUEST, "track needs a shared poll channel")
        subscription = session.subscriptions.get(channel.name)
        if subscription is None or subscription.state is not SubState.LIVE:
            raise ClientError(Error.PERMISSION_DENIED)
        poll = self.channel(channel)
        untrack = request.untrack or []
        if request.type == UNTRACK:
            poll.untrack(subscription, untrack)
            return Answer("sub_refresh", SubRefreshResult())
        options = channel.options.shared_poll
        now = time.time()
        batches: list[tuple[list[pm.SharedPollItem], float]] = []
        expiries: list[int] = []
        new_keys: set[str] = set()
        for batch in request.track or []:
            items = [pm.SharedPollItem(i.key, i.version) for i in batch.items or ()]
            keys = [item.key for item in items]
            if not keys or not all(keys):
                raise ClientError(Error.BAD_REQUEST, "track needs keys")
            try:
                exp = verify(
                    batch.signature,
                    self.secrets,
                    user=session.user,
                    channel=channel.name,
                    keys=keys,
                    now=now,
                    grace=options.track_expired_extra_delay,
                )
            except SignatureExpired as exc:
                raise ClientError(Error.TOKEN_EXPIRED) from exc
            except InvalidSignature as exc:
                log.info("client %s: shared poll signature refused: %s", session.client_id, exc)
                raise ClientError(Error.PERMISSION_DENIED) from exc
            expiries.append(exp)
            batches.append((items, exp + options.track_expired_extra_delay if exp else 0.0))
            new_keys.update(keys)
        current = poll.by_subscription.get(subscription, set())
        if len((current | new_keys) - set(untrack)) > options.max_keys_per_connection:
            raise ClientError(Error.LIMIT_EXCEEDED)
        lacking = poll.track(subscription, batches, untrack)
        result = SubRefreshResult(items=lacking or None)
        signed = [exp for exp in expiries if exp]
        if signed:
            result.expires, result.ttl = True, max(int(min(signed) - now), 0)
        return Answer("sub_refresh", result)

    # --- the application's and the API's direct publish ---------------------------------

    async def publish(self, channel: str, key: str, data: Any, version: int, epoch: str) -> None:
        """``shared_poll_publish``: ``data`` of ``key`` at ``version`` to its trackers on
        every node (Rule 5)."""
        resolved = self.hub.channel_rules.resolve(channel) if channel else None
        if resolved is None or resolved.options.subscription_type != "shared_poll":
            raise ClientError(Error.BAD_REQUEST, "not a shared poll channel")
        options = resolved.options.shared_poll
        if not key or version <= 0 or options.mode != "versioned":
            raise ClientError(Error.BAD_REQUEST, "needs a key, a version and versioned mode")
        if not options.publish_enabled:
            raise ClientError(Error.NOT_AVAILABLE)
        raw = data if isinstance(data, msgspec.Raw) else msgspec.Raw(msgspec.json.encode(data))
        if not raw:
            raise ClientError(Error.BAD_REQUEST, "data required")
        publication = Publication(data=raw, key=key, version=version, epoch=epoch)
        await self.hub.engine.publish(channel, publication, HistoryOptions())
