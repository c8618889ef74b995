"""A backend that fails: the client gets a clear error, hubbub logs one line, others go on.

One server, one real aiohttp backend (and a gRPC one), and a namespace per
way a backend can fail, each with its own named proxy: nothing listening
(HTTP and gRPC), too slow (timeout), HTTP 500, a body that is not JSON, a gRPC
call the backend aborts, an HTTP status mapped to an error by
``status_to_code_transforms``. Each failure must give the client error 100
"internal server error" (temporary: the SDKs retry) or the mapped error,
exactly one WARNING line from ``hubbub.proxy`` naming the proxy and the
cause, no traceback anywhere in the log, and no effect on other clients: a
client of a healthy namespace publishes and receives meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import RunningServer, ServerFactory
from tests.proxy_fixtures import Backend, start_backend
from tests.wsclient import connected_client, open_client

INTERNAL = {"code": 100, "message": "internal server error", "temporary": True}
TIMEOUT = 0.5  # the proxies' timeout here; the slow backend answers after 3 s


@pytest.fixture(scope="module")
def http_backend() -> Iterator[Backend]:
    running = start_backend("aiohttp")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def grpc_backend() -> Iterator[Backend]:
    running = start_backend("grpc")
    yield running
    running.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def namespace(name: str, proxy: str) -> dict[str, Any]:
    return {
        "name": name,
        "subscribe_proxy_enabled": True,
        "subscribe_proxy_name": proxy,
        "allow_publish_for_subscriber": True,
    }


@pytest.fixture
async def server(
    start_server: ServerFactory, http_backend: Backend, grpc_backend: Backend
) -> RunningServer:
    down = closed_port()

    def named(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "endpoint": endpoint, "timeout": f"{TIMEOUT}s", **extra}

    proxies = [
        named("ok", http_backend.endpoint("subscribe")),
        named("down", f"http://127.0.0.1:{down}/subscribe"),
        named("slow", http_backend.endpoint("subscribe", "slow")),
        named("broken", http_backend.endpoint("subscribe", "status500")),
        named("garbage", http_backend.endpoint("subscribe", "garbage")),
        named(
            "mapped",
            http_backend.endpoint("subscribe", "status404"),
            http={
                "status_to_code_transforms": [
                    {"status_code": 404, "to_error": {"code": 4404, "message": "not found"}}
                ]
            },
        ),
        named("grpcdown", f"grpc://127.0.0.1:{down}"),
        named("grpc", grpc_backend.endpoint("rpc")),
    ]
    namespaces = [namespace(p["name"], p["name"]) for p in proxies if p["name"] != "grpc"]
    return await start_server(
        {
            "proxies": proxies,
            "channel": {"namespaces": namespaces},
            "rpc": {"namespaces": [{"name": "gr", "proxy_enabled": True, "proxy_name": "grpc"}]},
            "prometheus": {"enabled": True},
        }
    )


def proxy_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hubbub.proxy"]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    assert all(r.exc_info is None for r in caplog.records), caplog.text
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(
    ("channel", "cause"),
    [
        ("down:room", "can not connect"),
        ("slow:room", f"no answer within {TIMEOUT:g}s"),
        ("broken:room", "HTTP status 500"),
        ("garbage:room", "malformed JSON answer"),
        ("grpcdown:room", "gRPC UNAVAILABLE"),
    ],
)
async def test_failure_gives_error_100_and_one_log_line(
    server: RunningServer, caplog: pytest.LogCaptureFixture, channel: str, cause: str
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        connected_client(server.ws_url, server.token("victim")) as victim,
        connected_client(server.ws_url, server.token("bystander"), channels=("ok:room",)) as other,
    ):
        failing = asyncio.create_task(victim.call("subscribe", {"channel": channel}))
        # Meanwhile another client's publish goes round the healthy namespace.
        started = time.monotonic()
        await other.result("publish", {"channel": "ok:room", "data": {"n": 1}})
        push = await other.push("ok:room", "pub")
        assert push["data"] == {"n": 1}
        assert time.monotonic() - started < 2.0
        reply = await asyncio.wait_for(failing, 5.0)
        assert reply["error"] == INTERNAL
        # The victim's connection is fine: a healthy subscribe works right after.
        await victim.result("subscribe", {"channel": "ok:other"})
    [line] = proxy_lines(caplog)
    assert line.levelno == logging.WARNING
    message = line.getMessage()
    assert cause in message, message
    assert channel.split(":")[0] in message  # names the proxy
    assert "error 100" in message
    assert_no_traceback(caplog)


async def test_status_transform_gives_the_configured_error(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected_client(server.ws_url, server.token("u")) as client:
        error = await client.error("subscribe", {"channel": "mapped:room"})
    assert error == {"code": 4404, "message": "not found"}
    assert proxy_lines(caplog) == []  # the backend said so: not a failure
    assert_no_traceback(caplog)


@pytest.mark.parametrize(
    ("method", "cause"),
    [("gr:sleep", f"no answer within {TIMEOUT:g}s"), ("gr:crash", "gRPC INTERNAL")],
)
async def test_grpc_backend_failures(
    server: RunningServer, caplog: pytest.LogCaptureFixture, method: str, cause: str
) -> None:
    async with connected_client(server.ws_url, server.token("u")) as client:
        error = await client.error("rpc", {"method": method, "data": {"seconds": 2}})
        assert error == INTERNAL
        ok = await client.result("rpc", {"method": "gr:sum", "data": {"a": 1, "b": 1}})
        assert ok["data"] == {"sum": 2}
    [line] = proxy_lines(caplog)
    assert cause in line.getMessage()
    assert_no_traceback(caplog)


async def test_connect_proxy_down_is_a_temporary_connect_error(
    start_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    down = closed_port()
    server = await start_server(
        {
            "client": {
                "allow_anonymous_connect_without_token": False,
                "proxy": {
                    "connect": {
                        "enabled": True,
                        "endpoint": f"http://127.0.0.1:{down}/connect",
                        "timeout": "1s",
                    }
                },
            }
        }
    )
    async with open_client(server.ws_url) as client:
        reply = await client.connect()
        assert reply["error"] == INTERNAL
        # A token connection does not need the proxy and still works.
    async with connected_client(server.ws_url, server.token("t")) as client:
        await client.result("subscribe", {"channel": "chat:ok"})
    [line] = proxy_lines(caplog)
    assert "connect proxy" in line.getMessage()
    assert_no_traceback(caplog)


async def test_a_burst_of_failures_is_summed_up_not_logged_one_by_one(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with connected_client(server.ws_url, server.token("u")) as client:
        for i in range(20):
            error = await client.error("subscribe", {"channel": f"broken:room{i}"})
            assert error == INTERNAL
    # 20 failures in well under the 1 s log interval: one line (the next one, if
    # any, would carry the count of those not logged).
    assert len(proxy_lines(caplog)) == 1


async def test_proxy_calls_errors_and_durations_are_counted(server: RunningServer) -> None:
    from tests.test_metrics import parse, promtool, scrape

    async with connected_client(server.ws_url, server.token("u")) as client:
        await client.result("subscribe", {"channel": "ok:room"})
        await client.result("subscribe", {"channel": "ok:again"})
        assert (await client.error("subscribe", {"channel": "down:room"})) == INTERNAL
        assert (await client.error("subscribe", {"channel": "mapped:room"}))["code"] == 4404
        await client.result("rpc", {"method": "gr:sum", "data": {"a": 1, "b": 2}})
        assert (await client.error("rpc", {"method": "gr:crash", "data": {}})) == INTERNAL
    text = await scrape(f"{server.http_url}/metrics")
    promtool(text)
    samples = parse(text)

    def of(family: str, protocol: str, kind: str, proxy: str) -> float:
        labels = frozenset({"protocol": protocol, "type": kind, "name": proxy}.items())
        return samples.get((family, labels), 0.0)

    expected = {  # (protocol, type, name): (calls, errors)
        ("http", "subscribe", "ok"): (2, 0),
        ("http", "subscribe", "down"): (1, 1),  # nothing listens: no usable answer
        ("http", "subscribe", "mapped"): (1, 0),  # a configured answer, not a failure
        ("grpc", "rpc", "grpc"): (2, 1),  # gr:crash: the backend aborted the call
    }
    for (protocol, kind, proxy), (calls, errors) in expected.items():
        labels = (protocol, kind, proxy)
        assert of("hubbub_proxy_calls_total", *labels) == calls, labels
        assert of("centrifugo_proxy_duration_seconds_count", *labels) == calls, labels
        assert of("centrifugo_proxy_duration_seconds_histogram_count", *labels) == calls
        assert of("centrifugo_proxy_errors", *labels) == errors, labels
        assert of("centrifugo_proxy_inflight_requests", *labels) == 0, labels
        assert of("centrifugo_proxy_duration_seconds_sum", *labels) > 0, labels
    bucket = "centrifugo_proxy_duration_seconds_histogram_bucket"
    labels = {"protocol": "http", "type": "subscribe", "name": "ok", "le": "+Inf"}
    assert samples[bucket, frozenset(labels.items())] == 2
