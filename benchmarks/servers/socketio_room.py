"""python-socketio room broadcast: each ``m`` event is emitted to the room, minus the sender.

Every client joins room ``r`` on connect. aiohttp on uvloop.
Usage: python socketio_room.py --port 9000   (127.0.0.1 only)
"""

from __future__ import annotations

import argparse
import asyncio

import socketio
import uvloop
from aiohttp import web

sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins="*")


@sio.event
async def connect(sid: str, environ: dict[str, object]) -> None:
    await sio.enter_room(sid, "r")


@sio.on("m")
async def relay(sid: str, data: object) -> None:
    await sio.emit("m", data, room="r", skip_sid=sid)


async def main(port: int) -> None:
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    uvloop.run(main(parser.parse_args().port))
