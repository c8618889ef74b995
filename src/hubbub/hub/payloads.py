"""Application payloads between Python values and embedded JSON (``msgspec.Raw``).

Rule: hooks see and return Python values; the wire and the proxies carry raw
JSON. A value that is already ``msgspec.Raw`` passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import msgspec


def to_raw(value: Any) -> msgspec.Raw | None:
    """Application data (any JSON value) as an embedded JSON payload."""
    if value is None:
        return None
    if isinstance(value, msgspec.Raw):
        return value
    return msgspec.Raw(msgspec.json.encode(value))


def from_raw(raw: msgspec.Raw | None) -> Any:
    """An embedded JSON payload as a Python value for hooks (None when absent)."""
    if not raw:
        return None
    return msgspec.json.decode(raw)
