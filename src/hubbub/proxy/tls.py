"""TLS for connections to the backend, built from a ``tls`` config object.

Rule: one SSL context (HTTP) or one set of channel credentials (gRPC) per
proxy, built when the proxy is created; PEM values were checked when the
configuration was loaded. A TLS failure is told in the same words whatever
the transport (``untrusted``, ``wrong_name``, ``CLOSED``): one short cause
for the proxy's log line, never the TLS library's whole error chain.
"""

from __future__ import annotations

import re
import ssl

from hubbub.config.backend import TLSConfig
from hubbub.config.tls import client_context, load_pem


def ssl_context(tls: TLSConfig, key: str) -> ssl.SSLContext | None:
    """The context for an https:// endpoint; None: the default verification."""
    return client_context(tls, key) if tls.enabled else None


def grpc_credentials(tls: TLSConfig, key: str) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(root CA, client key, client certificate) for ``grpc.ssl_channel_credentials``."""
    root = load_pem(tls.server_ca_pem, f"{key}.server_ca_pem") if tls.server_ca_pem else None
    private = load_pem(tls.key_pem, f"{key}.key_pem") if tls.key_pem else None
    cert = load_pem(tls.cert_pem, f"{key}.cert_pem") if tls.cert_pem else None
    return root, private, cert


#: A backend that requires a client certificate closes the connection when none
#: (or one it does not trust) is presented; over TLS 1.3 the client learns it
#: only as a closed connection, after the handshake.
CLOSED = (
    "TLS: the backend closed the connection (a backend that requires a client "
    "certificate does so when none, or one it does not trust, is presented: tls.cert_pem)"
)


def untrusted(why: str) -> str:
    return f"TLS: the backend's certificate is not trusted: {why} (tls.server_ca_pem)"


def wrong_name(host: str) -> str:
    return (
        f"TLS: the backend's certificate is not valid for {host} "
        "(tls.server_name names the host to check it against)"
    )


def verify_failure(error: BaseException, host: str) -> str:
    """The cause of a certificate ``error`` from the ssl module (HTTP proxies)."""
    if isinstance(error, ssl.SSLCertVerificationError):
        if error.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME / IP_ADDRESS_MISMATCH
            return wrong_name(host)
        return untrusted(error.verify_message)
    return untrusted(str(error))


_VERIFY_FAILED = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")


def grpc_tls_failure(details: str, host: str) -> str | None:
    """The cause of a failed gRPC call over TLS, when TLS is what failed."""
    if "Hostname Verification Check failed" in details:
        return wrong_name(host)
    found = _VERIFY_FAILED.search(details)
    if found:
        return untrusted(found.group(1).strip())
    if "Socket closed" in details or "Connection reset" in details:
        return CLOSED
    if "handshake failed" in details.lower():
        return "TLS: the handshake with the backend failed"
    return None
