"""The consumers of a hub (hubbub.consumers) started and stopped with it.

Rule: whatever serves the hub (``hubbub serve``, an aiohttp application that
owns it, the ASGI application) starts its consumers once the hub runs and
stops them before the hub closes, so no consumed command meets a closing hub.
Each consumed command goes through the HTTP API's own dispatch
(``HttpApi.execute``); a request not of the method's shape is its error reply
(code 107), not an exception.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.codes import Error
from hubbub.hub.hub import Hub

if TYPE_CHECKING:  # imported when a consumer runs: their clients are not for every node
    from hubbub.consumers import Consumers
    from hubbub.consumers.commands import Execute

_running: weakref.WeakKeyDictionary[Hub, Consumers] = weakref.WeakKeyDictionary()


def api_execute(hub: Hub) -> Execute:
    """The API dispatch of ``hub`` as consumers call it."""
    # Imported here: the API loads aiohttp, which a node without consumers never needs.
    from hubbub.server.api import BadParams, HttpApi

    api = HttpApi(hub)

    async def execute(method: str, params: msgspec.Raw) -> dict[str, Any] | None:
        try:
            return await api.execute(method, params)
        except BadParams as exc:
            return {"error": {"code": Error.BAD_REQUEST.code, "message": f"bad request: {exc}"}}

    return execute


async def start_consumers(hub: Hub) -> None:
    """Start the hub's enabled consumers (once, whoever asks first)."""
    if hub in _running or not any(c.enabled for c in hub.config.consumers):
        return
    from hubbub.consumers import Consumers

    consumers = _running[hub] = Consumers(hub.config.consumers)
    await consumers.start(hub.node_id, api_execute(hub))


async def stop_consumers(hub: Hub) -> None:
    consumers = _running.pop(hub, None)
    if consumers is not None:
        await consumers.close()


def running_consumers(hub: Hub) -> Consumers | None:
    """The hub's running consumers (for tests and metrics)."""
    return _running.get(hub)
