"""Echo servers of other libraries for the audit's tests: ``python tests/echo_servers.py
websockets|aiohttp PORT``. Configured as their Autobahn runs are: no message size
limit (the audit's large-message group sends up to 16 MiB), permessage-deflate offered
(used only by the cases that ask for it: groups 12, 13 and S3)."""

from __future__ import annotations

import asyncio
import sys


async def websockets_echo(port: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(echo, "127.0.0.1", port, max_size=None, compression="deflate"):
        print("ready", flush=True)
        await asyncio.Future()


async def aiohttp_echo(port: int) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, compress=True)
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Future()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    asyncio.run(websockets_echo(port) if kind == "websockets" else aiohttp_echo(port))
