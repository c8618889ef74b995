"""The application logic of the test backends, shared by the aiohttp, FastAPI and gRPC ones.

Each event handler takes the proxy request as JSON-shaped data (payloads
decoded: ``data`` and ``meta`` are JSON values whatever the encoding) and the
forwarded headers, and returns the response as JSON-shaped data (payloads as
JSON values; the transports encode them). What it decides, by input:

connect: client ``data`` {"deny": true} -> disconnect 4501; {"fail": true} ->
    error 1001; else user from the ``cookie`` header (``user=NAME``), else
    data.user, else "proxy-user"; data.ttl -> expire_at; data.channels,
    data.subs -> server-side subscriptions.
refresh: users starting with "expire" -> expired; else extended by EXTEND s.
subscribe: "proxied:deny..." -> error 4403; "proxied:kick" -> disconnect 4505;
    "...:short..." -> expires in SHORT s; "...:nopresence" -> override presence off.
publish: "proxied:readonly" -> error 4030; else data rewritten (text upper-cased,
    "by": user) with tags and an idempotency key.
rpc: "sum", "whoami", "kick" (disconnect 4000), "sleep" (waits data.seconds), else 404.
sub_refresh: channels ending in ":expire" -> expired; else extended by EXTEND s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

EXTEND = 3  # seconds a refresh extends a connection or subscription
SHORT = 2  # seconds until a ":short" subscription expires

Message = dict[str, Any]


def _user_from(headers: dict[str, str], data: Any) -> str:
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "user" and value:
            return value
    if isinstance(data, dict) and data.get("user"):
        return str(data["user"])
    return "proxy-user"


def connect(request: Message, headers: dict[str, str]) -> Message:
    data = request.get("data") or {}
    if data.get("deny"):
        return {"disconnect": {"code": 4501, "reason": "unauthorized"}}
    if data.get("fail"):
        return {"error": {"code": 1001, "message": "no such user"}}
    user = _user_from(headers, data)
    result: Message = {
        "user": user,
        "info": {"name": user, "via": "proxy"},
        "data": {"welcome": user},
        "meta": {"plan": "gold"},
    }
    if "ttl" in data:
        result["expire_at"] = int(time.time()) + int(data["ttl"])
    if "channels" in data:
        result["channels"] = data["channels"]
    if "subs" in data:
        result["subs"] = {ch: {"info": {"seat": 1}, "data": {"hello": ch}} for ch in data["subs"]}
    return {"result": result}


def refresh(request: Message, headers: dict[str, str]) -> Message:
    if request.get("user", "").startswith("expire"):
        return {"result": {"expired": True}}
    return {"result": {"expire_at": int(time.time()) + EXTEND, "info": {"refreshed": True}}}


def subscribe(request: Message, headers: dict[str, str]) -> Message:
    channel = request["channel"]
    if channel.startswith("proxied:deny"):
        return {"error": {"code": 4403, "message": "forbidden"}}
    if channel == "proxied:kick":
        return {"disconnect": {"code": 4505, "reason": "kicked"}}
    result: Message = {"info": {"sub_by": request.get("user", "")}, "data": {"welcome": channel}}
    if ":short" in channel:
        result["expire_at"] = int(time.time()) + SHORT
    if channel.endswith(":nopresence"):
        result["override"] = {"presence": {"value": False}}
    return {"result": result}


def publish(request: Message, headers: dict[str, str]) -> Message:
    if request["channel"] == "proxied:readonly":
        return {"error": {"code": 4030, "message": "read only"}}
    data = request.get("data") or {}
    user = request.get("user", "")
    return {
        "result": {
            "data": {"text": str(data.get("text", "")).upper(), "by": user, "rewritten": True},
            "tags": {"by": user},
            "idempotency_key": f"k-{data.get('n', '')}" if "n" in data else "",
        }
    }


async def rpc(request: Message, headers: dict[str, str]) -> Message:
    method = request.get("method", "").rsplit(":", 1)[-1]  # without the RPC namespace
    data = request.get("data") or {}
    if method == "sum":
        return {"result": {"data": {"sum": data["a"] + data["b"]}}}
    if method == "whoami":
        return {"result": {"data": {"user": request.get("user"), "meta": request.get("meta")}}}
    if method == "kick":
        return {"disconnect": {"code": 4000, "reason": "rpc kick"}}
    if method == "sleep":
        await asyncio.sleep(float(data.get("seconds", 1)))
        return {"result": {"data": {"slept": True}}}
    return {"error": {"code": 404, "message": "unknown method"}}


def sub_refresh(request: Message, headers: dict[str, str]) -> Message:
    if request["channel"].endswith(":expire"):
        return {"result": {"expired": True}}
    return {"result": {"expire_at": int(time.time()) + EXTEND, "info": {"sub_refreshed": True}}}


async def handle(event: str, request: Message, headers: dict[str, str]) -> Message:
    """The response to ``request`` for ``event`` (a proxy endpoint's logic)."""
    if event == "rpc":
        return await rpc(request, headers)
    handler = {
        "connect": connect,
        "refresh": refresh,
        "subscribe": subscribe,
        "publish": publish,
        "sub_refresh": sub_refresh,
    }[event]
    return handler(request, headers)
