"""Broadcast server on the ``websockets`` library: each message goes to every other client.

Uses ``websockets.broadcast()`` (one frame write per client, no coalescing), on uvloop.
Usage: python websockets_broadcast.py --port 9000   (127.0.0.1 only)
"""

from __future__ import annotations

import argparse

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()  # one server per process: a module-level set is fine


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for message in ws:
            broadcast(CLIENTS - {ws}, message)
    finally:
        CLIENTS.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9000)
    uvloop.run(main(parser.parse_args().port))
