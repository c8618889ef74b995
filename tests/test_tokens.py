"""JWT verification: the configured algorithms and nothing else, and the claims."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hubbub.auth.tokens import InvalidToken, TokenExpired, TokenVerifier
from hubbub.config.model import TokenConfig
from tests.conftest import RunningServer, ServerFactory

SECRET = "unit-test-secret-of-a-decent-length"


def pem_pair(private: Any) -> tuple[Any, str]:
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[Any, str]:
    return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[Any, str]:
    return pem_pair(ec.generate_private_key(ec.SECP256R1()))


async def test_hmac_claims() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    exp = int(time.time()) + 60
    token = jwt.encode(
        {"sub": "42", "exp": exp, "info": {"name": "Ann"}, "channels": ["news"], "meta": {"x": 1}},
        SECRET,
        algorithm="HS256",
    )
    claims = await verifier.verify_connection(token)
    assert claims.user == "42" and claims.expire_at == exp
    assert claims.info is not None and json.loads(bytes(claims.info)) == {"name": "Ann"}
    assert claims.channels == ("news",)


async def test_b64info_and_expire_at() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    info = base64.b64encode(b'{"a":1}').decode()
    token = jwt.encode({"sub": "1", "b64info": info, "expire_at": 123}, SECRET, algorithm="HS256")
    claims = await verifier.verify_connection(token)
    assert claims.info is not None and bytes(claims.info) == b'{"a":1}'
    assert claims.expire_at == 123
    bad = jwt.encode({"sub": "1", "b64info": "%%%not base64"}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken):
        await verifier.verify_connection(bad)


async def test_expired_and_garbage() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    expired = jwt.encode({"sub": "1", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    with pytest.raises(TokenExpired):
        await verifier.verify_connection(expired)
    for garbage in ["", "abc", "a.b.c", expired[:-4] + "AAAA"]:
        with pytest.raises(InvalidToken):
            await verifier.verify_connection(garbage)


async def test_alg_none_is_refused() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        await verifier.verify_connection(f"{header}.{body}.")


async def test_rsa_and_ecdsa(rsa_keys: tuple[Any, str], ec_keys: tuple[Any, str]) -> None:
    verifier = TokenVerifier(TokenConfig(rsa_public_key=rsa_keys[1], ecdsa_public_key=ec_keys[1]))
    rs = jwt.encode({"sub": "r"}, rsa_keys[0], algorithm="RS256")
    es = jwt.encode({"sub": "e"}, ec_keys[0], algorithm="ES256")
    assert (await verifier.verify_connection(rs)).user == "r"
    assert (await verifier.verify_connection(es)).user == "e"
    # HMAC is not configured here: an HS256 token is refused whatever its key.
    with pytest.raises(InvalidToken):
        await verifier.verify_connection(jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"))


async def test_hmac_signed_with_public_rsa_key_is_refused(rsa_keys: tuple[Any, str]) -> None:
    """Key confusion: the attacker signs HS256 with the (public) RSA key as secret."""
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET, rsa_public_key=rsa_keys[1]))
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(b'{"sub":"admin"}').rstrip(b"=")
    import hashlib
    import hmac

    signature = hmac.new(rsa_keys[1].encode(), header + b"." + body, hashlib.sha256).digest()
    forged = b".".join([header, body, base64.urlsafe_b64encode(signature).rstrip(b"=")])
    with pytest.raises(InvalidToken):
        await verifier.verify_connection(forged.decode())


async def test_audience_and_issuer() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET, audience="app", issuer="auth"))
    good = jwt.encode({"sub": "1", "aud": "app", "iss": "auth"}, SECRET, algorithm="HS256")
    assert (await verifier.verify_connection(good)).user == "1"
    for claims in [{"sub": "1", "aud": "other", "iss": "auth"}, {"sub": "1", "aud": "app"}]:
        with pytest.raises(InvalidToken):
            await verifier.verify_connection(jwt.encode(claims, SECRET, algorithm="HS256"))


async def test_subscription_token_needs_channel() -> None:
    verifier = TokenVerifier(TokenConfig(hmac_secret_key=SECRET))
    token = jwt.encode({"sub": "1", "channel": "$x"}, SECRET, algorithm="HS256")
    assert (await verifier.verify_subscription(token)).channel == "$x"
    with pytest.raises(InvalidToken):
        await verifier.verify_subscription(jwt.encode({"sub": "1"}, SECRET, algorithm="HS256"))


async def _commands(ws: aiohttp.ClientWebSocketResponse, *commands: dict[str, Any]) -> list[Any]:
    await ws.send_str("\n".join(json.dumps(c) for c in commands))
    replies: list[Any] = []
    while len(replies) < len(commands):
        message = await asyncio.wait_for(ws.receive(), 5)
        replies.extend(r for r in map(json.loads, message.data.split("\n")) if "id" in r)
    return replies


async def test_refresh_extends_an_expiring_connection(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        (connect,) = await _commands(
            ws, {"id": 1, "connect": {"token": server.token("ann", ttl=30)}}
        )
        assert connect["connect"]["expires"] is True
        assert 25 <= connect["connect"]["ttl"] <= 30
        (refresh,) = await _commands(
            ws, {"id": 2, "refresh": {"token": server.token("ann", ttl=600)}}
        )
        assert refresh["refresh"]["expires"] is True and refresh["refresh"]["ttl"] > 500
        await ws.close()


async def test_private_channel_with_subscription_token_and_sub_refresh(
    start_server: ServerFactory,
) -> None:
    server = await start_server(
        {"channel": {"without_namespace": {"allow_subscribe_for_client": False}}}
    )
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(server.ws_url)
        sub_token = server.token("ann", ttl=60, channel="$secret")
        other_user = server.token("bob", ttl=60, channel="$secret")
        _connect, denied, ok = await _commands(
            ws,
            {"id": 1, "connect": {"token": server.token("ann")}},
            {"id": 2, "subscribe": {"channel": "$secret"}},
            {"id": 3, "subscribe": {"channel": "$secret", "token": sub_token}},
        )
        assert denied["error"]["code"] == 103
        assert ok["subscribe"]["expires"] is True
        (refreshed,) = await _commands(
            ws,
            {
                "id": 4,
                "sub_refresh": {
                    "channel": "$secret",
                    "token": server.token("ann", ttl=600, channel="$secret"),
                },
            },
        )
        assert refreshed["sub_refresh"]["ttl"] > 500
        await ws.send_str(
            json.dumps({"id": 5, "sub_refresh": {"channel": "$secret", "token": other_user}})
        )
        closing = await asyncio.wait_for(ws.receive(), 5)
        assert closing.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 3500


async def test_jwks_endpoint_keys_by_kid(
    rsa_keys: tuple[Any, str], ec_keys: tuple[Any, str]
) -> None:
    """Keys come from a JWKS endpoint (a real local HTTP server), chosen by ``kid``."""
    from aiohttp import web

    from hubbub.auth.jwks import JwksKeys

    def jwk(public_pem: str, kid: str) -> dict[str, Any]:
        key = serialization.load_pem_public_key(public_pem.encode())
        algorithm = (
            jwt.algorithms.RSAAlgorithm
            if "RSA" in type(key).__name__
            else (jwt.algorithms.ECAlgorithm)
        )
        data = json.loads(algorithm.to_jwk(key))  # type: ignore[attr-defined]
        return {**data, "kid": kid}

    fetches = 0

    async def keys(_: web.Request) -> web.Response:
        nonlocal fetches
        fetches += 1
        return web.json_response({"keys": [jwk(rsa_keys[1], "r1"), jwk(ec_keys[1], "e1")]})

    app = web.Application()
    app.router.add_get("/jwks", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/jwks"
    try:
        verifier = TokenVerifier(TokenConfig(jwks_public_endpoint=url))
        assert verifier.configured
        rs = jwt.encode({"sub": "r"}, rsa_keys[0], algorithm="RS256", headers={"kid": "r1"})
        es = jwt.encode({"sub": "e"}, ec_keys[0], algorithm="ES256", headers={"kid": "e1"})
        assert (await verifier.verify_connection(rs)).user == "r"
        assert (await verifier.verify_connection(es)).user == "e"
        assert fetches == 1  # cached
        # The RSA key must not verify an ES256 token, even with its kid.
        wrong_family = jwt.encode(
            {"sub": "x"}, ec_keys[0], algorithm="ES256", headers={"kid": "r1"}
        )
        unknown_kid = jwt.encode(
            {"sub": "x"}, rsa_keys[0], algorithm="RS256", headers={"kid": "zz"}
        )
        hmac_kid = jwt.encode({"sub": "x"}, SECRET, algorithm="HS256", headers={"kid": "r1"})
        for token in (wrong_family, unknown_kid, hmac_kid):
            with pytest.raises(InvalidToken):
                await verifier.verify_connection(token)
        # Unknown kids do not refetch more than once per refetch interval (10 s).
        assert fetches == 1
        unreachable = JwksKeys("http://127.0.0.1:9/jwks")
        assert await unreachable.key("r1") is None  # logged, refused, no crash
    finally:
        await runner.cleanup()
