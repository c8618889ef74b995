"""A shared poll backend for the tests, run as its own process.

    python tests/poll_backend.py SECRET        prints "PORT <n>" when listening

POST /refresh   Centrifugo's shared poll refresh proxy: {channel, items: [{key, version}]}
                -> {"result": {"items": [{key, data, version}], "epoch": E}} for the keys
                it has (versioned answers carry versions; removed keys {key, removed})
POST /sign      {channel, keys} with ?user=U -> {"keys": [...], "signature": S}; keys
                listed in "revoke" (see /set) are left out
POST /set       {"key": K, "data": D} (version bumped), {"key": K, "removed": true},
                {"epoch": E}, {"fail": "error" | "http" | "slow" | ""}, {"revoke": [...]}
GET  /stats     {"requests": [[channel, [keys...]], ...], "max_in_flight": N}
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sys
import time
from typing import Any

from aiohttp import web

SECRET = sys.argv[1] if len(sys.argv) > 1 else "poll-secret"
STORE: dict[str, tuple[Any, int]] = {}  # key -> (data, version)
REMOVED: set[str] = set()
STATE: dict[str, Any] = {"epoch": "", "fail": "", "revoke": []}
REQUESTS: list[tuple[str, list[str]]] = []
FLIGHT = {"now": 0, "max": 0}


def sign(user: str, channel: str, keys: list[str], ttl: int = 3600) -> str:
    iat = int(time.time())
    exp = iat + ttl if ttl else 0
    keys_hash = hashlib.sha256("\x00".join(keys).encode()).hexdigest()
    payload = f"{iat}:{exp}:{user}:{channel}:{keys_hash}"
    mac = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{iat}:{exp}:{mac}"


async def refresh(request: web.Request) -> web.Response:
    body = await request.json()
    keys = [item["key"] for item in body.get("items", [])]
    REQUESTS.append((body.get("channel", ""), keys))
    FLIGHT["now"] += 1
    FLIGHT["max"] = max(FLIGHT["max"], FLIGHT["now"])
    try:
        if STATE["fail"] == "slow":
            await asyncio.sleep(0.3)
        if STATE["fail"] == "http":
            return web.Response(status=500, text="down")
        if STATE["fail"] == "error":
            return web.json_response({"error": {"code": 1000, "message": "backend unavailable"}})
        items = []
        for key in keys:
            if key in REMOVED:
                items.append({"key": key, "removed": True})
            elif key in STORE:
                data, version = STORE[key]
                items.append({"key": key, "data": data, "version": version})
        result: dict[str, Any] = {"items": items}
        if STATE["epoch"]:
            result["epoch"] = STATE["epoch"]
        return web.json_response({"result": result})
    finally:
        FLIGHT["now"] -= 1


async def sign_keys(request: web.Request) -> web.Response:
    body = await request.json()
    keys = [k for k in body["keys"] if k not in STATE["revoke"]]
    user = request.query.get("user", "")
    ttl = int(request.query.get("ttl", "3600"))
    return web.json_response({"keys": keys, "signature": sign(user, body["channel"], keys, ttl)})


async def set_value(request: web.Request) -> web.Response:
    body = await request.json()
    if "key" in body:
        key = body["key"]
        if body.get("removed"):
            REMOVED.add(key)
        else:
            REMOVED.discard(key)
            version = STORE[key][1] + 1 if key in STORE else 1
            STORE[key] = (body["data"], body.get("version", version))
    for name in ("epoch", "fail", "revoke"):
        if name in body:
            STATE[name] = body[name]
    return web.json_response({})


async def stats(request: web.Request) -> web.Response:
    return web.json_response({"requests": REQUESTS, "max_in_flight": FLIGHT["max"]})


async def main() -> None:
    app = web.Application()
    app.router.add_post("/refresh", refresh)
    app.router.add_post("/sign", sign_keys)
    app.router.add_post("/set", set_value)
    app.router.add_get("/stats", stats)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"PORT {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
