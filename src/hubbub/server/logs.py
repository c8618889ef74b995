"""Log output: one line per event, text or JSON, and peers kept out of the error log.

Rule 1: a malformed HTTP request (bad handshake: too many headers, a line too
long, garbage) is the peer's fault; aiohttp logs it at ERROR with a
traceback, which lets anyone flood the log, one traceback per TCP connection.
Those records become one INFO line without traceback; real errors stay ERROR.
Rule 2: every record is one line (text: ``key=value`` fields after the
message; JSON: one object), so a log shipper never splits an event;
``record.fields`` (see ``hubbub.hub.eventlog``) carries the structured part.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from hubbub.config.model import LogConfig
from hubbub.hub.eventlog import TRACE


class PeerErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        # Installed on aiohttp's logger once aiohttp serves: importing it here is a lookup.
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            # aiohttp's message is "Error handling request from %s" with the peer.
            args = record.args if isinstance(record.args, tuple) else ()
            record.fields = {"addr": str(args[0]) if args else ""}
            record.msg = f"refused request: {exc.code} {exc.message}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.INFO:
                record.levelno = logging.INFO
                record.levelname = "INFO"
        return True


_FILTER = PeerErrorFilter()


def quiet_peer_errors() -> None:
    """Install the filter on aiohttp's server logger (idempotent)."""
    logger = logging.getLogger("aiohttp.server")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)


# --- the process's log output (hubbub serve) -----------------------------------------

#: ``log.level`` -> logging level; "none" is above everything.
LEVELS = {
    "none": logging.CRITICAL + 10,
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}
#: JSON level names as Centrifugo's logger (zerolog) writes them.
_JSON_LEVELS = {TRACE: "trace", logging.DEBUG: "debug", logging.INFO: "info"}
_JSON_LEVELS |= {logging.WARNING: "warn", logging.ERROR: "error", logging.CRITICAL: "fatal"}


def _show(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n'):
        return text
    return json.dumps(text, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``: one line per record."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            line += "".join(f" {key}={_show(value)}" for key, value in fields.items())
        # A message or traceback spanning lines would split one event in a log shipper.
        return line.replace("\n", "\n    ")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the keys Centrifugo's logs use (``level``,
    ``time``, ``message``), the logger name, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "level": _JSON_LEVELS.get(record.levelno, record.levelname.lower()),
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + time.strftime("%z", time.localtime(record.created)),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields: dict[str, Any] | None = getattr(record, "fields", None)
        if fields:
            for key, value in fields.items():
                entry.setdefault(key, value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup_logging(config: LogConfig, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to stderr (or ``log.file``) in ``log.format``, at ``log.level``.

    Replaces the root logger's handlers (a second call reconfigures); returns the
    handler. Raises OSError when ``log.file`` cannot be opened.
    """
    logging.addLevelName(TRACE, "TRACE")
    handler: logging.Handler
    if config.file:
        handler = logging.FileHandler(config.file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS.get(config.level, logging.INFO))
    quiet_peer_errors()
    return handler
