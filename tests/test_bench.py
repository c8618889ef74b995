"""``hubbub bench``: every scenario, briefly, against a real hubbub; the figures are sane.

In-process runs share the test's event loop with the ``start_server`` hubbub;
the CLI test starts its own hubbub (the connect scenario's restart storm needs a
server the bench owns) and writes JSON and a plot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubbub.config.model import ClientConfig
from hubbub.hub.hooks import RPCEvent, RPCResponse
from hubbub.hub.hub import Hub
from hubbub.tools.histogram import Histogram
from hubbub.tools.report import table, write_json, write_plot
from hubbub.tools.runner import run_bench
from hubbub.tools.scenarios import BenchOptions, RefusedError
from tests.conftest import ServerFactory

PID = os.getpid()
# A publisher at full speed is not abuse: lift the per-connection command rate limit.
UNLIMITED = (
    {"client": {"command_rate_limit": 0}}
    if "command_rate_limit" in ClientConfig.__struct_fields__
    else {}
)


def ordered(latency: dict[str, int]) -> bool:
    keys = ["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us"]
    values = [latency[k] for k in keys]
    return values == sorted(values) and latency["count"] > 0


def test_histogram_percentiles_within_bucket_precision() -> None:
    histogram = Histogram()
    histogram.record_many(range(1, 100_001))
    assert histogram.total == 100_000
    assert abs(histogram.percentile(50) - 50_000) / 50_000 < 0.02
    assert abs(histogram.percentile(99) - 99_000) / 99_000 < 0.02
    assert histogram.percentile(100) == 100_000
    again = Histogram.from_dict(json.loads(json.dumps(histogram.to_dict())))
    again.merge(histogram)
    assert again.total == 200_000 and again.percentile(50) == histogram.percentile(50)


async def test_fanout_fixed_rate_no_loss(start_server: ServerFactory, tmp_path: Path) -> None:
    server = await start_server(UNLIMITED)
    opts = BenchOptions(
        scenario="fanout", url=server.ws_url, subscribers=20, channels=2, publishers=2,
        rate=100, seconds=1.5, sample_every=1, server_pid=PID, quiet=True,
    )  # fmt: skip
    summary = await run_bench(opts)
    assert summary["delivered"] > 0
    assert summary["lost"] == 0 and summary["seq_lost"] == 0 and summary["duplicated"] == 0
    assert summary["publish_errors"] == 0
    assert 50 <= summary["publications_per_s"] <= 110
    assert summary["seq_checked_subscribers"] == 20
    assert ordered(summary["latency_us"])
    assert "deliveries/s" in table(summary)
    write_json(summary, str(tmp_path / "fanout.json"))
    write_plot(summary, str(tmp_path / "fanout.html"))
    assert json.loads((tmp_path / "fanout.json").read_text())["scenario"] == "fanout"
    assert "<svg" in (tmp_path / "fanout.html").read_text()


async def test_fanout_saturation_and_api(start_server: ServerFactory) -> None:
    server = await start_server(UNLIMITED)
    saturated = await run_bench(
        BenchOptions(scenario="fanout", url=server.ws_url, subscribers=10, seconds=1, quiet=True)
    )
    assert saturated["deliveries_per_s"] > 1000 and saturated["lost"] == 0
    via_api = await run_bench(
        BenchOptions(
            scenario="fanout", url=server.ws_url, subscribers=5, seconds=1, rate=50,
            api=server.api_url, api_key=server.api_key, sample_every=1, quiet=True,
        )
    )  # fmt: skip
    assert via_api["delivered"] > 0 and via_api["publish_errors"] == 0 and via_api["lost"] == 0


async def test_rpc_round_trips(start_server: ServerFactory) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_rpc
        async def echo(event: RPCEvent) -> RPCResponse:
            return RPCResponse(data=event.data)

    server = await start_server(UNLIMITED, setup=setup)
    summary = await run_bench(
        BenchOptions(scenario="rpc", url=server.ws_url, subscribers=4, seconds=1, quiet=True)
    )
    assert summary["requests"] > 10 and summary["errors"] == 0
    assert ordered(summary["latency_us"])


async def test_idle_reports_rss(start_server: ServerFactory) -> None:
    server = await start_server()
    summary = await run_bench(
        BenchOptions(
            scenario="idle", url=server.ws_url, subscribers=50, seconds=0.5, hold=0.3,
            server_pid=PID, quiet=True,
        )
    )  # fmt: skip
    assert summary["clients"] == 50 and summary["closed_by_server"] == 0
    assert summary["server_rss_after_kb"] > 0 and "rss_per_connection_bytes" in summary


async def test_connect_and_client_side_storm(start_server: ServerFactory) -> None:
    server = await start_server()
    summary = await run_bench(
        BenchOptions(scenario="connect", url=server.ws_url, subscribers=30, quiet=True)
    )
    assert summary["connects_per_s"] > 0
    assert summary["storm"]["mode"] == "drop" and summary["storm"]["seconds"] > 0
    assert ordered(summary["latency_us"])


def test_cli_starts_hubbub_restart_storm(tmp_path: Path) -> None:
    out = tmp_path / "connect.json"
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "bench", "connect", "-n", "20",
         "--json", str(out), "--plot", str(tmp_path / "c.html"), "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["storm"]["mode"] == "restart"
    assert summary["storm"]["seconds"] >= summary["storm"]["restart_s"] > 0
    assert "reconnect storm" in done.stdout


def test_cli_plain_mode_against_floor_server(tmp_path: Path) -> None:
    floor = Path(__file__).parent.parent / "benchmarks" / "servers" / "floor.py"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "plain.json"
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "bench", "fanout", "--plain",
         "--url", f"ws://127.0.0.1:{port}/",
         "--server-cmd", f"{sys.executable} {floor} --port {port}",
         "-n", "10", "--rate", "50", "--seconds", "1", "--sample-every", "1", "--procs", "2",
         "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["delivered"] > 0 and summary["lost"] == 0
    assert len(summary["loadgen_cpu"]) == 2
    assert ordered(summary["latency_us"])


def test_cli_rejects_bad_flags() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "bench", "fanout", "--plain"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1 and "needs --url" in done.stderr


async def test_rate_limited_publishes_are_named_and_fail_the_run(
    start_server: ServerFactory,
) -> None:
    def setup(hub: Hub) -> None:
        @hub.on_rpc
        async def echo(event: RPCEvent) -> RPCResponse:
            return RPCResponse(data=event.data)

    server = await start_server(
        {"client": {"command_rate_limit": 20, "command_rate_burst": 20}}, setup=setup
    )
    # 60 publications/s against 20/s allowed: two in three refused with 111 (never the
    # burst of refusals in a row that would close the connection with 3013).
    summary = await run_bench(
        BenchOptions(scenario="fanout", url=server.ws_url, subscribers=2, rate=60, seconds=1.5,
                     quiet=True)
    )  # fmt: skip
    assert summary["publish_errors"] > 0 and summary["too_many_errors"]
    assert "error 111" in summary["warnings"][0] and "WARNING" in table(summary)


async def test_rpc_without_a_handler_is_refused_with_a_hint(start_server: ServerFactory) -> None:
    server = await start_server(UNLIMITED)
    with pytest.raises(RefusedError, match="--echo-rpc"):
        await run_bench(BenchOptions(scenario="rpc", url=server.ws_url, subscribers=2,
                                     seconds=1, quiet=True))  # fmt: skip


async def test_channel_and_namespace_options(start_server: ServerFactory) -> None:
    server = await start_server(UNLIMITED)
    summary = await run_bench(
        BenchOptions(scenario="fanout", url=server.ws_url, subscribers=4, rate=50, seconds=1,
                     namespace="chat", channel="room", quiet=True)
    )  # fmt: skip
    assert summary["delivered"] > 0 and summary["publish_errors"] == 0
    with pytest.raises(RefusedError, match="no-such-ns:bench"):
        await run_bench(BenchOptions(scenario="fanout", url=server.ws_url, subscribers=2,
                                     seconds=1, namespace="no-such-ns", quiet=True))  # fmt: skip


async def test_publishers_that_must_subscribe_first(start_server: ServerFactory) -> None:
    """A namespace where only subscribers publish (as in the demo preset's chat)."""
    room = {"name": "room", "allow_subscribe_for_client": True,
            "allow_subscribe_for_anonymous": True,
            "allow_publish_for_subscriber": True, "allow_publish_for_anonymous": True}  # fmt: skip
    server = await start_server({**UNLIMITED, "channel": {"namespaces": [room]}})
    with pytest.raises(RefusedError, match="--subscribe-publishers"):
        await run_bench(BenchOptions(scenario="fanout", url=server.ws_url, subscribers=3,
                                     seconds=1, namespace="room", quiet=True))  # fmt: skip
    summary = await run_bench(
        BenchOptions(scenario="fanout", url=server.ws_url, subscribers=3, rate=50, seconds=1,
                     namespace="room", subscribe_publishers=True, sample_every=1, quiet=True)
    )  # fmt: skip
    assert summary["delivered"] > 0 and summary["lost"] == 0 and summary["duplicated"] == 0
    assert summary["unacknowledged"] == 0 and summary["publish_errors"] == 0


async def test_fanout_with_compression_counts_fewer_bytes_on_the_wire(
    start_server: ServerFactory,
) -> None:
    server = await start_server({**UNLIMITED, "websocket": {"compression": True}})
    figures = {}
    for compress in (False, True):
        opts = BenchOptions(
            scenario="fanout", url=server.ws_url, subscribers=20, publishers=1, rate=200,
            seconds=1.0, payload=300, text_payload=True, compress=compress, quiet=True,
        )  # fmt: skip
        summary = await run_bench(opts)
        assert summary["lost"] == 0 and summary["delivered"] > 0, summary
        assert summary["compressed_subscribers"] == (20 if compress else 0)
        figures[compress] = summary["wire_bytes_per_delivery"]
    assert figures[False] > 300  # the payload and its push envelope, uncompressed
    # One 300-byte publication a frame, each compressed alone: about a third less.
    assert figures[True] < figures[False] * 0.9, figures
    assert "bytes on the wire" in table(summary)
