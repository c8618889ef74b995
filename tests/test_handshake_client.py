"""The client side of the opening handshake: request, response parsing, accept check."""

from __future__ import annotations

from hubbub.websocket.handshake import (
    accept_key,
    accept_response,
    client_request,
    new_key,
    parse_head,
    parse_response,
    upgrade_problem,
)


def test_rfc_example_accept_key() -> None:
    # RFC 6455 section 1.3's worked example.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_request_is_an_upgrade_the_server_parser_accepts() -> None:
    key = new_key()
    raw = client_request("127.0.0.1:9", "/ws?x=1", key, origin="http://a.example")
    head = parse_head(raw)
    assert head is not None and head.path == "/ws" and head.get("origin") == "http://a.example"
    assert head.method == "GET" and head.version == "HTTP/1.1"
    assert head.get("sec-websocket-key") == key and head.get("sec-websocket-version") == "13"
    assert "websocket" in head.tokens("upgrade") and "upgrade" in head.tokens("connection")


def test_server_answer_parses_and_checks() -> None:
    key = new_key()
    head = parse_response(accept_response(key))
    assert head is not None and head.status == 101
    assert upgrade_problem(head, key) is None
    assert upgrade_problem(head, new_key()) == "wrong Sec-WebSocket-Accept"


def test_refusals_and_garbage() -> None:
    head = parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    assert head is not None and upgrade_problem(head, new_key()) == "status 403 Forbidden"
    assert parse_response(b"SSH-2.0-x\r\n\r\n") is None
    assert parse_response(b"HTTP/1.1 101 OK\r\nno colon here\r\n\r\n") is None
    missing = parse_response(b"HTTP/1.1 101 Switching\r\nConnection: upgrade\r\n\r\n")
    assert missing is not None and upgrade_problem(missing, "k") == "no 'Upgrade: websocket' header"
