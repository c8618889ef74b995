"""Signed webhooks (hubbub's own): what the event proxy can not tell a backend.

    service.py      the node's webhooks: buffer -> queue -> signed batched POSTs
    queues.py       the queue interface and the memory queue (one node)
    redis_queue.py  the Redis queue: a stream + consumer group, cluster-wide channel holders
    sender.py       one signed POST
    events.py       event shape, batch body, signature (and its check)

Rule: the hub tells ``Webhooks`` what happened, synchronously and cheaply; the
rest runs in the service's own tasks, and nothing here imports the hub.
"""

from __future__ import annotations

from hubbub.webhooks.events import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature, verify
from hubbub.webhooks.service import DROP_REASONS, Webhooks

__all__ = [
    "DROP_REASONS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Webhooks",
    "signature",
    "verify",
]
