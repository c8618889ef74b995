"""The HTTP proxy transport: one POST of JSON per event, over kept-alive connections.

Rule: every HTTP proxy of a node shares one aiohttp ClientSession (one
connection pool, connections kept alive between calls); a call either returns
the status and body, or raises ``TransportFailure`` saying what went wrong in
a few words (refused, timed out, reset). Nothing here decides what a status
or a body means: ``client`` does.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hubbub.config.backend import ProxyOptions
from hubbub.proxy.tls import CLOSED, ssl_context, verify_failure

if TYPE_CHECKING:
    import aiohttp

#: Connections open to backends at once (all HTTP proxies of the node); calls
#: beyond wait for a free one, within their timeout.
POOL_LIMIT = 256
#: An idle kept-alive connection is closed after this many seconds.
KEEPALIVE = 30.0
#: Largest answer read from a backend.
MAX_ANSWER = 4 * 1024 * 1024


class TransportFailure(Exception):
    """The call did not produce an answer; ``str()`` says why, for the log line."""


class HttpPool:
    """The node's HTTP client session, opened on first use, closed with the hub."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        # aiohttp is imported by the first call, not with hubbub: most nodes proxy nothing.
        import aiohttp

        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=POOL_LIMIT, keepalive_timeout=KEEPALIVE, enable_cleanup_closed=True
            )
            # No cookies, no proxy from the environment: calls go where the config says.
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpTransport:
    """POSTs to one endpoint."""

    def __init__(self, pool: HttpPool, options: ProxyOptions, key: str) -> None:
        self.pool = pool
        self.url = options.endpoint
        self.timeout = options.timeout
        self._static = tuple(options.http.static_headers)
        self._ssl: ssl.SSLContext | bool = ssl_context(options.http.tls, f"{key}.http.tls") or True
        self._server_hostname = options.http.tls.server_name or None
        self._tls = self.url.startswith("https://")

    async def post(self, body: bytes, forwarded: Sequence[tuple[str, str]]) -> tuple[int, bytes]:
        """POST ``body``; the status and the answer, or TransportFailure."""
        headers = dict(self._static)
        headers.update(forwarded)  # headers of the client's request win over static ones
        headers["Content-Type"] = "application/json"
        import aiohttp  # loaded by the pool already: a lookup

        try:
            async with asyncio.timeout(self.timeout):
                async with self.pool.session().post(
                    self.url,
                    data=body,
                    headers=headers,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname,
                    allow_redirects=False,
                ) as response:
                    answer = await response.content.read(MAX_ANSWER + 1)
                    if len(answer) > MAX_ANSWER:
                        raise TransportFailure(f"answer larger than {MAX_ANSWER} bytes")
                    return response.status, answer
        except TimeoutError:
            raise TransportFailure(f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            host = self._server_hostname or exc.host
            raise TransportFailure(verify_failure(exc.certificate_error, host)) from None
        except aiohttp.ClientConnectorSSLError as exc:
            reason = getattr(exc.os_error, "reason", None) or exc.os_error.strerror or exc
            raise TransportFailure(
                f"TLS: the handshake with the backend failed: {reason}"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise TransportFailure(f"can not connect: {exc.os_error.strerror or exc}") from None
        except aiohttp.ServerDisconnectedError:
            raise TransportFailure(self._closed("closed")) from None
        except aiohttp.ClientOSError as exc:
            # A backend refusing a client certificate closes, or resets, the connection.
            if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                raise TransportFailure(self._closed("reset")) from None
            raise TransportFailure(f"{type(exc).__name__}: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportFailure(f"{type(exc).__name__}: {exc}") from None

    def _closed(self, how: str) -> str:
        """The cause when the backend ended the connection without an answer."""
        return CLOSED if self._tls else f"the backend {how} the connection without answering"
