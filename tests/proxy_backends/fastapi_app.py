"""The same proxy backend written with FastAPI (on uvicorn), run as its own process.

    python -m tests.proxy_backends.fastapi_app   -> prints the port, serves until killed

Same routes and logic as ``aiohttp_app`` (see there).
"""

from __future__ import annotations

import asyncio
import json
import socket

import uvicorn
from fastapi import FastAPI, Request, Response

from tests.proxy_backends import logic
from tests.proxy_backends.wire import RequestLog, decode_request, encode_response

SLOW = 3.0

app = FastAPI()
requests = RequestLog()


async def _answer(mode: str, name: str, request: Request) -> Response:
    body, binary = decode_request(await request.body())
    headers = {k.lower(): v for k, v in request.headers.items()}
    requests.add(name, body, headers)
    if mode == "slow":
        await asyncio.sleep(SLOW)
    elif mode == "status500":
        return Response("internal error", status_code=500)
    elif mode == "status404":
        return Response("no such thing", status_code=404)
    elif mode == "garbage":
        return Response(b'{"result": {"user": ', media_type="application/json")
    response = await logic.handle(name, body, headers)
    return Response(encode_response(response, binary), media_type="application/json")


@app.post("/{name}")
async def event(name: str, request: Request) -> Response:
    return await _answer("", name, request)


@app.post("/{mode}/{name}")
async def event_with_mode(mode: str, name: str, request: Request) -> Response:
    return await _answer(mode, name, request)


@app.get("/requests")
async def log() -> list[dict[str, object]]:
    return requests.entries


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue from now on, before uvicorn runs
    print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
