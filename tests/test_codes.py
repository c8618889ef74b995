"""The code table as data: ``hubbub.codes`` against the protocol's numbers.

Error, disconnect and unsubscribe codes are the protocol's (PROTOCOL.md), unique,
with messages and close reasons that fit a close frame, and the reconnect
classification follows the protocol's ranges. The server sending each code over
real sockets is in test_codes_errors.py and test_codes_disconnects.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from hubbub.codes import (
    ALL_DISCONNECTS,
    ALL_ERRORS,
    ALL_UNSUBSCRIBES,
    Disconnect,
    DisconnectInfo,
    Error,
    Unsubscribe,
    disconnect_info,
)

# --- the table -----------------------------------------------------------------------

#: The protocol's numbers (PROTOCOL.md, Centrifugo's client protocol).
EXPECTED_ERRORS = {
    100: "INTERNAL",
    101: "UNAUTHORIZED",
    102: "UNKNOWN_CHANNEL",
    103: "PERMISSION_DENIED",
    104: "METHOD_NOT_FOUND",
    105: "ALREADY_SUBSCRIBED",
    106: "LIMIT_EXCEEDED",
    107: "BAD_REQUEST",
    108: "NOT_AVAILABLE",
    109: "TOKEN_EXPIRED",
    110: "EXPIRED",
    111: "TOO_MANY_REQUESTS",
    112: "UNRECOVERABLE_POSITION",
    113: "CONCURRENT_PAGINATION",
}
EXPECTED_DISCONNECTS = {
    3000: "CONNECTION_CLOSED",
    3001: "SHUTDOWN",
    3004: "SERVER_ERROR",
    3005: "EXPIRED",
    3006: "SUB_EXPIRED",
    3008: "SLOW",
    3009: "WRITE_ERROR",
    3010: "INSUFFICIENT_STATE",
    3011: "FORCE_RECONNECT",
    3012: "NO_PONG",
    3013: "TOO_MANY_REQUESTS",
    3500: "INVALID_TOKEN",
    3501: "BAD_REQUEST",
    3502: "STALE",
    3503: "FORCE_DISCONNECT",
    3504: "CONNECTION_LIMIT",
    3505: "CHANNEL_LIMIT",
    3506: "INAPPROPRIATE_PROTOCOL",
    3507: "PERMISSION_DENIED",
    3508: "NOT_AVAILABLE",
    3509: "TOO_MANY_ERRORS",
}


def test_error_codes_are_the_protocols() -> None:
    assert {e.code: e for e in ALL_ERRORS} == {
        code: getattr(Error, name) for code, name in EXPECTED_ERRORS.items()
    }


def test_disconnect_codes_are_the_protocols() -> None:
    assert {d.code: d for d in ALL_DISCONNECTS} == {
        code: getattr(Disconnect, name) for code, name in EXPECTED_DISCONNECTS.items()
    }


def test_unsubscribe_codes() -> None:
    assert [u.code for u in ALL_UNSUBSCRIBES] == [2000, 2500, 2501]
    assert not Unsubscribe.SERVER.resubscribe
    assert Unsubscribe.INSUFFICIENT_STATE.resubscribe
    assert Unsubscribe.EXPIRED.resubscribe


@pytest.mark.parametrize("table", [ALL_ERRORS, ALL_DISCONNECTS, ALL_UNSUBSCRIBES])
def test_codes_are_unique(table: tuple[Any, ...]) -> None:
    codes = [item.code for item in table]
    assert len(codes) == len(set(codes))
    assert len(table) == len(set(table))


def test_only_internal_and_too_many_requests_are_temporary() -> None:
    assert {e.code for e in ALL_ERRORS if e.temporary} == {100, 111}


def test_messages_and_reasons_are_set_and_reasons_fit_a_close_frame() -> None:
    assert all(e.message for e in ALL_ERRORS)
    assert all(u.reason for u in ALL_UNSUBSCRIBES)
    for d in ALL_DISCONNECTS:
        assert d.reason
        assert len(d.reason.encode()) <= 32


@pytest.mark.parametrize("info", ALL_DISCONNECTS, ids=lambda d: str(d.code))
def test_table_disconnects_reconnect_below_3500(info: DisconnectInfo) -> None:
    assert info.reconnect is (info.code < 3500)
    assert 3000 <= info.code < 4000


@pytest.mark.parametrize(
    ("code", "reconnect"),
    [
        (2999, False),
        (3000, True),
        (3499, True),
        (3500, False),
        (3999, False),
        (4000, True),
        (4499, True),
        (4500, False),
        (4999, False),
        (1000, False),
    ],
)
def test_reconnect_classification_ranges(code: int, reconnect: bool) -> None:
    assert DisconnectInfo(code, "x").reconnect is reconnect


def test_disconnect_info() -> None:
    assert disconnect_info(3503) is Disconnect.FORCE_DISCONNECT
    assert disconnect_info(3503, "go away") == DisconnectInfo(3503, "go away")
    assert disconnect_info(4100) == DisconnectInfo(4100, "")
    assert disconnect_info(4100, "custom") == DisconnectInfo(4100, "custom")
    for info in ALL_DISCONNECTS:
        assert disconnect_info(info.code) is info
