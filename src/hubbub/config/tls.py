"""TLS material from Centrifugo-style values: a listener's ``ssl.SSLContext``
(``server_context``) and the context of a connection hubbub opens (``client_context``:
Redis, NATS, proxies, webhooks).

Rule: a ``*_pem`` value is raw PEM, base64 of PEM, or a file path, tried in
that order as Centrifugo v6 does. Everything that can go wrong (a missing or
unreadable file, no PEM in it, a certificate or key that does not parse, an
encrypted key, a key that does not match its certificate) raises
``ConfigError`` naming the key, so ``hubbub checkconfig`` and ``hubbub serve``
refuse with the same message. Nothing here listens or logs.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from pathlib import Path

from hubbub.config.backend import TLSConfig
from hubbub.config.model import TlsConfig
from hubbub.errors import ConfigError

__all__ = ["client_context", "load_pem", "server_context"]

_PEM_BEGIN = b"-----BEGIN "


def load_pem(value: str, key: str) -> bytes:
    """The PEM bytes ``value`` stands for (raw, base64 or a file); ConfigError naming ``key``."""
    text = value.strip()
    if text.startswith(_PEM_BEGIN.decode()):
        return text.encode()
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.lstrip().startswith(_PEM_BEGIN):
        return decoded
    path = Path(value)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(key, f"neither PEM, base64 PEM nor an existing file: {value!r}") from None
    except OSError as exc:
        raise ConfigError(key, f"cannot read {value}: {exc.strerror or exc}") from None
    if _PEM_BEGIN not in data:
        raise ConfigError(key, f"{value} holds no PEM data")
    return data


def server_context(tls: TlsConfig, key: str) -> ssl.SSLContext:
    """The server-side context for ``tls`` (the section at dotted ``key``, e.g.
    ``http_server.tls``): its certificate chain, and client verification when
    ``client_ca_pem`` is set. TLS 1.2 is the oldest version offered."""
    cert_key, key_key = f"{key}.cert_pem", f"{key}.key_pem"
    if not tls.cert_pem:
        raise ConfigError(cert_key, f"missing: {key}.enabled needs a certificate")
    if not tls.key_pem:
        raise ConfigError(key_key, f"missing: {key}.enabled needs the certificate's private key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, tls.cert_pem, tls.key_pem, key)
    if tls.client_ca_pem:
        _trust(context, tls.client_ca_pem, f"{key}.client_ca_pem")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_chain(context: ssl.SSLContext, cert_pem: str, key_pem: str, key: str) -> None:
    """Load the certificate ``cert_pem`` and its private key ``key_pem`` (of the
    section at ``key``) into ``context``; ConfigError naming the faulty key."""
    cert_key, key_key = f"{key}.cert_pem", f"{key}.key_pem"
    cert = load_pem(cert_pem, cert_key)
    private = load_pem(key_pem, key_key)
    # Imported here: a node without TLS does not pay for them at start-up.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        x509.load_pem_x509_certificates(cert)
    except ValueError as exc:
        raise ConfigError(cert_key, f"not a valid PEM certificate: {exc}") from None
    try:
        serialization.load_pem_private_key(private, password=None)
    except TypeError:
        raise ConfigError(key_key, "the private key is encrypted: give it unencrypted") from None
    except (ValueError, binascii.Error) as exc:
        raise ConfigError(key_key, f"not a valid PEM private key: {exc}") from None
    # The ssl module loads a chain from files only: a private directory, removed at once.
    with tempfile.TemporaryDirectory(prefix="hubbub-tls-") as directory:
        cert_file = os.path.join(directory, "cert.pem")
        key_file = os.path.join(directory, "key.pem")
        for path, data in ((cert_file, cert), (key_file, private)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
        try:
            context.load_cert_chain(cert_file, key_file)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                message = f"does not match the certificate in {cert_key}"
                raise ConfigError(key_key, message) from None
            raise ConfigError(cert_key, f"cannot be used with {key_key}: {exc}") from None


class _NamedContext(ssl.SSLContext):
    """A client context that checks (and sends as SNI) ``server_name`` whatever host
    the library connecting with it names: redis-py has no parameter for it."""

    server_name = ""

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return super().wrap_bio(incoming, outgoing, server_side, self.server_name, session)


def client_context(tls: TLSConfig, key: str) -> ssl.SSLContext:
    """The context of a connection hubbub opens, for the client ``tls`` section at
    dotted ``key`` (e.g. ``engine.redis.tls``): the server is verified against
    ``server_ca_pem`` (else the system's authorities) and ``server_name`` (else the
    host connected to) unless ``insecure_skip_verify``; ``cert_pem`` + ``key_pem``
    are the client certificate of mutual TLS. TLS 1.2 is the oldest version offered.
    ``client_ca_pem`` means nothing to a client (Centrifugo ignores it there too)."""
    if bool(tls.cert_pem) != bool(tls.key_pem):
        missing = "key_pem" if tls.cert_pem else "cert_pem"
        raise ConfigError(f"{key}.{missing}", "missing: cert_pem and key_pem go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.server_name:
        named = _NamedContext(ssl.PROTOCOL_TLS_CLIENT)
        named.server_name = tls.server_name
        context = named
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.server_ca_pem:
        _trust(context, tls.server_ca_pem, f"{key}.server_ca_pem")
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.cert_pem:
        _load_chain(context, tls.cert_pem, tls.key_pem, key)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _trust(context: ssl.SSLContext, pem: str, key: str) -> None:
    """The certificate authorities of ``pem`` (``key``'s value: raw, base64 or a
    file) are the ones ``context`` checks its peer against."""
    authorities = load_pem(pem, key)
    try:
        context.load_verify_locations(cadata=authorities.decode("ascii", "replace"))
    except ssl.SSLError as exc:
        raise ConfigError(key, f"not a valid PEM certificate: {exc}") from None
