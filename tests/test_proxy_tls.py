"""The event proxy over TLS, end to end: https:// and grpc:// backends with a test CA.

Each backend kind (aiohttp over https, gRPC over TLS) runs as its own process
with three TLS listeners (tests/proxy_backends/listeners.py): a certificate
for 127.0.0.1 signed by the CA made for the test run (tests/tls_fixtures.py),
the same requiring a client certificate (mutual TLS), and a certificate that
names only ``backend.hubbub.test``. hubbub's connect proxy is pointed at one
of them with the proxy's ``http.tls`` / ``grpc.tls`` keys, and a raw client
connects without a token. What is proved: the CA from the config is what the
backend's certificate is checked against (path, PEM text or base64 of it);
hubbub presents its client certificate when configured (the backend sees its
name) and the backend refuses it otherwise; ``server_name`` is the name the
certificate is checked against; an unknown CA, a missing client certificate
or a certificate for another name each give the client error 100 (temporary),
exactly one WARNING line naming the proxy, the endpoint and the TLS cause,
no traceback, and other clients keep connecting.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.proxy_fixtures import Backend, start_backend
from tests.tls_fixtures import NAMED_HOST, TlsFiles, make_tls_files
from tests.wsclient import connected_client, open_client

INTERNAL = {"code": 100, "message": "internal server error", "temporary": True}
UNTRUSTED = "not trusted: unable to get local issuer certificate"


@pytest.fixture(scope="module", params=["aiohttp", "grpc"])
def backend(request: pytest.FixtureRequest, tls_files: TlsFiles) -> Iterator[Backend]:
    running = start_backend(request.param, tls=tls_files.ca.parent)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A second CA: the backend's certificate is not signed by it."""
    return make_tls_files(tmp_path_factory.mktemp("other-ca"))


def connect_proxy(backend: Backend, listener: str, **tls: Any) -> dict[str, Any]:
    """Configuration: the connect proxy at ``backend``'s TLS ``listener``, with ``tls``."""
    transport = "grpc" if backend.kind == "grpc" else "http"
    return {
        "client": {
            "allow_anonymous_connect_without_token": False,
            "proxy": {
                "connect": {
                    "enabled": True,
                    "endpoint": backend.tls_endpoint(listener, "connect"),
                    "timeout": "3s",
                    "http_headers": ["Cookie"],
                    transport: {"tls": {"enabled": True, **tls}},
                }
            },
        }
    }


async def connect_as(server: RunningServer, user: str) -> dict[str, Any]:
    """A client without a token connects (the proxy decides); its connect reply."""
    async with open_client(server.ws_url, headers={"Cookie": f"user={user}"}) as client:
        reply: dict[str, Any] = await client.connect()
        return reply


async def backend_saw(backend: Backend, user: str) -> dict[str, str]:
    """The headers of the connect request the backend received for ``user``."""
    entries = await backend.wait_requests("connect", 1)
    [entry] = [e for e in entries if e["headers"].get("cookie") == f"user={user}"]
    headers: dict[str, str] = entry["headers"]
    return headers


def proxy_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hubbub.proxy"]


async def assert_refused(
    server: RunningServer,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    cause: str,
) -> str:
    """A connect through the proxy fails cleanly; the one log line's message."""
    reply = await connect_as(server, "refused")
    assert reply.get("error") == INTERNAL, reply
    # Other clients are served meanwhile (a token connection needs no proxy).
    async with connected_client(server.ws_url, server.token("bystander")) as client:
        await client.result("subscribe", {"channel": "chat:tls"})
    [line] = proxy_lines(caplog)
    message = line.getMessage()
    assert line.levelno == logging.WARNING
    assert "\n" not in message
    assert "connect proxy" in message and backend.tls_endpoint("tls", "")[:8] in message
    assert cause.lower() in message.lower(), message
    assert all(r.exc_info is None for r in caplog.records), caplog.text
    assert "Traceback" not in caplog.text
    # Nor a line of grpcio's own beside the logging module (the backends are
    # started with GRPC_VERBOSITY=ERROR: what is left is hubbub's process).
    assert "Handshake failed" not in capfd.readouterr().err
    return message


@pytest.mark.parametrize("form", ["path", "pem", "base64"])
async def test_the_backends_certificate_is_checked_against_the_configured_ca(
    start_server: ServerFactory, backend: Backend, tls_files: TlsFiles, form: str
) -> None:
    pem = tls_files.ca.read_text()
    ca = {
        "path": str(tls_files.ca),
        "pem": pem,
        "base64": base64.b64encode(pem.encode()).decode(),
    }[form]
    server = await start_server(connect_proxy(backend, "tls", server_ca_pem=ca))
    user = f"tls-{form}"
    reply = await connect_as(server, user)
    assert reply["connect"]["data"] == {"welcome": user}
    headers = await backend_saw(backend, user)
    assert headers["_tls_client"] == ""  # over TLS, without a client certificate


async def test_mutual_tls_presents_the_client_certificate(
    start_server: ServerFactory, backend: Backend, tls_files: TlsFiles
) -> None:
    server = await start_server(
        connect_proxy(
            backend,
            "mtls",
            server_ca_pem=str(tls_files.ca),
            cert_pem=str(tls_files.client_cert),
            key_pem=tls_files.client_key.read_text(),
        )
    )
    reply = await connect_as(server, "mutual")
    assert reply["connect"]["data"] == {"welcome": "mutual"}
    headers = await backend_saw(backend, "mutual")
    assert headers["_tls_client"] == "hubbub test client"


async def test_server_name_is_the_name_the_certificate_is_checked_against(
    start_server: ServerFactory, backend: Backend, tls_files: TlsFiles
) -> None:
    # The endpoint says 127.0.0.1; the certificate names only NAMED_HOST.
    server = await start_server(
        connect_proxy(backend, "named", server_ca_pem=str(tls_files.ca), server_name=NAMED_HOST)
    )
    reply = await connect_as(server, "named")
    assert reply["connect"]["data"] == {"welcome": "named"}


async def test_an_unknown_ca_is_refused_with_one_clear_line(
    start_server: ServerFactory,
    backend: Backend,
    other_ca: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(connect_proxy(backend, "tls", server_ca_pem=str(other_ca.ca)))
    await assert_refused(server, backend, caplog, capfd, UNTRUSTED)


async def test_the_systems_cas_do_not_trust_a_private_ca(
    start_server: ServerFactory,
    backend: Backend,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(connect_proxy(backend, "tls"))  # no server_ca_pem
    await assert_refused(server, backend, caplog, capfd, UNTRUSTED)


async def test_a_backend_requiring_a_client_certificate_refuses_one_without(
    start_server: ServerFactory,
    backend: Backend,
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(connect_proxy(backend, "mtls", server_ca_pem=str(tls_files.ca)))
    await assert_refused(server, backend, caplog, capfd, "requires a client certificate")


async def test_without_server_name_a_certificate_for_another_name_is_refused(
    start_server: ServerFactory,
    backend: Backend,
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO)
    server = await start_server(connect_proxy(backend, "named", server_ca_pem=str(tls_files.ca)))
    await assert_refused(server, backend, caplog, capfd, "not valid for 127.0.0.1")


def test_the_backend_listeners_are_what_the_tests_think(tls_files: TlsFiles) -> None:
    """The named certificate really names only NAMED_HOST (no 127.0.0.1)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(Path(tls_files.named_cert).read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [NAMED_HOST]
    assert names.get_values_for_type(x509.IPAddress) == []
