"""The servers around a hub: hubbub's own listener and WebSocket path, and the aiohttp
application (HTTP API, demo page, streams) that serves every other request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubbub.server.app import attach, create_app

__all__ = ["attach", "create_app"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``hubbub serve`` starts without aiohttp (server/run.py).
    if name in __all__:
        from hubbub.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'hubbub.server' has no attribute {name!r}")
