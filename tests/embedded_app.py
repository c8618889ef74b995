"""An aiohttp application of its own that embeds hubbub with ``attach()``, as a user writes it.

    python tests/embedded_app.py PORT [PREFIX]

The hub runs the demo preset (``hubbub serve`` without a config), with
``HUBBUB_*`` environment variables applied, and the ``echo`` RPC method;
hubbub is mounted under PREFIX (default ``/rt``) next to the application's own
route ``GET /hello``. On uvloop, as ``hubbub serve``, with hubbub's handshake
limits given to aiohttp (``runner_options``). SIGTERM stops it (clients
get 3001). Used by the audit of the aiohttp door (tests/test_audit_doors.py).
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web

from hubbub import Hub, attach
from hubbub.codes import Error
from hubbub.config.generate import demo_config
from hubbub.config.loader import load_config
from hubbub.errors import ClientError
from hubbub.hub.hooks import RPCEvent, RPCResponse
from hubbub.server.app import runner_options


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "from the application"})


def build(hub: Hub, prefix: str) -> web.Application:

    @hub.on_rpc
    async def echo(event: RPCEvent) -> RPCResponse:
        if event.method != "echo":
            raise ClientError(Error.METHOD_NOT_FOUND)
        return RPCResponse(data=event.data)

    app = web.Application()
    app.router.add_get("/hello", hello)
    attach(app, hub, prefix=prefix)
    return app


def main() -> None:
    port = int(sys.argv[1])
    prefix = sys.argv[2] if len(sys.argv) > 2 else "/rt"
    hub = Hub(load_config(None, base=demo_config()).config)
    web.run_app(
        build(hub, prefix),
        host="127.0.0.1",
        port=port,
        print=None,
        loop=uvloop.new_event_loop(),
        # hubbub's handshake limits (deadline, header count and size), as the README says.
        **runner_options(hub.config.http_server),
    )


if __name__ == "__main__":
    main()
