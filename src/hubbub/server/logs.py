"""Keep what peers send out of the error log.

Rule: a malformed HTTP request (bad handshake: too many headers, a line too
long, garbage) is the peer's fault; aiohttp logs it at ERROR with a
traceback, which lets anyone flood the log, one traceback per TCP connection.
Those records become one INFO line without traceback; real errors stay ERROR.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError


class PeerErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = f"{record.getMessage()}: {exc.code} {exc.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.INFO
            record.levelname = "INFO"
        return True


_FILTER = PeerErrorFilter()


def quiet_peer_errors() -> None:
    """Install the filter on aiohttp's server logger (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
