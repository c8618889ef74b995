"""Typed keys under which the aiohttp application holds hubbub's objects."""

from __future__ import annotations

from aiohttp import web

from hubbub.hub.hub import Hub
from hubbub.server.websocket import WebSocketEndpoint

HUB_KEY: web.AppKey[Hub] = web.AppKey("hubbub.hub", Hub)
ENDPOINT_KEY: web.AppKey[WebSocketEndpoint] = web.AppKey("hubbub.endpoint", WebSocketEndpoint)
