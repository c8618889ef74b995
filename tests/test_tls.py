"""TLS: ``http_server.tls`` serves wss:// and https:// through hubbub's own listener.

Proven with a CA made for the test run (tests/tls_fixtures.py): centrifuge-python
(``ssl_context``) and centrifuge-js under Node (``NODE_EXTRA_CA_CERTS``, with
permessage-deflate, which Node's ``ws`` offers) connect over wss with the CA
trusted, and receive what is published through the HTTP API over https
(``cent``); a client that does not trust the CA gets no connection; the internal
port follows Centrifugo's rules (``tls`` too, ``internal_tls`` instead,
``tls_external``: plain); ``client_ca_pem`` requires client certificates. Every
bad TLS setting stops ``load_config`` (hence ``checkconfig`` and ``serve``)
with a message naming the key; ``tls_autocert`` and ``http3`` are refused,
never silently ignored.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cent import AsyncClient, PublishRequest
from cryptography.hazmat.primitives import serialization

from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from tests.conftest import DEFAULT_CONFIG, ServerFactory, merge, tls_config
from tests.sdk_helpers import EventProcess, PythonSubscriber
from tests.test_sdk_js import CLIENT_SCRIPT, JS_DIR, js_dependencies  # noqa: F401
from tests.tls_fixtures import TlsFiles

TIMEOUT = 10.0


def tls(**values: Any) -> dict[str, Any]:
    return {"http_server": {"tls": {"enabled": True, **values}}}


def config_error(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, base=merge(DEFAULT_CONFIG, data))
    return caught.value


# --- refusals at load time ----------------------------------------------------------------


def test_tls_needs_a_certificate_and_a_key(tls_files: TlsFiles) -> None:
    assert config_error(tls()).key == "http_server.tls.cert_pem"
    assert config_error(tls(cert_pem=str(tls_files.cert))).key == "http_server.tls.key_pem"


@pytest.mark.parametrize(
    ("which", "value", "words"),
    [
        ("cert_pem", "/nonexistent/cert.pem", "existing file"),
        ("key_pem", "/nonexistent/key.pem", "existing file"),
        ("cert_pem", "/", "cannot read"),  # a directory: unreadable as a file
        ("key_pem", __file__, "no PEM"),
    ],
)
def test_missing_unreadable_or_non_pem_files_are_refused_naming_the_key(
    tls_files: TlsFiles, which: str, value: str, words: str
) -> None:
    values = {"cert_pem": str(tls_files.cert), "key_pem": str(tls_files.key), which: value}
    error = config_error(tls(**values))
    assert error.key == f"http_server.tls.{which}"
    assert words in error.message, error.message


def test_a_key_that_does_not_match_the_certificate_is_refused(tls_files: TlsFiles) -> None:
    error = config_error(tls(cert_pem=str(tls_files.cert), key_pem=str(tls_files.other_key)))
    assert error.key == "http_server.tls.key_pem"
    assert "does not match the certificate in http_server.tls.cert_pem" in error.message


def test_an_encrypted_key_is_refused(tls_files: TlsFiles, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(tls_files.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    error = config_error(tls(cert_pem=str(tls_files.cert), key_pem=str(encrypted)))
    assert error.key == "http_server.tls.key_pem" and "encrypted" in error.message


def test_raw_and_base64_pem_values_are_accepted(tls_files: TlsFiles) -> None:
    cert, key = tls_files.cert.read_text(), tls_files.key.read_bytes()
    loaded = load_config(
        None,
        env={},
        base=merge(DEFAULT_CONFIG, tls(cert_pem=cert, key_pem=base64.b64encode(key).decode())),
    )
    assert loaded.config.http_server.tls.enabled
    assert not any("tls" in warning for warning in loaded.warnings)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"http_server": {"tls_autocert": {"enabled": True}}}, "http_server.tls_autocert.enabled"),
        ({"http_server": {"http3": {"enabled": True}}}, "http_server.http3.enabled"),
    ],
)
def test_acme_and_http3_are_refused_not_ignored(data: dict[str, Any], key: str) -> None:
    assert config_error(data).key == key


def test_keys_without_effect_are_warned_about(tls_files: TlsFiles) -> None:
    data = merge(
        tls(
            cert_pem=str(tls_files.cert),
            key_pem=str(tls_files.key),
            server_ca_pem=str(tls_files.ca),
            insecure_skip_verify=True,
        ),
        {"http_server": {"internal_tls": {"cert_pem": str(tls_files.cert)}}},
    )
    warnings = load_config(None, env={}, base=merge(DEFAULT_CONFIG, data)).warnings
    assert "http_server.tls.server_ca_pem only concerns TLS clients: a listener ignores it" in (
        warnings
    )
    assert any(w.startswith("http_server.tls.insecure_skip_verify") for w in warnings)
    assert (
        "http_server.internal_tls.cert_pem is set but http_server.internal_tls.enabled is false: "
        "no TLS is served" in warnings
    )


async def test_checkconfig_and_serve_refuse_a_mismatched_key(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    data = merge(
        DEFAULT_CONFIG, tls(cert_pem=str(tls_files.cert), key_pem=str(tls_files.other_key))
    )
    path.write_text(json.dumps(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    for command in (["checkconfig", str(path)], ["serve", "--config", str(path)]):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "hubbub.cli.main",
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 1, command
        assert b"http_server.tls.key_pem" in stderr and b"does not match" in stderr, stderr


# --- serving ------------------------------------------------------------------------------


async def test_python_sdk_over_wss_receives_from_the_api_over_https(
    start_server: ServerFactory,
) -> None:
    server = await start_server(tls=True)
    assert server.ws_url.startswith("wss://") and server.api_url.startswith("https://")
    channel = "chat:tls-python"
    async with PythonSubscriber(server.ws_url, channel, ssl_context=server.tls) as py:
        connector = aiohttp.TCPConnector(ssl=server.tls)
        async with aiohttp.ClientSession(connector=connector) as session:
            api = AsyncClient(server.api_url, server.api_key, session=session)
            result = await api.publish(PublishRequest(channel=channel, data={"over": "https"}))
        context = await py.next_publication()
    assert context.pub.data == {"over": "https"} and context.pub.offset == result.offset


async def test_js_sdk_over_wss_with_the_ca_trusted_and_compression(
    start_server: ServerFactory, tls_files: TlsFiles
) -> None:
    server = await start_server({"websocket": {"compression": True}}, tls=True)
    channel = "chat:tls-js"
    scenario = {"url": server.ws_url, "name": "js-tls", "channel": channel}
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(tls_files.ca)}
    js = await EventProcess.start(
        "node", str(CLIENT_SCRIPT), json.dumps(scenario), cwd=JS_DIR, label="js-tls", env=env
    )
    try:
        await js.next("connected", within=TIMEOUT)
        await js.next("subscribed", within=TIMEOUT)
        async with PythonSubscriber(server.ws_url, channel, ssl_context=server.tls) as py:
            text = "compressible " * 200
            await py.publish({"text": text})
            publication = await js.next("publication", within=TIMEOUT)
            assert publication["data"] == {"text": text}
            result = await js.request("publish", data={"from": "js"}, within=TIMEOUT)
            assert "error" not in result, result
            own = await py.next_publication()  # its own publication comes back first
            assert own.pub.data == {"text": text}
            context = await py.next_publication()
            assert context.pub.data == {"from": "js"}
            (session,) = [s for s in server.hub.sessions.values() if s.name == "js-tls"]
            assert session.transport.compressed  # type: ignore[attr-defined]
    finally:
        await js.close({"cmd": "exit"})


async def test_a_client_that_does_not_trust_the_ca_gets_no_connection(
    start_server: ServerFactory,
) -> None:
    server = await start_server(tls=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=ssl.create_default_context(), server_hostname="127.0.0.1"
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # no TLS at all
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(100), TIMEOUT)
        assert not answer.startswith(b"HTTP/1.1 200"), answer
    finally:
        writer.close()


async def _health(url: str, context: ssl.SSLContext | None) -> int:
    connector = aiohttp.TCPConnector(ssl=context if context is not None else False)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as response,
    ):
        return response.status


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("mode", ["tls", "internal_tls", "tls_external"])
async def test_the_internal_port_follows_centrifugos_tls_rules(
    start_server: ServerFactory, tls_files: TlsFiles, mode: str
) -> None:
    port = _free_port()
    extra: dict[str, Any] = {"http_server": {"internal_port": port}}
    if mode == "internal_tls":
        extra["http_server"]["internal_tls"] = tls_config(tls_files)["http_server"]["tls"]
    if mode == "tls_external":
        extra["http_server"]["tls_external"] = True
    server = await start_server(extra, tls=True)
    context = tls_files.client_context()
    assert await _health(f"https://127.0.0.1:{server.port}/health", context) == 200
    if mode == "tls_external":
        assert await _health(f"http://127.0.0.1:{port}/health", None) == 200
    else:
        assert await _health(f"https://127.0.0.1:{port}/health", context) == 200


async def test_client_ca_pem_requires_a_client_certificate(
    start_server: ServerFactory, tls_files: TlsFiles
) -> None:
    server = await start_server(
        {"http_server": {"tls": {"client_ca_pem": str(tls_files.ca)}}}, tls=True
    )
    url = f"https://127.0.0.1:{server.port}/health"
    with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
        await _health(url, tls_files.client_context())
    assert await _health(url, tls_files.client_context(with_certificate=True)) == 200
