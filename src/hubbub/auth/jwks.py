"""Public keys from a JWKS endpoint, fetched over HTTP and cached by key id.

Rule: keys are fetched asynchronously (never blocking the event loop), kept
for ``ttl`` seconds, and an unknown ``kid`` triggers at most one refetch per
``refetch_interval`` so a flood of tokens with made-up key ids cannot turn the
server into a load generator against the identity provider.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jwt

log = logging.getLogger("hubbub.jwks")

Fetch = Callable[[str], Awaitable[str]]


async def http_get(url: str) -> str:
    """The body at ``url``; a failed request raises ``ConnectionError``."""
    import aiohttp  # only a node that verifies tokens with JWKS needs the HTTP client

    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
            response.raise_for_status()
            return await response.text()
    except aiohttp.ClientError as exc:
        raise ConnectionError(str(exc) or type(exc).__name__) from exc


class JwksKeys:
    def __init__(
        self,
        url: str,
        *,
        ttl: float = 300.0,
        refetch_interval: float = 10.0,
        fetch: Fetch = http_get,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._ttl = ttl
        self._refetch_interval = refetch_interval
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK | None:
        """The key with id ``kid`` (None if the endpoint does not have it)."""
        now = self._clock()
        if now - self._fetched_at > self._ttl or (
            kid not in self._keys and now - self._fetched_at > self._refetch_interval
        ):
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            if self._clock() - self._fetched_at <= self._refetch_interval:
                return  # another caller refreshed while we waited
            self._fetched_at = self._clock()
            import jwt  # imported with the first token (tokens.py): a lookup

            try:
                keys = jwt.PyJWKSet.from_json(await self._fetch(self.url))
            except (OSError, TimeoutError, jwt.PyJWTError, ValueError) as exc:
                log.warning("JWKS fetch from %s failed: %s", self.url, exc)
                return
            self._keys = {k.key_id: k for k in keys.keys if k.key_id}

    def __repr__(self) -> str:
        return f"JwksKeys({self.url!r}, {len(self._keys)} keys)"
