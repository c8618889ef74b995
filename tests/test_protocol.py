"""The sans-I/O client protocol state machine: bytes in, commands or a violation out.

No sockets and no event loop: ``ClientProtocol.receive_frame`` is fed frames
directly. Every refusal is a ``ProtocolViolation`` carrying disconnect 3501
(bad request), never any other exception, whatever the input.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hubbub.codes import Disconnect
from hubbub.protocol import ClientProtocol, ProtocolViolation, Received, State
from hubbub.protocol.codec import METHODS

#: Methods with a reply (every one but ``send``), other than connect.
REPLY_METHODS = [m for m in METHODS if m not in ("connect", "send")]


def line(command: dict[str, Any]) -> str:
    return json.dumps(command)


def frame(*commands: dict[str, Any] | str) -> str:
    return "\n".join(c if isinstance(c, str) else line(c) for c in commands)


def connected() -> ClientProtocol:
    """A protocol whose connect the hub accepted."""
    protocol = ClientProtocol()
    received = protocol.receive_frame(frame({"id": 1, "connect": {}}))
    assert [r.method for r in received] == ["connect"]
    assert protocol.state is State.CONNECTING
    protocol.accept_connect()
    assert protocol.state is State.CONNECTED
    return protocol


def violation(protocol: ClientProtocol, data: str | bytes) -> ProtocolViolation:
    """Feed ``data``: it must be refused with 3501 and close the protocol."""
    with pytest.raises(ProtocolViolation) as info:
        protocol.receive_frame(data)
    assert info.value.disconnect is Disconnect.BAD_REQUEST
    assert info.value.disconnect.code == 3501
    assert protocol.state is State.CLOSED
    assert protocol.close_reason is Disconnect.BAD_REQUEST
    return info.value


# --- connect first -------------------------------------------------------------------


def test_connect_first_then_commands() -> None:
    protocol = connected()
    received = protocol.receive_frame(frame({"id": 2, "subscribe": {"channel": "chat:a"}}))
    assert len(received) == 1
    assert received[0].method == "subscribe"
    assert received[0].command.id == 2
    assert received[0].command.subscribe is not None
    assert received[0].command.subscribe.channel == "chat:a"


@pytest.mark.parametrize("method", [*REPLY_METHODS, "send"])
def test_any_command_before_connect_is_3501(method: str) -> None:
    protocol = ClientProtocol()
    detail = violation(protocol, frame({"id": 1, method: {}})).detail
    assert "before connect" in detail


def test_second_connect_is_3501_while_connecting_and_when_connected() -> None:
    protocol = ClientProtocol()
    protocol.receive_frame(frame({"id": 1, "connect": {}}))
    violation(protocol, frame({"id": 2, "connect": {}}))
    violation(connected(), frame({"id": 2, "connect": {}}))


def test_two_connects_in_one_frame_are_3501() -> None:
    violation(ClientProtocol(), frame({"id": 1, "connect": {}}, {"id": 2, "connect": {}}))


def test_a_refused_connect_may_be_retried() -> None:
    protocol = ClientProtocol()
    protocol.receive_frame(frame({"id": 1, "connect": {"token": "expired"}}))
    protocol.reject_connect()
    assert protocol.state is State.NEW
    assert [r.method for r in protocol.receive_frame(frame({"id": 2, "connect": {}}))] == [
        "connect"
    ]
    # Only a pending connect can be accepted or rejected.
    protocol.accept_connect()
    protocol.reject_connect()
    assert protocol.state is State.CONNECTED


def test_commands_after_connect_in_the_same_frame_are_accepted() -> None:
    """The JS SDK sends connect and its subscribes in one frame."""
    protocol = ClientProtocol()
    received = protocol.receive_frame(
        frame(
            {"id": 1, "connect": {}},
            {"id": 2, "subscribe": {"channel": "a"}},
            {"id": 3, "subscribe": {"channel": "b"}},
        )
    )
    assert [(r.method, r.command.id) for r in received] == [
        ("connect", 1),
        ("subscribe", 2),
        ("subscribe", 3),
    ]


@pytest.mark.parametrize("method", ["connect", *REPLY_METHODS])
def test_id_less_command_other_than_send_is_3501(method: str) -> None:
    protocol = ClientProtocol() if method == "connect" else connected()
    assert "without id" in violation(protocol, frame({method: {}})).detail


@pytest.mark.parametrize("command_id", [0, -1])
def test_non_positive_id_counts_as_no_id(command_id: int) -> None:
    violation(connected(), frame({"id": command_id, "publish": {"channel": "a"}}))


def test_send_without_id_is_allowed() -> None:
    protocol = connected()
    received = protocol.receive_frame(frame({"send": {"data": {"x": 1}}}))
    assert [r.method for r in received] == ["send"]
    assert received[0].command.id == 0
    assert protocol.state is State.CONNECTED


def test_unknown_method_with_id_is_3501() -> None:
    assert violation(connected(), frame({"id": 7, "frobnicate": {}})).detail == "unknown method"


def test_null_method_is_no_method() -> None:
    violation(connected(), frame({"id": 7, "publish": None}))


def test_unknown_fields_next_to_a_method_are_ignored() -> None:
    """Newer SDKs may send fields this server does not know."""
    received = connected().receive_frame(
        frame({"id": 2, "publish": {"channel": "a", "data": 1, "future": True}, "extra": 1})
    )
    assert [r.method for r in received] == ["publish"]


def test_two_methods_in_one_command_is_3501() -> None:
    detail = violation(
        connected(), frame({"id": 2, "subscribe": {"channel": "a"}, "publish": {"channel": "a"}})
    ).detail
    assert "several methods" in detail


# --- heartbeat -----------------------------------------------------------------------


def test_pong_without_ping_is_3501() -> None:
    assert violation(connected(), "{}").detail == "pong without ping"
    violation(ClientProtocol(), "{}")


def test_pong_with_ping_outstanding_is_accepted_and_clears_it() -> None:
    protocol = connected()
    assert protocol.ping() is True
    assert protocol.ping_outstanding
    assert protocol.ping() is False  # unanswered: the caller disconnects with 3012
    assert protocol.receive_frame("{}") == []
    assert not protocol.ping_outstanding
    assert protocol.state is State.CONNECTED
    # One ping, one pong: a second pong is unsolicited.
    violation(protocol, "{}")


def test_pong_may_share_a_frame_with_commands() -> None:
    protocol = connected()
    protocol.ping()
    received = protocol.receive_frame(frame("{}", {"id": 2, "presence": {"channel": "a"}}))
    assert [r.method for r in received] == ["presence"]
    assert not protocol.ping_outstanding


def test_ping_command_is_a_command_with_a_reply() -> None:
    received = connected().receive_frame(frame({"id": 3, "ping": {}}))
    assert [(r.method, r.command.id) for r in received] == [("ping", 3)]


# --- malformed input -----------------------------------------------------------------

DEEP = '{"id":1,"connect":{"data":' + "[" * 100_000 + "]" * 100_000 + "}}"

MALFORMED = {
    "invalid-json": "{not json",
    "truncated": '{"id":1,"connect":{',
    "json-array": '[{"id":1,"connect":{}}]',
    "json-string": '"connect"',
    "json-null": "null",
    "json-number": "42",
    "id-is-a-string": '{"id":"x"}',
    "id-is-a-float": '{"id":1.5,"connect":{}}',
    "method-is-a-string": '{"id":1,"connect":"yes"}',
    "channel-is-a-number": '{"id":2,"subscribe":{"channel":5}}',
    "offset-is-a-string": '{"id":2,"history":{"channel":"a","limit":"all"}}',
    "trailing-garbage": '{"id":1,"connect":{}} x',
    "nan": '{"id":1,"connect":{"data":NaN}}',
    "nul-byte": '{"id":1,"connect":{}}\x00',
    "invalid-utf8": b"\xff\xfe",
    "deeply-nested-data": DEEP,
    "deeply-nested-frame": "[" * 100_000,
    "deeply-nested-objects": '{"id":1,"connect":{"data":'
    + '{"a":' * 50_000
    + "1"
    + "}" * 50_000
    + "}}",
}


@pytest.mark.parametrize("data", list(MALFORMED.values()), ids=list(MALFORMED))
@pytest.mark.parametrize("fresh", [True, False], ids=["fresh", "connected"])
def test_malformed_frames_are_3501(data: str | bytes, fresh: bool) -> None:
    protocol = ClientProtocol() if fresh else connected()
    detail = violation(protocol, data).detail
    if data not in ('{"id":1,"connect":"yes"}',):
        assert detail


def test_one_bad_line_rejects_the_whole_frame() -> None:
    protocol = connected()
    violation(protocol, frame({"id": 2, "presence": {"channel": "a"}}, "nope"))


def test_nothing_is_accepted_once_closed() -> None:
    protocol = connected()
    violation(protocol, "nope")
    assert protocol.receive_frame(frame({"id": 5, "presence": {"channel": "a"}})) == []
    assert protocol.state is State.CLOSED


# --- framing -------------------------------------------------------------------------


def test_several_commands_in_one_frame_come_back_in_order() -> None:
    protocol = connected()
    commands = [
        {"id": 10, "subscribe": {"channel": "a"}},
        {"id": 11, "publish": {"channel": "a", "data": {"n": 1}}},
        {"send": {"data": "hi"}},
        {"id": 12, "history": {"channel": "a", "limit": -1}},
        {"id": 13, "unsubscribe": {"channel": "a"}},
    ]
    received = protocol.receive_frame(frame(*commands))
    assert [(r.method, r.command.id) for r in received] == [
        ("subscribe", 10),
        ("publish", 11),
        ("send", 0),
        ("history", 12),
        ("unsubscribe", 13),
    ]
    assert all(isinstance(r, Received) for r in received)
    publish = received[1].command.publish
    assert publish is not None
    assert bytes(publish.data) == b'{"n": 1}'  # raw JSON, as sent


def test_blank_lines_are_skipped_and_bytes_work() -> None:
    protocol = connected()
    data = b'\n\n{"id":2,"presence":{"channel":"a"}}\n\n   \n{"id":3,"presence":{"channel":"b"}}\n'
    received = protocol.receive_frame(data)
    assert [r.command.id for r in received] == [2, 3]
    assert protocol.receive_frame("") == []
    assert protocol.receive_frame("\n\n") == []
    assert protocol.state is State.CONNECTED


def test_crlf_separated_commands() -> None:
    received = connected().receive_frame(
        '{"id":2,"presence":{"channel":"a"}}\r\n{"id":3,"presence":{"channel":"b"}}\r\n'
    )
    assert [r.command.id for r in received] == [2, 3]


# --- outbox --------------------------------------------------------------------------


def test_outbox_joins_everything_pending_into_one_frame() -> None:
    protocol = ClientProtocol()
    assert protocol.data_to_send() == b""
    assert protocol.queue(b'{"id":1,"connect":{}}') == 21
    assert protocol.queue(b'{"push":{"channel":"a","pub":{"data":1}}}') == 21 + 41
    assert protocol.outbox_bytes == 62
    data = protocol.data_to_send()
    assert data == b'{"id":1,"connect":{}}\n{"push":{"channel":"a","pub":{"data":1}}}'
    assert [json.loads(part) for part in data.split(b"\n")] == [
        {"id": 1, "connect": {}},
        {"push": {"channel": "a", "pub": {"data": 1}}},
    ]
    assert protocol.data_to_send() == b""
    assert protocol.outbox_bytes == 0


def test_outbox_single_item_is_sent_as_is() -> None:
    protocol = ClientProtocol()
    protocol.queue(b'{"id":1,"ping":{}}')
    assert protocol.data_to_send() == b'{"id":1,"ping":{}}'


def test_drop_output_and_close() -> None:
    protocol = connected()
    protocol.queue(b"x" * 100)
    protocol.drop_output()
    assert protocol.data_to_send() == b""
    assert protocol.outbox_bytes == 0
    protocol.close(Disconnect.SLOW)
    protocol.close(Disconnect.NO_PONG)  # the first reason wins
    assert protocol.state is State.CLOSED
    assert protocol.close_reason is Disconnect.SLOW


# --- properties ----------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
command_like = st.dictionaries(
    st.sampled_from(["id", *METHODS, "data", "channel", "x"]),
    json_values,
    max_size=4,
)
frames = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    st.lists(command_like.map(json.dumps), max_size=4).map("\n".join),
    st.lists(st.one_of(command_like.map(json.dumps), st.text(max_size=20)), max_size=4).map(
        "\n".join
    ),
)


def check_any_frame(protocol: ClientProtocol, data: str | bytes) -> None:
    try:
        received = protocol.receive_frame(data)
    except ProtocolViolation as exc:
        assert exc.disconnect.code == 3501
        assert protocol.state is State.CLOSED
        return
    assert isinstance(received, list)
    assert all(isinstance(r, Received) and r.method in METHODS for r in received)
    assert protocol.state is not State.CLOSED


@PROPERTY_SETTINGS
@given(frames)
def test_any_frame_on_a_fresh_protocol_is_commands_or_a_violation(data: str | bytes) -> None:
    check_any_frame(ClientProtocol(), data)


@PROPERTY_SETTINGS
@given(frames, st.booleans())
def test_any_frame_on_a_connected_protocol_is_commands_or_a_violation(
    data: str | bytes, ping: bool
) -> None:
    protocol = connected()
    if ping:
        protocol.ping()
    check_any_frame(protocol, data)


@PROPERTY_SETTINGS
@given(st.lists(frames, min_size=1, max_size=5))
def test_a_sequence_of_frames_never_raises_anything_else(sequence: list[str | bytes]) -> None:
    protocol = ClientProtocol()
    for data in sequence:
        try:
            protocol.receive_frame(data)
        except ProtocolViolation:
            assert protocol.state is State.CLOSED
        if protocol.state is State.CONNECTING:
            protocol.accept_connect()


def splice(line: str, at: int, junk: bytes) -> bytes:
    """``line`` as UTF-8 with ``junk`` inserted at a position."""
    data = line.encode()
    at %= len(data) + 1
    return data[:at] + junk + data[at:]


@PROPERTY_SETTINGS
@given(command_like.map(json.dumps), st.integers(), st.binary(min_size=1, max_size=3))
@example('{"id": 1, "connect": {"name": "x"}}', 31, b"\xff")
def test_bytes_with_invalid_utf8_inside_json_are_a_violation(
    line: str, at: int, junk: bytes
) -> None:
    for protocol in (ClientProtocol(), connected()):
        check_any_frame(protocol, splice(line, at, junk))


def test_lone_surrogate_text_is_a_violation() -> None:
    violation(ClientProtocol(), '{"id":1,"connect":{"name":"\ud800"}}')
