"""``hubbub bench``: flags -> BenchOptions -> run -> table, JSON, plot.

Rule: parsing and presentation only; the load generator lives in
``hubbub.tools``. Expected failures (server refused, bad flags) print one line
and exit 1.
"""

from __future__ import annotations

import argparse
import sys

from hubbub.tools.scenarios import SCENARIOS, BenchOptions


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench",
        help="load-test hubbub or any Centrifugo-protocol (or plain WebSocket) server",
        description="Without --url the bench starts hubbub itself (memory engine).",
    )
    bench.add_argument("scenario", choices=SCENARIOS)
    bench.add_argument("--url", help="ws://HOST:PORT/PATH of the server (default: start hubbub)")
    bench.add_argument(
        "--plain",
        nargs="?",
        const="text",
        choices=["text", "socketio"],
        help="no Centrifugo protocol: text frames broadcast by the server (or Socket.IO events)",
    )
    bench.add_argument(
        "-n",
        "--subscribers",
        "--clients",
        type=int,
        default=100,
        help="fanout/idle/connect: clients; rpc: concurrent requesters (100)",
    )
    bench.add_argument(
        "--channels", type=int, default=1, help="channels the subscribers are spread over (1)"
    )
    bench.add_argument(
        "--channel",
        default="bench",
        help="channel name; with --channels N > 1 a prefix numbered 0..N-1 (default: bench)",
    )
    bench.add_argument(
        "--namespace",
        default="",
        help="namespace of the channels (e.g. chat: channels chat:bench...; the "
        "demo preset of 'hubbub serve' allows only 'chat')",
    )
    bench.add_argument("--publishers", type=int, default=1, help="publishing clients (1)")
    bench.add_argument(
        "--subscribe-publishers",
        action="store_true",
        help="publishers subscribe to their channel before publishing (servers "
        "such as the demo preset let only subscribers publish); their own copies "
        "are not counted",
    )
    bench.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="publications/s over all publishers (0: as fast as the server "
        "acknowledges, within --window)",
    )
    bench.add_argument("--payload", type=int, default=100, help="approximate bytes per message")
    bench.add_argument("--seconds", type=float, default=5.0, help="measured duration (5)")
    bench.add_argument(
        "--window",
        type=int,
        default=200,
        help="saturation: publications in flight per channel (200)",
    )
    bench.add_argument(
        "--batch", type=int, default=20, help="saturation: publications per write (20)"
    )
    bench.add_argument(
        "--sample-every",
        type=int,
        default=10,
        help="decode every Nth subscriber for latency and order checks (10)",
    )
    bench.add_argument(
        "--api",
        help="publish through the HTTP API at this URL ('auto': the hubbub the bench starts)",
    )
    bench.add_argument("--api-key", default="", help="X-API-Key for --api")
    bench.add_argument("--token", default="", help="connection token (JWT) for every client")
    bench.add_argument(
        "--concurrency", type=int, default=200, help="handshakes in flight at once (200)"
    )
    bench.add_argument(
        "--rpc-method",
        default="echo",
        help="rpc: the method to call (default echo: 'hubbub serve --echo-rpc' "
        "and the demo preset answer it)",
    )
    bench.add_argument(
        "--storm", default="auto", choices=["auto", "restart", "drop", "none"],
        help="connect: restart the server it started, or drop all clients",
    )  # fmt: skip
    bench.add_argument(
        "--hold",
        type=float,
        default=1.0,
        help="idle: seconds to settle before the server's RSS is read (1)",
    )
    bench.add_argument("--procs", type=int, default=1, help="load generator processes (1)")
    bench.add_argument("--server-cmd", help="start this server command (with --url)")
    bench.add_argument(
        "--server-pid", type=int, help="read this process's RSS and CPU time from /proc"
    )
    bench.add_argument("--server-cpu", type=int, help="pin the started server to this CPU")
    bench.add_argument("--cpu", type=int, help="pin the load generator to this CPU")
    bench.add_argument(
        "--max-errors",
        type=float,
        default=0.01,
        help="exit 1 when more than this fraction of publishes or RPC requests "
        "get error replies (default 0.01)",
    )
    bench.add_argument("--json", help="write the summary here")
    bench.add_argument(
        "--plot",
        help="latency plot: FILE.png (needs matplotlib: pip install "
        "'hubbub[bench]') or FILE.html (no dependency)",
    )
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress lines")
    bench.add_argument(
        "--compress",
        action="store_true",
        help="offer permessage-deflate (the hubbub it starts has websocket.compression on)",
    )
    bench.add_argument(
        "--text-payload",
        action="store_true",
        help="payloads of varied words and ids (as chat traffic) instead of one repeated letter",
    )


def run(args: argparse.Namespace) -> int:
    from hubbub.tools.report import table, write_json, write_plot
    from hubbub.tools.runner import run_async, run_bench

    opts = BenchOptions(
        scenario=args.scenario,
        url=args.url,
        dialect="centrifugo" if args.plain is None else args.plain,
        subscribers=args.subscribers,
        channels=args.channels,
        publishers=args.publishers,
        rate=args.rate,
        payload=args.payload,
        seconds=args.seconds,
        window=args.window,
        batch=args.batch,
        sample_every=args.sample_every,
        api=args.api,
        api_key=args.api_key,
        concurrency=args.concurrency,
        rpc_method=args.rpc_method,
        channel=args.channel,
        namespace=args.namespace,
        subscribe_publishers=args.subscribe_publishers,
        max_errors=args.max_errors,
        token=args.token,
        storm=args.storm,
        hold=args.hold,
        procs=args.procs,
        server_cmd=args.server_cmd,
        server_pid=args.server_pid,
        server_cpu=args.server_cpu,
        cpu=args.cpu,
        quiet=args.quiet,
        compress=args.compress,
        text_payload=args.text_payload,
    )
    problem = _check(opts) or _plot_problem(args.plot)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        summary = run_async(run_bench(opts))
    except (OSError, ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        print(f"error: bench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(table(summary))
    for warning in summary["warnings"]:  # again on stderr, where a script's user sees it
        print(f"WARNING: {warning}", file=sys.stderr)
    if args.json:
        write_json(summary, args.json)
    if args.plot:
        try:
            write_plot(summary, args.plot)
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if summary.get("too_many_errors"):
        print(
            f"error: {summary['error_fraction']:.1%} error replies (over --max-errors "
            f"{opts.max_errors:g}): the figures do not measure the server",
            file=sys.stderr,
        )
        return 1
    return 0


def _plot_problem(path: str | None) -> str | None:
    """A PNG plot needs matplotlib: say so before the run, not after it."""
    if path is None or path.endswith((".html", ".htm")):
        return None
    if not path.endswith(".png"):
        return "--plot takes FILE.png or FILE.html"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot FILE.png needs matplotlib: pip install 'hubbub[bench]' (or use FILE.html)"
    return None


def _check(opts: BenchOptions) -> str | None:
    if opts.subscribers < 1 or opts.channels < 1 or opts.publishers < 0 or opts.procs < 1:
        return "--subscribers, --channels, --procs must be >= 1"
    if opts.dialect != "centrifugo" and opts.api is not None:
        return "--api publishes through hubbub's HTTP API: not with --plain"
    if opts.dialect != "centrifugo" and opts.url is None:
        return "--plain needs --url (the bench only starts hubbub itself)"
    if opts.dialect != "centrifugo" and opts.channels != 1:
        return "--plain servers broadcast to everyone: --channels must be 1"
    if not 0 <= opts.max_errors <= 1:
        return "--max-errors is a fraction between 0 and 1"
    if opts.scenario == "fanout" and opts.publishers < 1:
        return "fanout needs --publishers >= 1"
    return None
