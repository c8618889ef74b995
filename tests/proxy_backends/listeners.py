"""TLS listeners of the test backends: ``--tls DIR`` (a tests/tls_fixtures.py directory).

With it, a backend serves the same logic on three more ports, each over TLS:
  "tls":   the server certificate for 127.0.0.1, signed by the test CA;
  "mtls":  the same, and a client certificate signed by the CA is required;
  "named": a certificate naming only tls_fixtures.NAMED_HOST (for ``server_name``).
The plain port stays (it also answers GET /requests for the assertions). The
common name of a client certificate a request came with is logged with its
headers as ``_tls_client``.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path
from typing import Any

#: Listener name -> (certificate file, key file, client certificate required).
LISTENERS = {
    "tls": ("cert.pem", "key.pem", False),
    "mtls": ("cert.pem", "key.pem", True),
    "named": ("named.pem", "named-key.pem", False),
}


def tls_directory(argv: list[str] | None = None) -> Path | None:
    args = sys.argv[1:] if argv is None else argv
    if "--tls" in args:
        return Path(args[args.index("--tls") + 1])
    return None


def server_contexts(directory: Path) -> dict[str, ssl.SSLContext]:
    contexts = {}
    for name, (cert, key, mutual) in LISTENERS.items():
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(directory / cert, directory / key)
        if mutual:
            context.load_verify_locations(directory / "ca.pem")
            context.verify_mode = ssl.CERT_REQUIRED
        contexts[name] = context
    return contexts


def grpc_credentials(directory: Path) -> dict[str, Any]:
    import grpc

    credentials = {}
    for name, (cert, key, mutual) in LISTENERS.items():
        pair = ((directory / key).read_bytes(), (directory / cert).read_bytes())
        credentials[name] = grpc.ssl_server_credentials(
            [pair],
            root_certificates=(directory / "ca.pem").read_bytes() if mutual else None,
            require_client_auth=mutual,
        )
    return credentials


def common_name(peercert: Any) -> str:
    """The CN of a certificate as ``ssl`` returns it (``getpeercert()``), or ""."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""
