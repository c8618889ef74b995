"""The ``hubbub`` command: argument parsing only; each subcommand calls the library.

    hubbub --version
    hubbub serve [--config FILE] [--port N] [--address A] [--workers N]
    hubbub checkconfig FILE
    hubbub genconfig [--format json|toml|yaml] [--output FILE]
    hubbub gentoken --user U [--ttl S] [--config FILE] [--info JSON] [--channel C]
    hubbub checktoken TOKEN [--config FILE]
    hubbub top [--url URL] [--api-key KEY] [--config FILE] [--interval S] [--once]
    hubbub bench fanout|rpc|connect|idle [--url URL] [...]
    hubbub audit URL [--mode echo|centrifugo] [--cases PATTERN] [--json F] [--html F]

Rule: expected failures (bad config, bad arguments, a bad token) print one
line per problem and exit 1; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from hubbub.config.generate import FORMATS, demo_config
from hubbub.errors import ConfigError
from hubbub.server.early import listen_early, planned_address
from hubbub.version import __version__

if TYPE_CHECKING:
    from socket import socket

    from hubbub.config.loader import LoadedConfig
    from hubbub.hub.hub import Hub


#: Commands whose parsers import the tools (hubbub top, the load generator, the
#: audit): only built when one of them runs (or for help), so that ``serve`` starts
#: faster.
TOOLS = ("top", "bench", "audit")


def build_parser(*, tools: bool = True) -> argparse.ArgumentParser:
    """The ``hubbub`` parser; ``tools=False``: ``bench`` and ``audit`` are named only."""
    parser = argparse.ArgumentParser(
        prog="hubbub", description="Real-time messaging server (Centrifugo protocol compatible)."
    )
    parser.add_argument("--version", "-v", action="version", version=f"hubbub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--config", "-c", help="JSON, TOML or YAML config file")
    serve.add_argument("--port", "-p", type=int, help="http_server.port")
    serve.add_argument("--address", "-a", help="http_server.address")
    serve.add_argument(
        "--workers",
        "-w",
        type=int,
        default=1,
        help="processes sharing the port (SO_REUSEPORT); more than 1 needs engine.type redis",
    )
    serve.add_argument(
        "--echo-rpc",
        action="store_true",
        help="answer RPC method 'echo' with the request's data (for 'hubbub bench rpc' and "
        "SDK examples); on in the demo preset (no --config)",
    )

    check = sub.add_parser("checkconfig", help="validate a config file")
    check.add_argument("file")

    gen = sub.add_parser("genconfig", help="print a starter config with fresh secrets")
    gen.add_argument("--format", "-f", default="json", choices=[*FORMATS, "yml"])
    gen.add_argument("--output", "-o", help="file to write (default: stdout)")

    token = sub.add_parser("gentoken", help="print a connection (or subscription) token")
    token.add_argument("--user", "-u", required=True, help="the sub claim")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds until exp (0: none)")
    token.add_argument("--config", "-c", help="config file with client.token.hmac_secret_key")
    token.add_argument("--info", help="info claim, as JSON")
    token.add_argument("--channel", help="make a subscription token for this channel")

    check_token = sub.add_parser(
        "checktoken", help="verify a connection or subscription token with the configured keys"
    )
    check_token.add_argument("token")
    check_token.add_argument("--config", "-c", help="config file with the token keys")
    if tools:
        from hubbub.cli import audit_cmd, bench_cmd, top_cmd

        top_cmd.add_parser(sub)
        bench_cmd.add_parser(sub)
        audit_cmd.add_parser(sub)
    else:
        for name in TOOLS:
            sub.add_parser(name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from_command_line = argv is None  # a process of its own: it may end itself
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    tools = command in TOOLS or command.startswith("-") or not command
    args = build_parser(tools=tools).parse_args(argv)
    if args.command in ("checkconfig", "genconfig"):
        from hubbub.cli.config_cmd import checkconfig, genconfig

        if args.command == "checkconfig":
            return checkconfig(args.file)
        return genconfig(args.format, args.output)
    if args.command in ("gentoken", "checktoken"):
        from hubbub.cli.token_cmd import checktoken, gentoken  # PyJWT: not for serve

        loaded = _load(args.config)
        if loaded is None:
            return 1
        if args.command == "checktoken":
            return checktoken(loaded.config, args.token)
        return gentoken(
            loaded.config, args.user, ttl=args.ttl, info=args.info, channel=args.channel
        )
    if args.command == "top":
        from hubbub.cli import top_cmd

        loaded = _load(args.config)
        return 1 if loaded is None else top_cmd.run(args, loaded.config)
    if args.command == "bench":
        from hubbub.cli import bench_cmd

        return bench_cmd.run(args)
    if args.command == "audit":
        from hubbub.cli import audit_cmd

        return audit_cmd.run(args)
    code = _serve(args, exiting=from_command_line)
    if code == 0 and from_command_line:
        _exit_at_once()
    return code


def _exit_at_once() -> None:
    """End a ``serve`` process whose server has stopped cleanly (``--workers``: the
    parent) without the interpreter's teardown (server/run.py ``exit_now``)."""
    from hubbub.server.run import exit_now

    exit_now()


def _load(path: str | None, overrides: dict[str, object] | None = None) -> LoadedConfig | None:
    from hubbub.config.loader import load_config  # after the early bind: the model is slow

    try:
        return load_config(path, overrides=overrides, base=None if path else demo_config())
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace, *, exiting: bool = False) -> int:
    """``exiting``: the process ends when the server has stopped (not a call from
    Python): its shutdown may leave the sockets to the exit."""
    early = _listen_before_loading(args)
    sock = None if early is None else early[1]
    try:
        loaded = _load(
            args.config, {"http_server.port": args.port, "http_server.address": args.address}
        )
        if loaded is None:
            return 1
        server = loaded.config.http_server
        planned = None if early is None else early[0]
        if getattr(args, "workers", 1) <= 1 and planned != (server.address, server.port):
            if sock is not None:
                sock.close()  # the loaded configuration says otherwise: it decides
            sock = None
            try:
                sock = listen_early(server.address, server.port)
            except OSError as exc:
                print(f"error: http_server: cannot listen: {exc.strerror or exc}", file=sys.stderr)
                return 1
        return _serve_config(args, loaded, sock, exiting=exiting)
    finally:
        if sock is not None:
            sock.close()  # the server closed it already, unless it never started


def _listen_before_loading(args: argparse.Namespace) -> tuple[tuple[str, int], socket] | None:
    """The public port listening before the configuration's model is even imported
    (server/early.py): where it was bound, and the socket. None with ``--workers``
    (they share the port), when unsure where to listen, or when binding fails (the
    bind after loading tells why)."""
    if getattr(args, "workers", 1) > 1:
        return None
    planned = planned_address(args.config, args.address, args.port, os.environ)
    if planned is None:
        return None
    try:
        sock = listen_early(*planned)
    except (OSError, OverflowError):
        return None
    return None if sock is None else (planned, sock)


def _serve_config(
    args: argparse.Namespace, loaded: LoadedConfig, sock: socket | None, *, exiting: bool
) -> int:
    config = loaded.config
    from hubbub.server.logs import setup_logging  # the server stack is only imported to serve

    try:
        setup_logging(config.log)
    except OSError as exc:
        print(f"error: log.file: cannot open {config.log.file}: {exc.strerror}", file=sys.stderr)
        return 1
    from hubbub.config.loader import connect_warnings

    for warning in (*loaded.warnings, *connect_warnings(config)):
        logging.getLogger("hubbub.config").warning("%s", warning)
    if args.config is None:
        logging.getLogger("hubbub").info(
            "no --config: running the demo preset (anonymous chat in namespace 'chat')"
        )
    workers = getattr(args, "workers", 1)
    from hubbub.server.workers import run_workers, workers_error

    problem = workers_error(config, workers)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    from hubbub.server.run import run
    from hubbub.server.urls import served_urls

    def ready(port: int) -> None:
        host = config.http_server.address or "0.0.0.0"
        scheme = "https" if config.http_server.tls.enabled else "http"
        processes = f" ({workers} workers)" if workers > 1 else ""
        lines = [f"hubbub {__version__} serving on {scheme}://{host}:{port}/{processes}"]
        lines += [f"  {what:<11} {url}" for what, url in served_urls(config, port)]
        print("\n".join(lines), flush=True)

    echo_rpc = getattr(args, "echo_rpc", False) or args.config is None
    if workers > 1:
        if echo_rpc and args.config is not None:
            print("error: --echo-rpc runs in one process: not with --workers", file=sys.stderr)
            return 1
        return run_workers(config, workers, ready=ready)
    try:
        setup = _echo_rpc if echo_rpc else None
        run(config, ready=ready, setup=setup, sock=sock, exit_after=exiting)
    except OSError as exc:
        print(f"error: http_server: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # TLS files changed between the check and the start
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _echo_rpc(hub: Hub) -> None:
    """RPC method ``echo`` answers with the request's data; other methods: error 104."""
    from hubbub.codes import Error
    from hubbub.errors import ClientError
    from hubbub.hub.hooks import RPCEvent, RPCResponse

    @hub.on_rpc
    async def echo(event: RPCEvent) -> RPCResponse:
        if event.method != "echo":
            raise ClientError(Error.METHOD_NOT_FOUND)
        return RPCResponse(data=event.data)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
