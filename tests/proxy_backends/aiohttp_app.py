"""A proxy backend written with aiohttp, run as its own process by the tests.

    python -m tests.proxy_backends.aiohttp_app   -> prints the port, serves until killed

Routes: POST /{event} (logic.py decides), and the failures a backend can have:
POST /slow/{event} (answers after SLOW seconds), /status500/{event},
/status404/{event}, /garbage/{event} (200 with a body that is not JSON);
GET /requests (what was received, for assertions). ``--tls DIR``: the same
on three TLS ports as well (see listeners.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys

from aiohttp import web

from tests.proxy_backends import logic
from tests.proxy_backends.listeners import common_name, server_contexts, tls_directory
from tests.proxy_backends.wire import RequestLog, decode_request, encode_response

SLOW = 3.0


def create_app() -> web.Application:
    requests = RequestLog()

    async def event(request: web.Request) -> web.Response:
        mode = request.match_info.get("mode", "")
        name = request.match_info["event"]
        body, binary = decode_request(await request.read())
        headers = {k.lower(): v for k, v in request.headers.items()}
        if request.transport is not None and request.transport.get_extra_info("sslcontext"):
            headers["_tls_client"] = common_name(request.transport.get_extra_info("peercert"))
        requests.add(name, body, headers)
        if mode == "slow":
            await asyncio.sleep(SLOW)
        elif mode == "status500":
            return web.Response(status=500, text="internal error")
        elif mode == "status404":
            return web.Response(status=404, text="no such thing")
        elif mode == "garbage":
            return web.Response(body=b'{"result": {"user": ', content_type="application/json")
        response = await logic.handle(name, body, headers)
        return web.Response(body=encode_response(response, binary), content_type="application/json")

    async def log(request: web.Request) -> web.Response:
        return web.json_response(requests.entries)

    app = web.Application()
    app.router.add_post("/{event}", event)
    app.router.add_post("/{mode}/{event}", event)
    app.router.add_get("/requests", log)
    return app


async def main() -> None:
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ports: dict[str, int] = {}
    directory = tls_directory()
    if directory is not None:
        for name, context in server_contexts(directory).items():
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            ports[name] = sock.getsockname()[1]
            await web.SockSite(runner, sock, ssl_context=context).start()
    print(json.dumps({"port": port, "tls": ports}), flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
