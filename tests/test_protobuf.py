"""The Protobuf client protocol: hubbub's codec against the SDK's own client.proto
classes (centrifuge-python ships them, built by protoc), and through the hub.

The hand-written encoder must produce what the ``protobuf`` package parses
into the same values, for every message the server sends; the decoder must
read what the package serializes for every command. A channel with JSON and
Protobuf subscribers delivers the same publications to both.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from centrifuge.protocol import client_pb2 as pb
from google.protobuf.json_format import MessageToDict, ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.codes import Disconnect, Error
from hubbub.config.model import ChannelConfig, ChannelOptions, ClientConfig, Config, Namespace
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from hubbub.protocol.codec import JSON, FrameError
from hubbub.protocol.messages import (
    ClientInfo,
    ConnectResult,
    DisconnectPush,
    HistoryResult,
    Join,
    PresenceResult,
    PresenceStatsResult,
    Publication,
    Push,
    RefreshResult,
    RPCResult,
    SubscribePush,
    SubscribeResult,
    UnsubscribePush,
)
from hubbub.protocol.payload import json_text
from hubbub.protocol.protobuf import PROTOBUF, decode_replies
from hubbub.protocol.protowire import delimited, split_delimited


def parse_reply(message: bytes) -> dict[str, Any]:
    reply = pb.Reply()
    reply.ParseFromString(message)
    return MessageToDict(reply, preserving_proto_field_name=True)


def one(frame: bytes) -> dict[str, Any]:
    (message,) = split_delimited(frame)
    return parse_reply(message)


def command_bytes(*commands: dict[str, Any]) -> bytes:
    return b"".join(delimited(ParseDict(c, pb.Command()).SerializeToString()) for c in commands)


def b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


# --- the encoder against protoc's classes ----------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
infos = st.builds(
    ClientInfo,
    user=st.text(max_size=10),
    client=st.text(min_size=1, max_size=10),
    conn_info=json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v))),
)
publications = st.builds(
    Publication,
    data=json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v))),
    info=st.none() | infos,
    offset=st.integers(0, 2**63),
    tags=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(channel=st.text(max_size=30), publication=publications)
def test_publication_push_matches_protoc(channel: str, publication: Publication) -> None:
    reply = one(PROTOBUF.publication_push(channel, publication))
    push = reply["push"]
    assert push.get("channel", "") == channel
    pub = push["pub"]
    assert pub["data"] == b64(bytes(publication.data))
    assert int(pub.get("offset", 0)) == publication.offset
    assert pub.get("tags", {}) == (publication.tags or {})
    if publication.info is None:
        assert "info" not in pub
    else:
        info = publication.info
        assert pub["info"].get("user", "") == info.user
        assert pub["info"]["client"] == info.client
        assert pub["info"]["conn_info"] == b64(bytes(info.conn_info))
    # The generic push encoder and the hot-path one agree byte for byte.
    assert PROTOBUF.push(Push(channel=channel, pub=publication)) == PROTOBUF.publication_push(
        channel, publication
    )


def test_every_reply_and_push_matches_protoc() -> None:
    pub = Publication(data=msgspec.Raw(b'{"n":1}'), offset=3, tags={"a": "b"})
    info = ClientInfo(user="u", client="c", chan_info=msgspec.Raw(b"[1]"))
    subscribe = SubscribeResult(
        recoverable=True,
        epoch="e",
        offset=9,
        positioned=True,
        recovered=True,
        was_recovering=True,
        publications=[pub],
        data=msgspec.Raw(b'"d"'),
        expires=True,
        ttl=30,
        delta=True,
    )
    cases: list[tuple[bytes, dict[str, Any]]] = [
        (
            PROTOBUF.reply(
                1,
                "connect",
                ConnectResult(
                    client="c",
                    version="v",
                    ping=25,
                    pong=True,
                    session="s",
                    node="n",
                    subs={"ch": SubscribeResult(epoch="x", offset=2)},
                ),
            ),
            {
                "id": 1,
                "connect": {
                    "client": "c",
                    "version": "v",
                    "ping": 25,
                    "pong": True,
                    "session": "s",
                    "node": "n",
                    "subs": {"ch": {"epoch": "x", "offset": "2"}},
                },
            },
        ),
        (
            PROTOBUF.reply(2, "subscribe", subscribe),
            {
                "id": 2,
                "subscribe": {
                    "recoverable": True,
                    "epoch": "e",
                    "offset": "9",
                    "positioned": True,
                    "recovered": True,
                    "was_recovering": True,
                    "publications": [{"data": b64(b'{"n":1}'), "offset": "3", "tags": {"a": "b"}}],
                    "data": b64(b'"d"'),
                    "expires": True,
                    "ttl": 30,
                    "delta": True,
                },
            },
        ),
        (
            PROTOBUF.reply(
                3,
                "publish",
                __import__("hubbub.protocol.messages", fromlist=["EmptyResult"]).EmptyResult(),
            ),
            {"id": 3, "publish": {}},
        ),
        (
            PROTOBUF.reply(4, "presence", PresenceResult({"c": info})),
            {
                "id": 4,
                "presence": {
                    "presence": {"c": {"user": "u", "client": "c", "chan_info": b64(b"[1]")}}
                },
            },
        ),
        (
            PROTOBUF.reply(5, "presence_stats", PresenceStatsResult(2, 1)),
            {"id": 5, "presence_stats": {"num_clients": 2, "num_users": 1}},
        ),
        (
            PROTOBUF.reply(6, "history", HistoryResult(publications=[pub], epoch="e", offset=3)),
            {
                "id": 6,
                "history": {
                    "publications": [{"data": b64(b'{"n":1}'), "offset": "3", "tags": {"a": "b"}}],
                    "epoch": "e",
                    "offset": "3",
                },
            },
        ),
        (
            PROTOBUF.reply(7, "rpc", RPCResult(msgspec.Raw(b"{}"))),
            {"id": 7, "rpc": {"data": b64(b"{}")}},
        ),
        (
            PROTOBUF.reply(
                8, "refresh", RefreshResult(client="c", version="v", expires=True, ttl=5)
            ),
            {"id": 8, "refresh": {"client": "c", "version": "v", "expires": True, "ttl": 5}},
        ),
        (
            PROTOBUF.error(9, Error.TOO_MANY_REQUESTS),
            {"id": 9, "error": {"code": 111, "message": "too many requests", "temporary": True}},
        ),
        (
            PROTOBUF.push(Push(channel="ch", join=Join(info))),
            {
                "push": {
                    "channel": "ch",
                    "join": {"info": {"user": "u", "client": "c", "chan_info": b64(b"[1]")}},
                }
            },
        ),
        (
            PROTOBUF.push(
                Push(channel="ch", unsubscribe=UnsubscribePush(2500, "insufficient state"))
            ),
            {
                "push": {
                    "channel": "ch",
                    "unsubscribe": {"code": 2500, "reason": "insufficient state"},
                }
            },
        ),
        (
            PROTOBUF.push(
                Push(
                    channel="ch",
                    subscribe=SubscribePush(recoverable=True, epoch="e", offset=4, positioned=True),
                )
            ),
            {
                "push": {
                    "channel": "ch",
                    "subscribe": {
                        "recoverable": True,
                        "epoch": "e",
                        "offset": "4",
                        "positioned": True,
                    },
                }
            },
        ),
        (
            PROTOBUF.push(Push(disconnect=DisconnectPush(3001, "shutdown", True))),
            {"push": {"disconnect": {"code": 3001, "reason": "shutdown", "reconnect": True}}},
        ),
        (
            PROTOBUF.push(Push(connect=ConnectResult(client="c", session="s"))),
            {"push": {"connect": {"client": "c", "session": "s"}}},
        ),
    ]
    for frame, expected in cases:
        assert one(frame) == expected
        # hubbub's own reader (the bench's and the tests') reads the same frame.
        assert decode_replies(frame)[0].keys() == expected.keys()
    assert PROTOBUF.ping == delimited(pb.Reply().SerializeToString())


# --- the decoder against protoc's classes ----------------------------------------------


def test_commands_decode_into_the_json_structs() -> None:
    frame = command_bytes(
        {
            "id": 1,
            "connect": {
                "token": "t",
                "data": b64(b'{"a": 1}'),
                "name": "n",
                "subs": {"c": {"recover": True, "offset": "7", "epoch": "e"}},
            },
        },
        {
            "id": 2,
            "subscribe": {
                "channel": "c",
                "recover": True,
                "offset": "5",
                "epoch": "e",
                "positioned": True,
                "recoverable": True,
                "join_leave": True,
                "delta": "fossil",
                "flag": "2",
            },
        },
        {"id": 3, "publish": {"channel": "c", "data": b64(b'{"x":\n"y"}')}},
        {
            "id": 4,
            "history": {
                "channel": "c",
                "limit": -1,
                "since": {"offset": "3", "epoch": "e"},
                "reverse": True,
            },
        },
        {"id": 5, "rpc": {"method": "m", "data": b64(b"[1,2]")}},
        {"send": {"data": b64(b"true")}},
        {"id": 6, "presence": {}},
        {},
    )
    commands = PROTOBUF.decode_commands(frame)
    connect = commands[0].connect
    assert connect is not None and connect.token == "t" and connect.name == "n"
    assert bytes(connect.data) == b'{"a": 1}'
    assert connect.subs is not None and connect.subs["c"].offset == 7
    subscribe = commands[1].subscribe
    assert subscribe is not None
    assert (subscribe.channel, subscribe.offset, subscribe.delta, subscribe.flag) == (
        "c",
        5,
        "fossil",
        2,
    )
    assert (
        subscribe.recover
        and subscribe.positioned
        and subscribe.recoverable
        and subscribe.join_leave
    )
    publish = commands[2].publish
    # Payload bytes are kept exactly (Protobuf subscribers get them as sent); JSON
    # clients get that JSON made one line.
    assert publish is not None and bytes(publish.data) == b'{"x":\n"y"}'
    assert bytes(json_text(publish.data)) == b'{"x":"y"}'
    history = commands[3].history
    assert history is not None and history.limit == -1 and history.reverse
    assert history.since is not None and (history.since.offset, history.since.epoch) == (3, "e")
    rpc = commands[4].rpc
    assert rpc is not None and rpc.method == "m" and bytes(rpc.data) == b"[1,2]"
    assert commands[5].send is not None and commands[5].id == 0
    assert commands[6].presence is not None and commands[6].presence.channel == ""
    assert commands[7] == type(commands[7])()  # an empty command: a pong


@pytest.mark.parametrize(
    "frame",
    [
        "a text frame",
        b"\x05\x08",  # a length past the end
        b"\x02\x08\xff",  # a truncated varint
        b"\x02\x0b\x00",  # a group (wire type 3)
    ],
)
def test_bad_frames_are_frame_errors(frame: bytes | str) -> None:
    with pytest.raises(FrameError):
        PROTOBUF.decode_commands(frame)


# --- through the hub ------------------------------------------------------------------


def config() -> Config:
    options = ChannelOptions(
        history_size=10,
        history_ttl=60,
        force_recovery=True,
        presence=True,
        join_leave=True,
        force_push_join_leave=True,
        allow_subscribe_for_anonymous=True,
        allow_subscribe_for_client=True,
        allow_publish_for_anonymous=True,
        allow_publish_for_client=True,
        allow_presence_for_anonymous=True,
        allow_presence_for_client=True,
        allow_history_for_anonymous=True,
        allow_history_for_client=True,
    )
    return Config(
        client=ClientConfig(allow_anonymous_connect_without_token=True),
        channel=ChannelConfig(namespaces=(Namespace("chat", options),)),
    )


_leftovers: dict[LocalClient, list[bytes]] = {}


async def receive(client: LocalClient, count: int) -> list[bytes]:
    """The next ``count`` messages ``client`` received (the rest kept for the next call)."""
    got = _leftovers.pop(client, [])
    async with asyncio.timeout(5):
        while len(got) < count:
            got += await client.receive()
    _leftovers[client] = got[count:]
    return got[:count]


async def test_json_and_protobuf_subscribers_get_the_same_publications() -> None:
    async with Hub(config()) as hub:
        json_client = LocalClient(hub)
        proto_client = LocalClient(hub, codec=PROTOBUF)
        await json_client.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:a"}}')
        await proto_client.send(
            command_bytes({"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "chat:a"}})
        )
        json_replies = [json.loads(m) for m in await receive(json_client, 2)]
        proto_replies = [parse_reply(m) for m in await receive(proto_client, 2)]
        assert json_replies[1]["subscribe"]["recoverable"] is True
        assert proto_replies[1]["subscribe"]["recoverable"] is True
        # Join pushes: the JSON client sees its own and the Protobuf client's.
        joins = [json.loads(m)["push"]["join"] for m in await receive(json_client, 2)]
        assert {j["info"]["client"] for j in joins} == {
            json_client.session.client_id,
            proto_client.session.client_id,
        }
        assert "join" in (await receive(proto_client, 1) and {"join": 1})
        # Several publications in one loop turn: one batch, encoded once per codec.
        for n in range(3):
            await hub.publish("chat:a", {"n": n, "text": "héllo"})
        await proto_client.send(
            command_bytes({"id": 3, "publish": {"channel": "chat:a", "data": b64(b'{"n":3}')}})
        )
        json_pubs = [json.loads(m)["push"]["pub"] for m in await receive(json_client, 4)]
        proto_msgs = [parse_reply(m) for m in await receive(proto_client, 4)]
        proto_pubs = [m["push"]["pub"] for m in proto_msgs if "pub" in m.get("push", {})]
        assert [p["data"] for p in json_pubs] == [
            json.loads(__import__("base64").b64decode(p["data"])) for p in proto_pubs
        ]
        assert (
            [p["offset"] for p in json_pubs]
            == [int(p["offset"]) for p in proto_pubs]
            == [1, 2, 3, 4]
        )
        assert json_pubs[3]["info"]["client"] == proto_pubs[3]["info"]["client"]
        # Presence and history in Protobuf.
        await proto_client.send(
            command_bytes(
                {"id": 4, "presence": {"channel": "chat:a"}},
                {"id": 5, "history": {"channel": "chat:a", "limit": -1}},
            )
        )
        replies = {r.get("id"): r for r in map(parse_reply, await receive(proto_client, 3))}
        assert replies[3] == {"id": 3, "publish": {}}
        assert len(replies[4]["presence"]["presence"]) == 2
        assert [int(p["offset"]) for p in replies[5]["history"]["publications"]] == [1, 2, 3, 4]


async def test_protobuf_binary_payload_reaches_protobuf_clients_and_closes_json_ones() -> None:
    """A payload that is not JSON is published (formerly: 3501); a JSON subscriber of
    the channel is closed with 3506 (inappropriate protocol), as in Centrifugo."""
    async with Hub(config()) as hub:
        client = LocalClient(hub, codec=PROTOBUF)
        json_client = LocalClient(hub)
        await json_client.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:a"}}')
        await receive(json_client, 2)
        await client.send(
            command_bytes({"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "chat:a"}})
        )
        await receive(client, 2)
        await client.send(
            command_bytes({"id": 3, "publish": {"channel": "chat:a", "data": b64(b"\xff")}})
        )
        messages = [parse_reply(m) for m in await receive(client, 3)]
        pubs = [m["push"]["pub"] for m in messages if "pub" in m.get("push", {})]
        assert [p["data"] for p in pubs] == [b64(b"\xff")]
        assert client.close_code is None
        assert json_client.close_code == Disconnect.INAPPROPRIATE_PROTOCOL.code == 3506
        assert JSON.name == "json"
