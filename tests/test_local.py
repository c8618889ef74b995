"""The whole command path without sockets: protocol bytes in, bytes out (LocalClient)."""

from __future__ import annotations

import asyncio
import json

from hubbub.config.loader import load_config
from hubbub.hub.hub import Hub
from hubbub.hub.local import LocalClient
from tests.conftest import DEFAULT_CONFIG, merge


def hub() -> Hub:
    return Hub(load_config(None, env={}, base=DEFAULT_CONFIG).config)


async def test_connect_subscribe_publish_in_one_frame_replies_in_one_frame() -> None:
    async with hub() as h:
        client = LocalClient(h)
        await client.send(
            b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:a"}}\n'
            b'{"id":3,"publish":{"channel":"chat:a","data":{"n":1}}}'
        )
        h.delivery.flush()
        assert len(client.frames) == 1  # everything of this turn coalesced into one frame
        messages = [json.loads(m) for m in await client.receive()]
        replies = [m for m in messages if "id" in m]
        assert [m["id"] for m in replies] == [1, 2, 3]
        assert replies[1]["subscribe"]["recoverable"] is True
        assert "offset" not in replies[1]["subscribe"]  # zero values are omitted
        assert replies[1]["subscribe"]["epoch"]
        assert replies[2] == {"id": 3, "publish": {}}
        (pub,) = [m["push"]["pub"] for m in messages if "pub" in m.get("push", {})]
        assert pub["data"] == {"n": 1} and pub["offset"] == 1
        # The publication push comes after the subscribe reply, never before.
        assert messages.index(replies[1]) < next(
            i for i, m in enumerate(messages) if "pub" in m.get("push", {})
        )


async def test_recovery_is_never_partial() -> None:
    config = load_config(
        None,
        env={},
        base={
            **DEFAULT_CONFIG,
            "client": {
                "allow_anonymous_connect_without_token": True,
                "recovery_max_publication_limit": 3,
            },
        },
    ).config
    async with Hub(config) as h:
        position = await h.publish("chat:r", 0)
        for n in range(1, 5):
            await h.publish("chat:r", n)
        client = LocalClient(h)
        # 4 missed > limit 3: recovered false, no publications, positioned at the top.
        await client.send(
            b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:r","recover":true,'
            b'"offset":%d,"epoch":"%s"}}' % (position.offset, position.epoch.encode())
        )
        h.delivery.flush()
        reply = json.loads((await client.receive())[1])["subscribe"]
        assert reply.get("recovered") is None and reply["was_recovering"] is True
        assert "publications" not in reply and reply["offset"] == 5
        # 2 missed: recovered with exactly those two.
        other = LocalClient(h)
        await other.send(
            b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:r","recover":true,'
            b'"offset":3,"epoch":"%s"}}' % position.epoch.encode()
        )
        h.delivery.flush()
        reply = json.loads((await other.receive())[1])["subscribe"]
        assert reply["recovered"] is True
        assert [p["data"] for p in reply["publications"]] == [3, 4]


async def test_reject_unrecovered_flag_answers_112() -> None:
    async with hub() as h:
        await h.publish("chat:f", 1)
        client = LocalClient(h)
        await client.send(
            b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:f","recover":true,'
            b'"offset":1,"epoch":"wrong","flag":2}}'
        )
        h.delivery.flush()
        assert json.loads((await client.receive())[1]) == {
            "id": 2,
            "error": {"code": 112, "message": "unrecoverable position"},
        }


async def test_cache_mode_recovers_the_latest_publication_only() -> None:
    base = json.loads(json.dumps(DEFAULT_CONFIG))
    base["channel"]["namespaces"].append(
        {
            "name": "state",
            "history_size": 1,
            "history_ttl": "60s",
            "force_recovery": True,
            "force_recovery_mode": "cache",
            "allow_subscribe_for_client": True,
            "allow_subscribe_for_anonymous": True,
        }
    )
    async with Hub(load_config(None, env={}, base=base).config) as h:
        first = await h.publish("state:price", {"v": 1})
        await h.publish("state:price", {"v": 2})
        await h.publish("state:price", {"v": 3})
        client = LocalClient(h)
        await client.send(
            b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"state:price",'
            b'"recover":true,"offset":%d,"epoch":"%s"}}' % (first.offset, first.epoch.encode())
        )
        h.delivery.flush()
        reply = json.loads((await client.receive())[1])["subscribe"]
        assert reply["recovered"] is True
        assert [p["data"] for p in reply["publications"]] == [{"v": 3}]


async def test_slow_client_is_disconnected_with_3008_and_publisher_unaffected() -> None:
    base = json.loads(json.dumps(DEFAULT_CONFIG))
    base["client"]["queue_max_size"] = 10_000
    async with Hub(load_config(None, env={}, base=base).config) as h:
        slow = LocalClient(h)
        await slow.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"chat:s"}}')
        h.delivery.flush()
        await slow.receive()
        # No flush between publications: the outbox grows past its limit in one turn.
        for n in range(200):
            await h.publish("chat:s", {"n": n, "pad": "x" * 100})
        assert slow.close_code == 3008
        assert slow.session.closed and slow.session.client_id not in h.sessions
        page = await h.history("chat:s", limit=-1)
        assert len(page.publications) == 200  # nothing the publisher made is lost


async def test_server_ping_is_written_and_answered_pong_keeps_the_connection() -> None:
    base = json.loads(json.dumps(DEFAULT_CONFIG))
    base["client"].update({"ping_interval": "1s", "pong_timeout": "0.5s"})
    async with Hub(load_config(None, env={}, base=base).config) as h:
        client = LocalClient(h)
        await client.send(b'{"id":1,"connect":{}}')
        (connect,) = await client.receive()
        assert json.loads(connect)["connect"]["ping"] == 1
        for _ in range(3):  # three ping/pong rounds, the connection stays
            async with asyncio.timeout(5):
                assert await client.receive() == [b"{}"]
            await client.send(b"{}")
        assert client.close_code is None
        # Now stay silent: the next ping goes unanswered and the hub closes with 3012.
        async with asyncio.timeout(5):
            assert await client.receive() == [b"{}"]
            while client.close_code is None:
                await client.receive()
        assert client.close_code == 3012


async def test_token_channels_become_server_side_subscriptions() -> None:
    from hubbub.auth.tokens import make_token
    from tests.conftest import SECRET

    async with hub() as h:
        client = LocalClient(h)
        token = make_token(SECRET, "zoe", ttl=60, extra={"channels": ["chat:inbox", "news"]})
        await client.send(b'{"id":1,"connect":{"token":"%s"}}' % token.encode())
        (reply, *pushes) = [json.loads(m) for m in await client.receive()]
        assert set(reply["connect"]["subs"]) == {"chat:inbox", "news"}
        assert reply["connect"]["subs"]["chat:inbox"]["recoverable"] is True
        await h.publish("news", {"n": 1})
        h.delivery.flush()
        pushes += [json.loads(m) for m in await client.receive()]
        assert {"channel": "news", "pub": {"data": {"n": 1}}} in [p["push"] for p in pushes]


async def test_api_subscribe_with_recover_since_sends_the_missed_publications() -> None:
    async with hub() as h:
        first = await h.publish("chat:late", {"n": 1})
        await h.publish("chat:late", {"n": 2})
        await h.publish("chat:late", {"n": 3})
        client = LocalClient(h)
        await client.send(b'{"id":1,"connect":{}}')
        await client.receive()
        await h.subscribe_user("", "chat:late", recover_since=first)
        h.delivery.flush()
        pushes = [json.loads(m)["push"] for m in await client.receive()]
        assert pushes[0]["subscribe"]["recoverable"] is True
        pubs = [p["pub"] for p in pushes if "pub" in p]
        assert [(p["offset"], p["data"]) for p in pubs] == [(2, {"n": 2}), (3, {"n": 3})]


async def test_separate_subscription_token_key() -> None:
    from hubbub.auth.tokens import make_token
    from tests.conftest import SECRET

    sub_secret = "a-different-secret-for-subscriptions-only"
    base = merge(
        DEFAULT_CONFIG,
        {"client": {"subscription_token": {"enabled": True, "hmac_secret_key": sub_secret}}},
    )
    async with Hub(load_config(None, env={}, base=base).config) as h:
        good = LocalClient(h)
        await good.send(
            b'{"id":1,"connect":{"token":"%s"}}\n{"id":2,"subscribe":{"channel":"$s",'
            b'"token":"%s"}}'
            % (
                make_token(SECRET, "u").encode(),
                make_token(sub_secret, "u", extra={"channel": "$s"}).encode(),
            )
        )
        h.delivery.flush()
        replies = [json.loads(m) for m in await good.receive()]
        assert "subscribe" in replies[1]
        bad = LocalClient(h)  # signed with the connection key: not valid for subscriptions
        await bad.send(
            b'{"id":1,"connect":{"token":"%s"}}\n{"id":2,"subscribe":{"channel":"$s",'
            b'"token":"%s"}}'
            % (
                make_token(SECRET, "u").encode(),
                make_token(SECRET, "u", extra={"channel": "$s"}).encode(),
            )
        )
        h.delivery.flush()
        replies = [json.loads(m) for m in await bad.receive()]
        # A token the subscription key does not verify is refused with 103 and the
        # connection stays (3500 would stop the SDK from ever reconnecting).
        assert replies[1] == {"id": 2, "error": {"code": 103, "message": "permission denied"}}
        assert bad.close_code is None


async def test_token_subs_claim_subscribes_with_channel_info() -> None:
    from hubbub.auth.tokens import make_token
    from tests.conftest import SECRET

    async with hub() as h:
        client = LocalClient(h)
        token = make_token(
            SECRET, "kim", ttl=60, extra={"subs": {"chat:team": {"info": {"role": "lead"}}}}
        )
        await client.send(b'{"id":1,"connect":{"token":"%s"}}' % token.encode())
        (reply, *_) = [json.loads(m) for m in await client.receive()]
        assert set(reply["connect"]["subs"]) == {"chat:team"}
        members = await h.engine.presence("chat:team")
        (info,) = members.values()
        assert info.user == "kim" and bytes(info.chan_info) == b'{"role":"lead"}'
        bad = LocalClient(h)
        await bad.send(
            b'{"id":1,"connect":{"token":"%s"}}'
            % make_token(SECRET, "kim", extra={"subs": ["not", "a", "map"]}).encode()
        )
        assert bad.close_code == 3500
