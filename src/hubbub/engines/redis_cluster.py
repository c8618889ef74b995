"""One Redis Cluster as one shard of the Redis engine (``engine.redis.cluster_address``).

Rule 1: commands go through redis-py's RedisCluster, which routes each by the
slot of its first key and follows MOVED / ASK; a channel's keys carry the
channel as a hash tag (redis.py), so each script touches one slot only.
Rule 2: events use sharded pub/sub: SPUBLISH from the scripts, SSUBSCRIBE on
one pub/sub connection per master, holding the channels of that master's
slots. A publication reaches only the nodes serving its slot, not the whole
cluster bus.
Rule 3: when a channel's slot moves (resharding: the server drops the
subscription; failover: the connection to the old master breaks) events may
have been lost: the node is told (``on_lost`` -> 2500 for the subscribers,
who recover from the stream), the slot map is read again, and the channel is
subscribed at its new master. A channel is never left unsubscribed quietly.
Rule 4: topology errors (CLUSTERDOWN, TRYAGAIN, a slot nobody serves, no
node reachable) count as an outage, as connection errors do.
Rule 5: ``close`` leaves nothing behind: every task it started has ended and
every connection it or redis-py opened is closed, whatever state a failover
left them in. redis-py's ``aclose`` closes the nodes of its current table only;
a failed master it dropped from the table keeps its pool. So every connection
is made by ``TrackedConnection``, which the shard keeps a (weak) list of.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ClusterDownError,
    ClusterError,
    MasterDownError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from hubbub.engines.base import EngineUnavailable
from hubbub.engines.health import Reachability
from hubbub.engines.redis_batch import ScriptBatcher
from hubbub.engines.redis_pubsub import PubSubConnection, log
from hubbub.engines.redis_shard import OUTAGE_ERRORS, OnLost, OnMessage, batchers
from hubbub.engines.redis_tls import TLS_CONTEXT, TlsConnection, tls_failure
from hubbub.tasks import stop_tasks

#: Outage errors on a cluster: those of one server, and the cluster's own
#: (RedisClusterException: "Redis Cluster cannot be connected", no node answered).
CLUSTER_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    *OUTAGE_ERRORS,
    ClusterDownError,
    ClusterError,
    MasterDownError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
#: How many times a subscribe follows its channel to a new master.
SUBSCRIBE_ATTEMPTS = 3


def parse_seeds(seeds: str) -> list[ClusterNode]:
    """``"host:port,host:port"`` (Centrifugo's cluster_address entry) as startup nodes."""
    nodes = []
    for seed in seeds.split(","):
        seed = seed.strip().removeprefix("redis://")
        host, _, port = seed.rpartition(":")
        nodes.append(ClusterNode(host or "127.0.0.1", int(port or 6379)))
    return nodes


def tracked_connection_class(
    connections: weakref.WeakSet[Connection], base: type[Connection] = Connection
) -> type[Connection]:
    """A ``base`` class whose every instance is added to ``connections`` (Rule 5)."""

    class TrackedConnection(base):  # type: ignore[valid-type,misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            connections.add(self)

    return TrackedConnection


class ClusterScriptBatcher(ScriptBatcher):
    """A ScriptBatcher whose batch goes out as a cluster pipeline (one per master)."""

    async def _execute(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        client: RedisCluster = self._client
        pipe = client.pipeline()
        for keys, args in calls:
            pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
        async with asyncio.timeout(self._io_timeout):
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, CLUSTER_OUTAGE_ERRORS):
                raise reply  # the whole batch is retried by its callers, told of the outage
        return replies


class ClusterShard:
    """A whole Redis Cluster, seen as one shard of the engine."""

    publish_command = "SPUBLISH"
    publish: ScriptBatcher
    history: ScriptBatcher
    presence_add: ScriptBatcher
    presence_get: ScriptBatcher
    presence_remove: ScriptBatcher

    def __init__(
        self, seeds: str, options: dict[str, Any], on_message: OnMessage, on_lost: OnLost
    ) -> None:
        self.url = f"redis cluster {seeds}"
        self._options = options
        # TLS (engine.redis.tls) comes with the connection class, set below.
        skip = ("timeout", "db", "connection_class", TLS_CONTEXT)
        cluster_options = {k: v for k, v in options.items() if k not in skip}
        self._tls: dict[str, Any] = {}
        if TLS_CONTEXT in options:
            self._tls[TLS_CONTEXT] = options[TLS_CONTEXT]
        self.client = RedisCluster(
            startup_nodes=parse_seeds(seeds),
            require_full_coverage=False,  # a node down must not stop the other slots
            # A failed command is retried once after the slot map is read again.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 1),
            **cluster_options,
        )
        #: Every connection to the cluster, redis-py's and the pub/sub readers' (Rule 5).
        self._connections: weakref.WeakSet[Connection] = weakref.WeakSet()
        base = TlsConnection if self._tls else Connection
        self._connection_class = tracked_connection_class(self._connections, base)
        # redis-py makes each node it discovers (and the startup nodes it made
        # already) with these keyword arguments; its connections come from the class.
        manager = self.client.nodes_manager
        manager.connection_kwargs["connection_class"] = self._connection_class
        manager.connection_kwargs.update(self._tls)
        for node in manager.startup_nodes.values():
            node.connection_class = self._connection_class
            node.connection_kwargs.update(self._tls)
        self.health = Reachability(self.url, log)
        if self._tls:
            self.health.explain = tls_failure
        batchers(
            self,
            self.client,
            self.health,
            self.url,
            options["socket_timeout"],
            CLUSTER_OUTAGE_ERRORS,
            ClusterScriptBatcher,
        )
        self._on_message = on_message
        self._on_lost = on_lost
        self._readers: dict[str, PubSubConnection] = {}  # master "host:port" -> its pub/sub
        self._homeless: set[bytes] = set()  # channels waiting for a master to take them
        self._rehome: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()  # subscribes started by a rehome
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, control: set[bytes]) -> None:
        self._started = True
        self._homeless |= control
        self._schedule_rehome()

    async def close(self) -> None:
        """Rule 5. Each step runs whatever the previous ones met: a rehome that
        failed meanwhile once ended ``close`` early, leaving every connection open
        (and a test loop closed with them open hung in uvloop's ``close()``)."""
        self._started = False
        failed = await stop_tasks([self._rehome])
        self._rehome = None
        # A rehome that was past its last await when cancelled may have started more.
        while pending := [task for task in self._pending if not task.done()]:
            failed += await stop_tasks(pending)
        self._pending.clear()
        for reader in list(self._readers.values()):
            try:
                await reader.close()
            except Exception as error:  # its task had failed: its connection is closed below
                failed.append(error)
        self._readers.clear()
        with contextlib.suppress(Exception):
            await self.client.aclose()
        for connection in list(self._connections):  # also those of dropped nodes
            with contextlib.suppress(Exception):
                await connection.disconnect()
        for exc in failed:
            log.warning("%s: a background task had failed: %r", self.url, exc)

    # --- commands ----------------------------------------------------------------------

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        try:
            yield
        except CLUSTER_OUTAGE_ERRORS as exc:
            self.health.failed(exc)
            raise EngineUnavailable(f"{self.url}: {exc}") from exc
        self.health.succeeded()

    async def post(self, channel: bytes, data: bytes) -> None:
        with self.outage():
            await self.client.execute_command("SPUBLISH", channel, data)

    async def delete(self, key: str) -> None:
        with self.outage():
            await self.client.delete(key)

    # --- sharded pub/sub ---------------------------------------------------------------

    def _owner(self, channel: bytes) -> str:
        """The ``host:port`` of the master serving ``channel``'s slot (by the last map read)."""
        slot = self.client.keyslot(channel)
        node = self.client.nodes_manager.get_node_from_slot(slot)
        return str(node.name)

    def _reader(self, name: str) -> PubSubConnection:
        reader = self._readers.get(name)
        if reader is None:
            host, _, port = name.rpartition(":")
            options = self._options

            def connect() -> AbstractConnection:
                return self._connection_class(
                    host=host,
                    port=int(port),
                    socket_connect_timeout=options["socket_connect_timeout"],
                    socket_timeout=options["socket_timeout"],
                    username=options.get("username"),
                    password=options.get("password"),
                    protocol=options.get("protocol", 2),
                    **self._tls,
                )

            reader = PubSubConnection(
                f"redis {name}",
                connect,
                self.health,
                sharded=True,
                on_message=self._on_message,
                on_lost=self._lost,
                on_moved=self._moved,
            )
            self._readers[name] = reader
            reader.start()
        return reader

    async def subscribe(self, channel: bytes, wait: float) -> None:
        for attempt in range(SUBSCRIBE_ATTEMPTS):
            try:
                with self.outage():
                    if not self.client.nodes_manager.slots_cache:
                        await self.client.initialize()
                    owner = self._owner(channel)
                await self._reader(owner).subscribe(channel, wait)
                return
            except EngineUnavailable:
                if attempt + 1 == SUBSCRIBE_ATTEMPTS:
                    raise
                await self._refresh_map()

    async def unsubscribe(self, channel: bytes) -> None:
        self._homeless.discard(channel)
        for reader in self._readers.values():
            if channel in reader.channels:
                await reader.unsubscribe(channel)

    def _lost(self, channels: set[bytes]) -> None:
        """A pub/sub connection to a master broke: its channels may have moved."""
        self._on_lost(channels)
        self._schedule_rehome()

    def _moved(self, channel: bytes) -> None:
        """A master stopped serving ``channel``: events may be lost; find its new master."""
        self._on_lost({channel})
        self._homeless.add(channel)
        self._schedule_rehome()

    def _schedule_rehome(self) -> None:
        if self._started and (self._rehome is None or self._rehome.done()):
            self._rehome = asyncio.get_running_loop().create_task(self._rehome_all())

    async def _refresh_map(self) -> None:
        # Any outage, also "no node reachable" (RedisClusterException), which once
        # ended the rehome task: its channels then waited for the next rehome.
        with contextlib.suppress(*CLUSTER_OUTAGE_ERRORS, ResponseError):
            await self.client.nodes_manager.initialize()

    async def _rehome_all(self) -> None:
        """Put every wanted channel on the reader of its current master (until done)."""
        delay = 0.05
        while self._started:
            await self._refresh_map()
            if self.client.nodes_manager.slots_cache:
                for name, reader in list(self._readers.items()):
                    for channel in list(reader.channels):
                        try:
                            owner = self._owner(channel)
                        except CLUSTER_OUTAGE_ERRORS:
                            continue
                        if owner != name:
                            reader.forget(channel)
                            self._homeless.add(channel)
                for channel in list(self._homeless):
                    try:
                        owner = self._owner(channel)
                    except CLUSTER_OUTAGE_ERRORS:
                        continue
                    self._homeless.discard(channel)
                    reader = self._reader(owner)
                    reader.channels.add(channel)  # subscribed on (re)connect
                    task = asyncio.get_running_loop().create_task(
                        self._subscribe_quietly(reader, channel)
                    )
                    self._pending.add(task)
                    task.add_done_callback(self._pending.discard)
                # Done when every channel has a master and every reader holding
                # channels is connected (a dead master's channels move once a
                # replica has taken its slots over and the map says so).
                for name, reader in list(self._readers.items()):
                    if not reader.channels and not reader.connected:
                        del self._readers[name]
                        await reader.close()
                if not self._homeless and all(
                    reader.connected for reader in self._readers.values() if reader.channels
                ):
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _subscribe_quietly(self, reader: PubSubConnection, channel: bytes) -> None:
        with contextlib.suppress(EngineUnavailable):
            await reader.subscribe(channel, self._options["socket_connect_timeout"])
