"""TLS for connections to the backend, built from a ``tls`` config object.

Rule: one SSL context (HTTP) or one set of channel credentials (gRPC) per
proxy, built when the proxy is created; PEM values were checked when the
configuration was loaded.
"""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from hubbub.config.backend import TLSConfig
from hubbub.config.backend_checks import read_pem


def ssl_context(tls: TLSConfig, key: str) -> ssl.SSLContext | None:
    """The context for an https:// endpoint; None: the default verification."""
    if not tls.enabled:
        return None
    context = ssl.create_default_context()
    if tls.server_ca_pem:
        pem = read_pem(tls.server_ca_pem, f"{key}.server_ca_pem")
        context.load_verify_locations(cadata=pem.decode())
    if tls.cert_pem and tls.key_pem:
        cert = read_pem(tls.cert_pem, f"{key}.cert_pem")
        private = read_pem(tls.key_pem, f"{key}.key_pem")
        # The ssl module loads a client certificate from files only.
        with tempfile.TemporaryDirectory() as folder:
            cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
            cert_file.write_bytes(cert)
            key_file.write_bytes(private)
            context.load_cert_chain(cert_file, key_file)
    if tls.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def grpc_credentials(tls: TLSConfig, key: str) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(root CA, client key, client certificate) for ``grpc.ssl_channel_credentials``."""
    root = read_pem(tls.server_ca_pem, f"{key}.server_ca_pem") if tls.server_ca_pem else None
    private = read_pem(tls.key_pem, f"{key}.key_pem") if tls.key_pem else None
    cert = read_pem(tls.cert_pem, f"{key}.cert_pem") if tls.cert_pem else None
    return root, private, cert
