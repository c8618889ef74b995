"""Log lines an operator reads: who connected from where, who was sent away and why.

In-process cases read the records (``caplog``) and their structured fields;
the format cases run ``hubbub serve`` as a process and parse what it prints,
text and JSON. A Redis outage must leave a few warning lines, never a
traceback, and clients get error 100 (temporary).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hubbub.auth.tokens import make_token
from hubbub.config.loader import load_config
from hubbub.config.model import LogConfig
from hubbub.engines.factory import engine_from_config
from hubbub.hub.hub import Hub
from hubbub.server.address import client_address
from hubbub.server.logs import JsonFormatter, TextFormatter, setup_logging
from hubbub.server.run import start, transport_errors_in_one_line
from tests.conftest import API_KEY, DEFAULT_CONFIG, SECRET, RunningServer, ServerFactory, merge
from tests.rawws import RawWS
from tests.redis_fixtures import RedisProcess, free_port, own_redis  # noqa: F401 (fixture)
from tests.wsclient import connected_client, open_client

TIMEOUT = 10.0


@pytest.fixture
def client_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="hubbub")
    yield caplog


def events(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


def fields(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(record, "fields", {})
    return found


async def wait_for_record(
    caplog: pytest.LogCaptureFixture, message: str, **expected: Any
) -> logging.LogRecord:
    async with asyncio.timeout(TIMEOUT):
        while True:
            for record in events(caplog, message):
                if all(fields(record).get(k) == v for k, v in expected.items()):
                    return record
            await asyncio.sleep(0.02)


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


async def api(server: RunningServer, method: str, params: dict[str, Any]) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.api_url}/{method}", json=params, headers={"X-API-Key": API_KEY}
        ) as response,
    ):
        body: dict[str, Any] = await response.json()
        return body


# --- what is logged ----------------------------------------------------------------


async def test_connect_and_disconnect_name_client_user_and_address(
    server: RunningServer, client_log: pytest.LogCaptureFixture
) -> None:
    async with connected_client(server.ws_url, server.token("alice")) as client:
        connected = await wait_for_record(client_log, "client connected", user="alice")
        assert connected.levelno == logging.DEBUG
        assert fields(connected) == {
            "client": client.client_id,
            "user": "alice",
            "addr": "127.0.0.1",
        }
    gone = await wait_for_record(client_log, "client disconnected", client=client.client_id)
    assert gone.levelno == logging.DEBUG  # the client left: routine
    assert fields(gone)["by"] == "client" and fields(gone)["user"] == "alice"

    async with connected_client(server.ws_url, server.token("bob")) as client:
        assert (await api(server, "disconnect", {"user": "bob"})) == {"result": {}}
        assert await client.wait_closed() == 3503
    gone = await wait_for_record(client_log, "client disconnected", user="bob")
    assert gone.levelno == logging.INFO  # the server sent it away: news
    assert fields(gone) == {
        "client": client.client_id,
        "user": "bob",
        "addr": "127.0.0.1",
        "code": 3503,
        "reason": "force disconnect",
        "by": "server",
    }


async def test_forwarded_address_believed_only_from_trusted_proxies(
    start_server: ServerFactory, client_log: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7, 127.0.0.1"}
    trusting = await start_server({"http_server": {"trusted_proxies": ["127.0.0.0/8"]}})
    async with connected_client(trusting.ws_url, trusting.token("carol"), headers=headers):
        record = await wait_for_record(client_log, "client connected", user="carol")
    # 127.0.0.1 is a trusted proxy; 203.0.113.7 is the rightmost hop that is not.
    assert fields(record)["addr"] == "203.0.113.7"

    untrusting = await start_server()  # no trusted proxies: the header is anyone's claim
    async with connected_client(untrusting.ws_url, untrusting.token("dave"), headers=headers):
        record = await wait_for_record(client_log, "client connected", user="dave")
    assert fields(record)["addr"] == "127.0.0.1"


def test_client_address_rules() -> None:
    def headers(**values: str) -> Any:
        return lambda name: values.get(name.replace("-", "_"))

    trusted = ("10.0.0.0/8", "::1")
    assert client_address("10.1.2.3", headers(x_forwarded_for="1.2.3.4"), trusted) == "1.2.3.4"
    assert client_address("8.8.8.8", headers(x_forwarded_for="1.2.3.4"), trusted) == "8.8.8.8"
    assert client_address("::1", headers(x_real_ip=" 5.6.7.8 "), trusted) == "5.6.7.8"
    assert client_address("10.0.0.1", headers(), trusted) == "10.0.0.1"
    chain = "9.9.9.9, 1.2.3.4, 10.0.0.2"
    assert client_address("10.0.0.1", headers(x_forwarded_for=chain), trusted) == "1.2.3.4"
    assert client_address("10.0.0.1", headers(x_forwarded_for="10.0.0.3"), trusted) == "10.0.0.3"
    assert client_address("10.0.0.1", headers(x_forwarded_for="1.1.1.1"), ()) == "10.0.0.1"


async def test_a_misbehaving_client_is_one_line(
    start_server: ServerFactory, client_log: pytest.LogCaptureFixture
) -> None:
    server = await start_server({"client": {"command_rate_limit": 1, "command_rate_burst": 3}})
    async with connected_client(server.ws_url, server.token("eve")) as client:
        flood = [
            {"id": client.new_id(), "presence_stats": {"channel": "chat:x"}} for _ in range(50)
        ]
        await client.send_frame(*flood)
        assert await client.wait_closed() == 3013
    await wait_for_record(client_log, "client disconnected", user="eve")
    await asyncio.sleep(0.1)
    lines = [
        r
        for r in client_log.records
        if r.levelno >= logging.INFO and fields(r).get("client") == client.client_id
    ]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert fields(lines[0])["code"] == 3013 and "command_rate_burst" in fields(lines[0])["detail"]


async def test_bad_frame_and_invalid_token_are_one_line_each(
    server: RunningServer, client_log: pytest.LogCaptureFixture
) -> None:
    async with open_client(server.ws_url) as client:
        await client.send_frame({"id": 1, "connect": {"token": "not-a-token"}})
        assert await client.wait_closed() == 3500
    raw = await RawWS.open("127.0.0.1", server.port)
    await raw.send(bytes([0x81, 0x05]) + b"hello")  # unmasked: a protocol error
    assert await raw.read_close_code() == 1002
    await raw.close()
    await wait_until(lambda: len(events(client_log, "client disconnected")) >= 2)
    info = [r for r in client_log.records if r.levelno >= logging.INFO]
    details = sorted(fields(r)["detail"] for r in info if "detail" in fields(r))
    assert [d.split(":")[0] for d in details] == ["bad frame", "invalid connection token"], details
    assert len(info) == 2, [r.getMessage() for r in info]
    assert not any(r.exc_info for r in client_log.records)


async def test_refused_origin_says_what_was_compared(
    server: RunningServer, client_log: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with open_client(server.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.status == 403
    (record,) = events(client_log, "refused handshake: 403 origin not allowed")
    assert fields(record)["addr"] == "127.0.0.1"
    detail = fields(record)["detail"]
    assert f"Origin 'evil.example' is not the request's Host '127.0.0.1:{server.port}'" in detail
    assert "client.allowed_origins entry (none set)" in detail


# --- formats -----------------------------------------------------------------------


def test_formatters_write_one_line_per_record() -> None:
    record = logging.LogRecord("hubbub.client", logging.INFO, __file__, 1, "gone\nnow", (), None)
    record.fields = {"client": "c1", "detail": 'a "quoted" thing', "code": 3008}
    text = TextFormatter().format(record)
    assert text.endswith(
        ' INFO hubbub.client: gone\n    now client=c1 detail="a \\"quoted\\" thing" code=3008'
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "info" and entry["logger"] == "hubbub.client"
    assert entry["message"] == "gone\nnow" and entry["code"] == 3008
    assert set(entry) == {"level", "time", "logger", "message", "client", "detail", "code"}


def test_setup_logging_levels(tmp_path: Path) -> None:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    try:
        path = tmp_path / "hubbub.log"
        setup_logging(LogConfig(level="trace", format="json", file=str(path)))
        logging.getLogger("hubbub.client").log(5, "command", extra={"fields": {"method": "rpc"}})
        setup_logging(LogConfig(level="none"))
        logging.getLogger("hubbub").error("not written anywhere")
        lines = path.read_text().splitlines()
        assert [json.loads(line)["level"] for line in lines] == ["trace"]
        assert json.loads(lines[0])["method"] == "rpc"
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(saved[0])
        for handler in saved[1]:
            root.addHandler(handler)


@pytest.fixture
async def serve_json(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """``hubbub serve`` with JSON logs at trace level into a file; (port, log path)."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    config = merge(
        DEFAULT_CONFIG,
        {
            "http_server": {"port": port},
            "log": {"level": "trace", "format": "json", "file": str(log_path)},
        },
    )
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBBUB_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubbub.cli.main",
        "serve",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
    try:
        yield port, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0
        assert process.stderr is not None
        assert await process.stderr.read() == b""  # everything went to log.file


async def test_json_lines_from_a_real_server(serve_json: tuple[int, Path]) -> None:
    port, log_path = serve_json
    url = f"ws://127.0.0.1:{port}/connection/websocket"
    token = make_token(SECRET, "frank", ttl=3600)
    async with connected_client(url, token, channels=("chat:json",)) as client:
        await client.result("publish", {"channel": "chat:json", "data": {"hi": 1}})
    await wait_until(lambda: '"client disconnected"' in log_path.read_text())
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert all({"level", "time", "logger", "message"} <= set(e) for e in entries)
    mine = [e for e in entries if e.get("client") == client.client_id]
    assert [(e["level"], e["message"], e.get("method")) for e in mine] == [
        ("debug", "client connected", None),  # during connect; its command line follows
        ("trace", "command", "connect"),
        ("trace", "command", "subscribe"),
        ("trace", "command", "publish"),
        ("debug", "client disconnected", None),
    ]
    assert all(e["user"] == "frank" and e["addr"] == "127.0.0.1" for e in mine)
    assert "Traceback" not in log_path.read_text()


# --- a Redis outage ----------------------------------------------------------------


async def test_redis_outage_is_a_few_lines_and_error_100(
    own_redis: RedisProcess,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    data = merge(
        DEFAULT_CONFIG,
        {"engine": {"type": "redis", "redis": {"address": [own_redis.address], "prefix": "out"}}},
    )
    config = load_config(None, env={}, base=data).config
    hub = Hub(config, engine=engine_from_config(config))
    serving = await start(hub, host="127.0.0.1", port=0)
    url = f"ws://127.0.0.1:{serving.port}/connection/websocket"
    try:
        async with (
            connected_client(url, channels=("chat:a",)) as first,
            connected_client(url, channels=("chat:a",)) as second,
        ):
            own_redis.stop()
            for client in (first, second):
                assert (await client.push("chat:a", "unsubscribe"))["code"] == 2500
                for method, params in (
                    ("publish", {"channel": "chat:a", "data": {}}),
                    ("subscribe", {"channel": "chat:b"}),
                ):
                    error = await client.error(method, params)
                    assert error == {
                        "code": 100,
                        "message": "internal server error",
                        "temporary": True,
                    }
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"http://127.0.0.1:{serving.port}/api/publish",
                    json={"channel": "chat:a", "data": {}},
                    headers={"X-API-Key": API_KEY},
                ) as response,
            ):
                assert (await response.json())["error"]["code"] == 100
        await hub.wait_idle()
    finally:
        await serving.stop()
    hubbub = [r for r in caplog.records if r.name.startswith("hubbub")]
    assert not [r for r in hubbub if r.exc_info], [r.getMessage() for r in hubbub if r.exc_info]
    warnings = [r for r in hubbub if r.levelno >= logging.WARNING]
    messages = [r.getMessage() for r in warnings]
    lost = "broker connection lost: 2 subscribers of 1 channels must recover"
    assert messages.count(lost) == 1, messages
    # Five failed operations (and the leaves of two disconnects): one summary line.
    assert sum(m.startswith("engine unavailable: ") for m in messages) == 1, messages
    assert len(warnings) <= 4, messages


@pytest.mark.parametrize(
    ("message", "exc", "one_line"),
    [
        ("Fatal error on SSL protocol", RuntimeError("no python buffer is allocated"), True),
        ("Fatal error on SSL transport", ConnectionResetError(104, "reset"), True),
        ("SSL error in data received", ssl.SSLError(1, "bad record mac"), True),
        ("Fatal read error on socket transport", ConnectionResetError(104, "reset"), True),
        ("Fatal read error on socket transport", RuntimeError("a bug"), False),
        ("Exception in callback Front.data_received", ValueError("a bug"), False),
    ],
)
def test_the_serving_loop_tells_a_failed_transport_in_one_line(
    caplog: pytest.LogCaptureFixture, message: str, exc: BaseException, one_line: bool
) -> None:
    """``hubbub serve``'s loop handler: a connection whose transport failed (a peer
    gone during a TLS shutdown) is one warning line; anything else keeps asyncio's
    report with its traceback."""
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.DEBUG):
            transport_errors_in_one_line(loop, {"message": message, "exception": exc})
    finally:
        loop.close()
    assert len(caplog.records) == 1, caplog.records
    record = caplog.records[0]
    if one_line:
        assert record.name == "hubbub.server" and record.levelno == logging.WARNING
        assert record.exc_info is None and type(exc).__name__ in record.getMessage()
    else:
        assert record.name == "asyncio" and record.exc_info is not None
