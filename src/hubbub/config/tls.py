"""TLS material from Centrifugo-style values, and a listener's ``ssl.SSLContext``.

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

from hubbub.config.model import TlsConfig
from hubbub.errors import ConfigError

__all__ = ["load_pem", "server_context"]

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
    cert = load_pem(tls.cert_pem, cert_key)
    private = load_pem(tls.key_pem, key_key)
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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
    if tls.client_ca_pem:
        ca_key = f"{key}.client_ca_pem"
        authorities = load_pem(tls.client_ca_pem, ca_key)
        try:
            context.load_verify_locations(cadata=authorities.decode("ascii", "replace"))
        except ssl.SSLError as exc:
            raise ConfigError(ca_key, f"not a valid PEM certificate: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
