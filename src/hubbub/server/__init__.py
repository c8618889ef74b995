"""The aiohttp server around a hub: WebSocket endpoint, HTTP API, demo page, runner."""

from hubbub.server.app import attach, create_app

__all__ = ["attach", "create_app"]
