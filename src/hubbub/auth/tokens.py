"""JWT verification for connection and subscription tokens: pure functions of a token.

Rule: only the algorithm families a key is configured for are accepted, and
each family is checked with its own key, so ``alg: none`` and an HMAC token
signed with a public RSA key are refused. PyJWT's exceptions are mapped here,
at the one place they enter, to ``TokenExpired`` and ``InvalidToken``.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Final

import msgspec

from hubbub.auth.jwks import JwksKeys
from hubbub.config.model import TokenConfig
from hubbub.errors import HubbubError

_HMAC: Final = ("HS256", "HS384", "HS512")
_RSA: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_ECDSA: Final = ("ES256", "ES384", "ES512")
_FAMILY: Final = {"RSA": _RSA, "EC": _ECDSA}


class TokenError(HubbubError):
    """A token is not acceptable."""


class TokenExpired(TokenError):
    """The token's ``exp`` has passed: the client should fetch a new one (error 109)."""


class InvalidToken(TokenError):
    """The token is malformed, badly signed, or for someone or something else."""


class ConnectionClaims(msgspec.Struct, frozen=True):
    user: str
    expire_at: int = 0  # unix seconds; 0: the connection does not expire
    info: msgspec.Raw | None = None
    channels: tuple[str, ...] = ()
    # ``subs`` claim: server-side subscriptions with options; here the chan_info of each.
    subs: dict[str, msgspec.Raw | None] = msgspec.field(default_factory=dict)
    meta: msgspec.Raw | None = None


class SubscriptionClaims(msgspec.Struct, frozen=True):
    user: str
    channel: str
    expire_at: int = 0
    info: msgspec.Raw | None = None
    client: str = ""  # when set, only the connection with this client id may use the token


class TokenVerifier:
    """Verifies JWTs against the keys of one ``client.token`` section."""

    def __init__(self, config: TokenConfig, *, jwks: JwksKeys | None = None) -> None:
        self._keys: dict[str, Any] = {}
        self._jwks = jwks
        if jwks is None and config.jwks_public_endpoint:
            self._jwks = JwksKeys(config.jwks_public_endpoint)
        if config.hmac_secret_key:
            for alg in _HMAC:
                self._keys[alg] = config.hmac_secret_key
        if config.rsa_public_key:
            for alg in _RSA:
                self._keys[alg] = config.rsa_public_key
        if config.ecdsa_public_key:
            for alg in _ECDSA:
                self._keys[alg] = config.ecdsa_public_key
        self._audience = config.audience or None
        self._issuer = config.issuer or None
        # Key rotation: the previous HMAC key verifies what the current one does not,
        # until hmac_previous_secret_key_valid_until (0: no limit).
        self._previous = config.hmac_previous_secret_key
        self._previous_until = config.hmac_previous_secret_key_valid_until

    @property
    def configured(self) -> bool:
        return bool(self._keys) or self._jwks is not None

    async def verify_connection(self, token: str) -> ConnectionClaims:
        claims = await self._decode(token)
        channels = claims.get("channels", [])
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise InvalidToken("channels claim must be a list of strings")
        return ConnectionClaims(
            user=_string_claim(claims, "sub"),
            expire_at=_expire_at(claims),
            info=_info(claims),
            channels=tuple(channels),
            subs=_subs(claims),
            meta=_raw(claims["meta"]) if "meta" in claims else None,
        )

    async def verify_subscription(self, token: str) -> SubscriptionClaims:
        claims = await self._decode(token)
        channel = _string_claim(claims, "channel")
        if not channel:
            raise InvalidToken("subscription token without channel claim")
        return SubscriptionClaims(
            user=_string_claim(claims, "sub"),
            channel=channel,
            expire_at=_expire_at(claims),
            info=_info(claims),
            client=_string_claim(claims, "client"),
        )

    async def _decode(self, token: str) -> dict[str, Any]:
        """Find the key (configured, or from JWKS by ``kid``), then verify."""
        import jwt  # loaded by the first token, not at start-up (it brings cryptography)

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise InvalidToken("token without algorithm")
        key = self._keys.get(alg)
        if key is None and self._jwks is not None and alg in _RSA + _ECDSA:
            kid = header.get("kid")
            jwk = await self._jwks.key(kid) if isinstance(kid, str) else None
            # The key's own type decides which family may use it: an RSA key never
            # verifies an ES256 token and no JWKS key verifies an HMAC token.
            if jwk is not None and alg in _FAMILY.get(jwk.key_type or "", ()):
                key = jwk.key
        previous = self._previous if alg in _HMAC else ""
        if previous and (not self._previous_until or time.time() < self._previous_until):
            if key is None:
                return self._verify(token, previous, alg)
            try:
                return self._verify(token, key, alg, signature_only=True)
            except _BadSignature:
                return self._verify(token, previous, alg)
        if key is None:
            raise InvalidToken(f"no configured key for algorithm {alg!r}")
        return self._verify(token, key, alg)

    def _verify(
        self, token: str, key: Any, alg: str, *, signature_only: bool = False
    ) -> dict[str, Any]:
        """Verify with ``key``; ``signature_only``: a bad signature raises
        ``_BadSignature`` (another key may still verify the token)."""
        import jwt  # loaded by _decode already: a lookup

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                options={"verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("token expired") from exc
        except jwt.InvalidSignatureError as exc:
            if signature_only:
                raise _BadSignature from exc
            raise InvalidToken(str(exc)) from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidToken(str(exc)) from exc
        return claims


class _BadSignature(Exception):
    """The key did not sign this token (another one may have)."""


def _string_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name, "")
    if not isinstance(value, str):
        raise InvalidToken(f"{name} claim must be a string")
    return value


def _subs(claims: dict[str, Any]) -> dict[str, msgspec.Raw | None]:
    """``{"subs": {"channel": {"info": ..., "b64info": ...}}}`` -> channel: chan_info."""
    subs = claims.get("subs", {})
    if not isinstance(subs, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in subs.items()
    ):
        raise InvalidToken("subs claim must map channel names to objects")
    return {channel: _info(options) for channel, options in subs.items()}


def _expire_at(claims: dict[str, Any]) -> int:
    """``expire_at`` wins over ``exp`` for the connection's lifetime (0: never)."""
    value = claims.get("expire_at", claims.get("exp", 0))
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidToken("exp/expire_at claims must be numbers")
    return int(value)


def _info(claims: dict[str, Any]) -> msgspec.Raw | None:
    if "b64info" in claims:
        encoded = claims["b64info"]
        if not isinstance(encoded, str):
            raise InvalidToken("b64info claim must be a string")
        try:
            decoded = base64.b64decode(encoded, validate=True)
            msgspec.json.decode(decoded)
        except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
            raise InvalidToken("b64info is not base64 of JSON") from exc
        return msgspec.Raw(decoded)
    if "info" in claims:
        return _raw(claims["info"])
    return None


def _raw(value: object) -> msgspec.Raw:
    return msgspec.Raw(msgspec.json.encode(value))


def make_token(
    secret: str,
    user: str,
    *,
    ttl: float | None = None,
    extra: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """An HS256 connection (or, with ``channel`` in ``extra``, subscription) token."""
    import jwt

    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {"sub": user, "iat": issued}
    if ttl is not None:
        claims["exp"] = issued + int(ttl)
    if extra:
        claims.update(extra)
    return jwt.encode(claims, secret, algorithm="HS256")
