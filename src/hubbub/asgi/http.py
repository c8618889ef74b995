"""Plain HTTP under ASGI: read a bounded request body, send an ``ApiAnswer`` whole.

Rule: every plain answer of the ASGI application (API, health, refusals of the
streaming endpoints) goes out through ``respond``, and every request body is
read through ``read_body`` with the bound of the endpoint that reads it.
"""

from __future__ import annotations

from hubbub.asgi.websocket import Message, Receive, Send
from hubbub.server.http_answer import ApiAnswer


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None past ``limit`` bytes (chunked bodies have no length);
    b"" when the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, answer: ApiAnswer) -> None:
    """A whole HTTP response from an ``ApiAnswer`` (a 204 has neither body nor length)."""
    headers: list[tuple[bytes, bytes]] = []
    if answer.status != 204:
        headers += [
            (b"content-type", answer.content_type.encode()),
            (b"content-length", str(len(answer.body)).encode()),
        ]
    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body if answer.status != 204 else b""})
