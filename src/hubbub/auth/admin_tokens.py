"""Admin tokens: what the admin UI gets after a correct password (``POST /admin/auth``).

Rule: a token is ``1.<issued unix seconds>.<HMAC-SHA256 of "1.<issued>" with
admin.secret>`` (the MAC in unpadded base64url). It names no one (there is one
admin password), expires ``ADMIN_TOKEN_TTL`` after issue, and every token dies
when ``admin.secret`` changes. Checks compare in constant time. Pure functions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

__all__ = ["ADMIN_TOKEN_TTL", "admin_token_valid", "make_admin_token"]

#: Seconds an admin token is accepted after it is issued.
ADMIN_TOKEN_TTL = 7 * 24 * 3600
_VERSION = "1"


def _mac(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def make_admin_token(secret: str, *, now: float | None = None) -> str:
    """A fresh admin token signed with ``secret`` (non-empty)."""
    if not secret:
        raise ValueError("admin tokens need a secret")
    payload = f"{_VERSION}.{int(time.time() if now is None else now)}"
    return f"{payload}.{_mac(secret, payload)}"


def admin_token_valid(
    secret: str, token: str, *, now: float | None = None, ttl: float = ADMIN_TOKEN_TTL
) -> bool:
    """Whether ``token`` was made with ``secret`` and has not expired."""
    if not secret or token.count(".") != 2:
        return False
    version, issued, mac = token.split(".")
    if version != _VERSION or not issued.isdigit():
        return False
    if not hmac.compare_digest(mac.encode(), _mac(secret, f"{version}.{issued}").encode()):
        return False
    age = (time.time() if now is None else now) - int(issued)
    return -60 <= age <= ttl  # a minute of clock skew between nodes
