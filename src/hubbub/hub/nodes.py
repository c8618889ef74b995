"""The node registry: which nodes are alive, and what each said about itself.

Rule: a node is alive while it keeps announcing itself; an entry not renewed
within ``NODE_TTL`` disappears (a node killed without a word), and a node that
shuts down removes itself at once by saying so. The registry holds the other
nodes only: this node's own figures are always read live from the hub.

The fields are those of Centrifugo's node info (``info`` API): uid, name,
version, num_clients, num_users, num_subs, num_channels, uptime.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

#: How often each node announces itself (seconds; Centrifugo announces every 3 s).
ANNOUNCE_INTERVAL = 3.0
#: An entry not renewed within this is dropped: two missed announcements and a margin.
NODE_TTL = 2 * ANNOUNCE_INTERVAL + 1.0


class NodeInfo(msgspec.Struct, kw_only=True):
    """One node's identity and figures, as ``info`` reports them."""

    uid: str
    name: str
    version: str
    num_clients: int = 0
    num_users: int = 0
    num_subs: int = 0
    num_channels: int = 0
    uptime: int = 0
    # As Centrifugo's node info: cumulative counters ({"interval", "items"}) and the
    # process's figures; hubbub top turns two readings into rates.
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)
    process: dict[str, float] = msgspec.field(default_factory=dict)


class NodeRegistry:
    """The other live nodes, by uid, each with the time its entry expires."""

    def __init__(self, *, ttl: float = NODE_TTL, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self._clock = clock
        self._nodes: dict[str, tuple[NodeInfo, float]] = {}

    def update(self, info: NodeInfo) -> bool:
        """Record an announcement; True when the node was not known (or had expired)."""
        now = self._clock()
        known = self._nodes.get(info.uid)
        self._nodes[info.uid] = (info, now + self.ttl)
        return known is None or known[1] <= now

    def remove(self, uid: str) -> None:
        """The node said it is shutting down."""
        self._nodes.pop(uid, None)

    def live(self) -> list[NodeInfo]:
        """Every node whose entry has not expired (expired ones are dropped)."""
        now = self._clock()
        for uid in [uid for uid, (_, until) in self._nodes.items() if until <= now]:
            del self._nodes[uid]
        return [info for info, _ in self._nodes.values()]

    def uids(self) -> set[str]:
        return {info.uid for info in self.live()}
