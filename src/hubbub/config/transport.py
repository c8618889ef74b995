"""Checks of the keys that change how connections are carried: TLS and ``websocket.*``.

Rule: a key that changes security or transport is honoured, refused with a
``ConfigError`` naming it, or warned about; never silently ignored. TLS
material is loaded here once (so ``checkconfig`` catches a bad certificate);
the server builds its contexts again at startup with the same function.
"""

from __future__ import annotations

import re

from hubbub.config.model import Config, TlsConfig
from hubbub.config.tls import server_context
from hubbub.errors import ConfigError

__all__ = ["check_transport"]

_PATH = re.compile(r"/[^\s?#]*")
_CLIENT_ONLY = ("server_ca_pem", "insecure_skip_verify", "server_name")


def check_transport(config: Config) -> list[str]:
    """Refuse what cannot be served; return warnings for what has no effect."""
    warnings: list[str] = []
    server = config.http_server
    if server.tls_autocert.enabled:
        raise ConfigError(
            "http_server.tls_autocert.enabled",
            "automatic ACME certificates are not supported: get a certificate (certbot, "
            "your CA) and set http_server.tls, or end TLS at a proxy in front",
        )
    if server.http3.enabled:
        raise ConfigError(
            "http_server.http3.enabled", "HTTP/3 is not supported: hubbub serves HTTP/1.1"
        )
    warnings += _check_tls(server.tls, "http_server.tls")
    if server.internal_tls.enabled and not server.internal_port:
        warnings.append("http_server.internal_tls has no effect without http_server.internal_port")
    else:
        warnings += _check_tls(server.internal_tls, "http_server.internal_tls")
    if server.tls_external and not server.tls.enabled:
        warnings.append("http_server.tls_external has no effect without http_server.tls.enabled")

    websocket = config.websocket
    if not _PATH.fullmatch(websocket.handler_prefix):
        raise ConfigError(
            "websocket.handler_prefix",
            f"must be a path starting with /, got {websocket.handler_prefix!r}",
        )
    return warnings


def _check_tls(tls: TlsConfig, key: str) -> list[str]:
    if not tls.enabled:
        given = [name for name in ("cert_pem", "key_pem", "client_ca_pem") if getattr(tls, name)]
        if given:
            return [f"{key}.{given[0]} is set but {key}.enabled is false: no TLS is served"]
        return []
    server_context(tls, key)  # raises ConfigError naming the bad key
    return [
        f"{key}.{name} only concerns TLS clients: a listener ignores it"
        for name in _CLIENT_ONLY
        if getattr(tls, name)
    ]
