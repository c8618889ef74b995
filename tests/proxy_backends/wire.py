"""The HTTP proxy's JSON as the test backends read and write it, and their request log.

A request's payloads arrive as embedded JSON, or as base64 (``b64data``)
when the proxy has ``binary_encoding``: both are decoded to JSON values for
``logic``. A response to a binary request carries ``b64data``/``b64info``,
so hubbub's decoding of base64 answers is exercised too.
"""

from __future__ import annotations

import base64
import json
from typing import Any

Message = dict[str, Any]
#: Result fields holding JSON payloads, with their base64 twins.
PAYLOADS = {"data": "b64data", "info": "b64info"}


def decode_request(body: bytes) -> tuple[Message, bool]:
    """The request with ``data`` a JSON value, and whether it came base64-encoded."""
    request: Message = json.loads(body)
    binary = request.get("encoding") == "binary"
    if "b64data" in request:
        request["data"] = json.loads(base64.b64decode(request.pop("b64data")))
        request["_came_as_b64data"] = True  # for the tests' assertions
    return request, binary


def encode_response(response: Message, binary: bool) -> bytes:
    result = response.get("result")
    if binary and isinstance(result, dict):
        for field, twin in PAYLOADS.items():
            if field in result:
                text = json.dumps(result.pop(field)).encode()
                result[twin] = base64.b64encode(text).decode()
    return json.dumps(response, indent=2).encode()  # pretty: hubbub must make it one line


class RequestLog:
    """Every request a backend received: event, body (decoded) and headers."""

    def __init__(self) -> None:
        self.entries: list[Message] = []

    def add(self, event: str, request: Message, headers: dict[str, str]) -> None:
        self.entries.append({"event": event, "request": request, "headers": headers})
