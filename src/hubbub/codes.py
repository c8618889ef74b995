"""Every error, unsubscribe and disconnect code hubbub can send, defined once as data.

Rule: no other module writes a code number or its message; they name a member
here. The numbers and their meaning are those of the Centrifugo client
protocol, so the SDKs react to them as they do with Centrifugo (retry on a
temporary error, reconnect on a reconnect-class disconnect, stop on a final one).
"""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec

_T = TypeVar("_T")


class ErrorInfo(msgspec.Struct, frozen=True):
    """An error a command reply can carry: `{"error": {"code", "message", "temporary"}}`."""

    code: int
    message: str
    temporary: bool = False


class Error:
    """Command errors (reply `error` field). Applications may use 400-1999."""

    INTERNAL: Final = ErrorInfo(100, "internal server error", True)
    UNAUTHORIZED: Final = ErrorInfo(101, "unauthorized")
    UNKNOWN_CHANNEL: Final = ErrorInfo(102, "unknown channel")
    PERMISSION_DENIED: Final = ErrorInfo(103, "permission denied")
    METHOD_NOT_FOUND: Final = ErrorInfo(104, "method not found")
    ALREADY_SUBSCRIBED: Final = ErrorInfo(105, "already subscribed")
    LIMIT_EXCEEDED: Final = ErrorInfo(106, "limit exceeded")
    BAD_REQUEST: Final = ErrorInfo(107, "bad request")
    NOT_AVAILABLE: Final = ErrorInfo(108, "not available")
    TOKEN_EXPIRED: Final = ErrorInfo(109, "token expired")
    EXPIRED: Final = ErrorInfo(110, "expired")
    TOO_MANY_REQUESTS: Final = ErrorInfo(111, "too many requests", True)
    UNRECOVERABLE_POSITION: Final = ErrorInfo(112, "unrecoverable position")
    CONCURRENT_PAGINATION: Final = ErrorInfo(113, "concurrent pagination")


class UnsubscribeInfo(msgspec.Struct, frozen=True):
    """A server-side unsubscribe push: `{"unsubscribe": {"code", "reason"}}`."""

    code: int
    reason: str

    @property
    def resubscribe(self) -> bool:
        """Codes from 2500 up tell the SDK to subscribe again (and recover)."""
        return self.code >= 2500


class Unsubscribe:
    """Unsubscribe push codes: 2000-2499 final, 2500+ resubscribe."""

    SERVER: Final = UnsubscribeInfo(2000, "server unsubscribe")
    INSUFFICIENT_STATE: Final = UnsubscribeInfo(2500, "insufficient state")
    EXPIRED: Final = UnsubscribeInfo(2501, "subscription expired")


class DisconnectInfo(msgspec.Struct, frozen=True):
    """A disconnect: the WebSocket close code and a reason of at most 32 bytes."""

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        """3000-3499 and 4000-4499 ask the SDK to reconnect; the rest are final."""
        return 3000 <= self.code < 3500 or 4000 <= self.code < 4500


class Disconnect:
    """Disconnect codes (WebSocket close codes)."""

    # Reconnect: the client should come back.
    CONNECTION_CLOSED: Final = DisconnectInfo(3000, "connection closed")
    SHUTDOWN: Final = DisconnectInfo(3001, "shutdown")
    SERVER_ERROR: Final = DisconnectInfo(3004, "internal server error")
    EXPIRED: Final = DisconnectInfo(3005, "connection expired")
    SUB_EXPIRED: Final = DisconnectInfo(3006, "subscription expired")
    SLOW: Final = DisconnectInfo(3008, "slow")
    WRITE_ERROR: Final = DisconnectInfo(3009, "write error")
    INSUFFICIENT_STATE: Final = DisconnectInfo(3010, "insufficient state")
    FORCE_RECONNECT: Final = DisconnectInfo(3011, "force reconnect")
    NO_PONG: Final = DisconnectInfo(3012, "no pong")
    TOO_MANY_REQUESTS: Final = DisconnectInfo(3013, "too many requests")
    # Final: the client must not reconnect with the same credentials.
    INVALID_TOKEN: Final = DisconnectInfo(3500, "invalid token")
    BAD_REQUEST: Final = DisconnectInfo(3501, "bad request")
    STALE: Final = DisconnectInfo(3502, "stale")
    FORCE_DISCONNECT: Final = DisconnectInfo(3503, "force disconnect")
    CONNECTION_LIMIT: Final = DisconnectInfo(3504, "connection limit")
    CHANNEL_LIMIT: Final = DisconnectInfo(3505, "channel limit")
    INAPPROPRIATE_PROTOCOL: Final = DisconnectInfo(3506, "inappropriate protocol")
    PERMISSION_DENIED: Final = DisconnectInfo(3507, "permission denied")
    NOT_AVAILABLE: Final = DisconnectInfo(3508, "not available")
    TOO_MANY_ERRORS: Final = DisconnectInfo(3509, "too many errors")


def _members(namespace: type, kind: type[_T]) -> tuple[_T, ...]:
    return tuple(v for v in vars(namespace).values() if isinstance(v, kind))


ALL_ERRORS: Final[tuple[ErrorInfo, ...]] = _members(Error, ErrorInfo)
ALL_UNSUBSCRIBES: Final[tuple[UnsubscribeInfo, ...]] = _members(Unsubscribe, UnsubscribeInfo)
ALL_DISCONNECTS: Final[tuple[DisconnectInfo, ...]] = _members(Disconnect, DisconnectInfo)
_DISCONNECT_BY_CODE: Final = {d.code: d for d in ALL_DISCONNECTS}


def disconnect_info(code: int, reason: str = "") -> DisconnectInfo:
    """The DisconnectInfo for a code, using the table's reason unless one is given."""
    known = _DISCONNECT_BY_CODE.get(code)
    if known is not None and not reason:
        return known
    return DisconnectInfo(code, reason or (known.reason if known else ""))
