"""The ``gentoken`` and ``checktoken`` commands.

Rule: the keys come from the configuration (file, ``HUBBUB_*`` environment),
exactly as the server reads them, so a token ``checktoken`` accepts is one the
server accepts. Each command returns an exit status; a bad token is exit 1
with one line saying why, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import jwt

from hubbub.auth.tokens import (
    ConnectionClaims,
    InvalidToken,
    SubscriptionClaims,
    TokenExpired,
    TokenVerifier,
    make_token,
)
from hubbub.config.model import Config, TokenConfig

__all__ = ["checktoken", "gentoken"]


def gentoken(
    config: Config, user: str, *, ttl: float, info: str | None, channel: str | None
) -> int:
    """Print an HS256 connection token (or a subscription token for ``channel``)."""
    secret = config.client.token.hmac_secret_key
    if channel:
        sub = config.client.subscription_token
        if sub.enabled:
            secret = sub.hmac_secret_key
    if not secret:
        print("error: client.token.hmac_secret_key is not set (use --config FILE)", file=sys.stderr)
        return 1
    extra: dict[str, object] = {}
    if info:
        try:
            extra["info"] = json.loads(info)
        except json.JSONDecodeError as exc:
            print(f"error: --info is not JSON: {exc}", file=sys.stderr)
            return 1
    if channel:
        extra["channel"] = channel
    print(make_token(secret, user, ttl=ttl or None, extra=extra))
    return 0


def checktoken(config: Config, token: str) -> int:
    """Verify ``token`` with the configured keys; print its claims (exit 0) or why not (1).

    A token with a ``channel`` claim is checked as a subscription token (with
    ``client.subscription_token`` keys when that section is enabled).
    """
    try:
        unverified: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        print(f"error: invalid token: malformed: {exc}", file=sys.stderr)
        return 1
    subscription = "channel" in unverified
    keys = config.client.token
    section = "client.token"
    sub = config.client.subscription_token
    if subscription and sub.enabled:
        section = "client.subscription_token"
        keys = TokenConfig(
            hmac_secret_key=sub.hmac_secret_key,
            rsa_public_key=sub.rsa_public_key,
            ecdsa_public_key=sub.ecdsa_public_key,
            jwks_public_endpoint=sub.jwks_public_endpoint,
            audience=sub.audience,
            issuer=sub.issuer,
        )
    if not keys.configured:
        print(
            f"error: no key to check it with: set {section}.hmac_secret_key (or rsa_public_key, "
            "ecdsa_public_key, jwks_public_endpoint) in the config (--config FILE)",
            file=sys.stderr,
        )
        return 1
    verifier = TokenVerifier(keys)
    claims: ConnectionClaims | SubscriptionClaims
    try:
        if subscription:
            claims = asyncio.run(verifier.verify_subscription(token))
        else:
            claims = asyncio.run(verifier.verify_connection(token))
    except TokenExpired:
        print(f"error: token expired {_when(unverified.get('exp'))}", file=sys.stderr)
        return 1
    except InvalidToken as exc:
        print(f"error: invalid token: {exc}", file=sys.stderr)
        return 1
    what = "subscription" if subscription else "connection"
    print(f"valid {what} token for user {claims.user!r}")
    if isinstance(claims, SubscriptionClaims):
        print(f"  channel: {claims.channel}")
    print(f"  expires: {_when(claims.expire_at) if claims.expire_at else 'never'}")
    if claims.info is not None:
        print(f"  info: {bytes(claims.info).decode()}")
    if isinstance(claims, ConnectionClaims):
        channels = [*claims.channels, *claims.subs]
        if channels:
            print(f"  channels: {', '.join(channels)}")
    return 0


def _when(unix: object) -> str:
    """``at 2026-01-01 10:00:00 UTC (5m ago)`` for a unix time claim."""
    if not isinstance(unix, int | float) or isinstance(unix, bool):
        return ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix))
    delta = int(unix - time.time())
    span = _span(abs(delta))
    return f"at {stamp} ({'in ' + span if delta >= 0 else span + ' ago'})"


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
