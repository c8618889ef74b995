"""An HTTP answer without a web framework: what the API and the stream gates decide.

Rule: the framework-neutral parts of the server (the HTTP API's ``admit`` and
``answer``, the streaming endpoints' gate) decide a status, a body and headers
as an ``ApiAnswer``; the aiohttp and ASGI adapters turn it into their response.
Nothing here imports a web framework, so the WebSocket path never loads one.
"""

from __future__ import annotations

import msgspec


class ApiAnswer(msgspec.Struct, frozen=True):
    """An HTTP response of the API, whatever serves it."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # more response headers (CORS)

    @classmethod
    def refusal(cls, status: int, text: str) -> ApiAnswer:
        return cls(status, (text + "\n").encode(), "text/plain; charset=utf-8")
