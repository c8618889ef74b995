"""Webhook events and their signature: what a receiver gets and how it checks it.

Rule: an event is encoded once, as JSON, when it happens; its ``id`` is given
by the queue that accepted it and spliced in when a batch is sent. A POST's
body is ``{"events": [...]}``; it is signed with HMAC-SHA256 over
``"<timestamp>." + body`` (``X-Hubbub-Timestamp``, ``X-Hubbub-Signature:
v1=<hex>``), so a receiver can check both who sent it and when.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import msgspec
from msgspec import Raw

from hubbub.protocol.messages import NO_DATA as NO_DATA
from hubbub.protocol.payload import Payload, to_container

SIGNATURE_HEADER = "X-Hubbub-Signature"
TIMESTAMP_HEADER = "X-Hubbub-Timestamp"
SIGNATURE_VERSION = "v1"


class WebhookEvent(msgspec.Struct, omit_defaults=True):
    """One event; fields a type does not use are left out."""

    type: str  # connect, disconnect, occupied, vacated, join, leave, publication
    time_ms: int
    node: str = ""
    channel: str = ""  # occupied, vacated, join, leave, publication
    client: str = ""
    user: str = ""
    code: int = 0  # disconnect: the close code
    reason: str = ""  # disconnect
    info: Raw = NO_DATA  # connect, join, leave: the connection's info
    chan_info: Raw = NO_DATA  # join, leave
    data: Payload = NO_DATA  # publication
    b64data: str = ""  # publication: binary data as base64 (data absent)
    offset: int = 0  # publication: its place in the channel's stream (history on)


_encode = msgspec.json.encode


def encode_event(event: WebhookEvent) -> bytes:
    return _encode(to_container(event))


def now_ms() -> int:
    return int(time.time() * 1000)


def batch_body(batch: list[tuple[str, bytes]]) -> bytes:
    """``{"events": [...]}`` with each event's ``id`` put first (no re-encoding)."""
    parts = [b'{"id":"' + event_id.encode() + b'",' + event[1:] for event_id, event in batch]
    return b'{"events":[' + b",".join(parts) + b"]}"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Hubbub-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(secret: str, timestamp: str, header: str, body: bytes, *, tolerance: float) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` and ``timestamp`` is recent."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header)
