"""Signatures of shared poll keys: which keys a client may track (Centrifugo 6.8's format).

    signature = "iat:exp:hex(HMAC-SHA256(secret, "iat:exp:user:channel:keys_hash"))"
    keys_hash = hex(SHA-256(the keys joined with NUL, in the order the client sends))

Rule: pure functions of the signature, the secrets and the clock. ``exp`` 0 never
expires; a signature past ``exp`` is still accepted for ``grace`` seconds (the
client is renewing it), then it is expired. During a key rotation the previous
secret is accepted for signatures issued (``iat``) up to ``previous_valid_until``
(0: without limit). Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

import msgspec


class InvalidSignature(Exception):
    """Malformed, or not made with a configured secret over these keys."""


class SignatureExpired(Exception):
    """Valid, but past its ``exp`` and the grace period."""


class PollSecrets(msgspec.Struct, frozen=True):
    secret: str
    previous: str = ""
    previous_valid_until: int = 0  # unix seconds; 0: no limit


def keys_hash(keys: Sequence[str]) -> str:
    return hashlib.sha256("\x00".join(keys).encode()).hexdigest()


def sign(secret: str, user: str, channel: str, keys: Sequence[str], iat: int, exp: int) -> str:
    """A signature as a backend makes it (tests and the Python API use it)."""
    payload = f"{iat}:{exp}:{user}:{channel}:{keys_hash(keys)}"
    mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{iat}:{exp}:{mac}"


def verify(
    signature: str,
    secrets: PollSecrets,
    *,
    user: str,
    channel: str,
    keys: Sequence[str],
    now: float,
    grace: float,
) -> int:
    """The signature's ``exp`` (0: none) if it signs ``keys`` for ``user`` in ``channel``."""
    parts = signature.split(":")
    if len(parts) != 3 or not all(parts):
        raise InvalidSignature("expected iat:exp:hmac")
    iat_text, exp_text, mac = parts
    if not (iat_text.isdigit() and exp_text.isdigit()):
        raise InvalidSignature("iat and exp must be unix seconds")
    iat, exp = int(iat_text), int(exp_text)
    payload = f"{iat}:{exp}:{user}:{channel}:{keys_hash(keys)}".encode()
    valid = _matches(secrets.secret, payload, mac)
    if not valid and secrets.previous:
        in_time = not secrets.previous_valid_until or iat <= secrets.previous_valid_until
        valid = in_time and _matches(secrets.previous, payload, mac)
    if not valid:
        raise InvalidSignature("the signature does not match the keys")
    if exp and now > exp + grace:
        raise SignatureExpired(f"expired at {exp}")
    return exp


def _matches(secret: str, payload: bytes, mac: str) -> bool:
    expected = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), mac.encode())
