"""The exception tree of hubbub.

    HubbubError
    ├── ConfigError            a configuration value is wrong; names the key
    │                          (``problems``: every problem found in one load)
    ├── ClientError            a command fails; becomes a reply `error` (codes.Error)
    └── DisconnectRequest      the connection must close with a code (codes.Disconnect)

Rule: these are raised inside hubbub and by application hooks; everything else
a hook raises is an internal error (100) and is logged. Library exceptions are
mapped to these at the one boundary where they enter (``raise ... from exc``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# Imported where used: codes imports msgspec (~10 ms), which ``hubbub serve`` needs
# only once it listens (server/early.py).
if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo, ErrorInfo


class HubbubError(Exception):
    """Base of every exception hubbub raises on purpose."""


class ConfigError(HubbubError):
    """A configuration value is invalid or a combination is unsafe.

    ``key`` is the dotted Centrifugo-style key (``channel.namespaces[0].history_ttl``).
    A load that finds several problems raises one ConfigError for all of them:
    ``problems`` holds each (one line each in ``str()``); ``key`` and
    ``message`` are the first one's. A single problem is its own ``problems``.
    """

    def __init__(self, key: str, message: str, *, problems: tuple[ConfigError, ...] = ()) -> None:
        text = "\n".join(str(p) for p in problems) if problems else None
        super().__init__(text or (f"{key}: {message}" if key else message))
        self.key = key
        self.message = message
        self.problems: tuple[ConfigError, ...] = problems or (self,)

    @classmethod
    def combine(cls, problems: list[ConfigError]) -> ConfigError:
        """One error for ``problems`` (at least one): itself when there is only one."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        return cls(first.key, first.message, problems=tuple(problems))


class ClientError(HubbubError):
    """A command is refused: the reply carries this error; the connection stays open.

    Hooks raise it to deny with a code: ``raise ClientError(Error.PERMISSION_DENIED)``
    or with an application code: ``raise ClientError.custom(4001, "no seats left")``.
    """

    def __init__(self, error: ErrorInfo, message: str | None = None) -> None:
        if message is not None:
            from hubbub.codes import ErrorInfo

            error = ErrorInfo(error.code, message, error.temporary)
        super().__init__(f"{error.code}: {error.message}")
        self.error = error

    @classmethod
    def custom(cls, code: int, message: str, *, temporary: bool = False) -> ClientError:
        """An application error; Centrifugo reserves 400-1999 for applications."""
        from hubbub.codes import ErrorInfo

        return cls(ErrorInfo(code, message, temporary))


class DisconnectRequest(HubbubError):
    """The connection must be closed with this disconnect code and reason.

    ``detail`` says why, for the log line of the disconnect (never sent to the client).
    """

    def __init__(self, disconnect: DisconnectInfo, *, detail: str = "") -> None:
        super().__init__(f"{disconnect.code}: {disconnect.reason}")
        self.disconnect = disconnect
        self.detail = detail
