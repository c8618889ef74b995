"""POSTs of webhook batches: signed, with a timeout, over a kept-alive session.

Rule: ``post`` returns True only for a 2xx answer; every other outcome
(refused, timed out, another status) is False with the reason kept in
``last_failure`` for the one log line the service writes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import TYPE_CHECKING

from hubbub.config.backend import WebhooksConfig
from hubbub.proxy.tls import ssl_context
from hubbub.webhooks.events import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

if TYPE_CHECKING:
    import aiohttp


class Sender:
    """POSTs to ``webhooks.endpoint``."""

    def __init__(self, config: WebhooksConfig) -> None:
        self.url = config.endpoint
        self.secret = config.secret
        self.timeout = config.timeout
        self._static = dict(config.static_headers)
        self._ssl: ssl.SSLContext | bool = ssl_context(config.tls, "webhooks.tls") or True
        self._session: aiohttp.ClientSession | None = None
        self.last_failure = ""

    async def post(self, body: bytes) -> bool:
        import aiohttp  # with the first batch, not at start-up: most nodes send no webhooks

        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(), trust_env=False
            )
        timestamp = str(int(time.time()))
        headers = {
            **self._static,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self.secret, timestamp, body),
        }
        try:
            async with asyncio.timeout(self.timeout):
                async with self._session.post(
                    self.url, data=body, headers=headers, ssl=self._ssl, allow_redirects=False
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        return True
                    self.last_failure = f"HTTP status {response.status}"
        except TimeoutError:
            self.last_failure = f"no answer within {self.timeout:g}s"
        except aiohttp.ClientConnectorError as exc:
            self.last_failure = f"can not connect: {exc.os_error.strerror or exc}"
        except (aiohttp.ClientError, OSError) as exc:
            self.last_failure = f"{type(exc).__name__}: {exc}"
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
