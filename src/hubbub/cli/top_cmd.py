"""``hubbub top``: flags -> the API address and key -> the live view (``hubbub.tools.top``).

Rule: the address and key come from the flags, else from the configuration
(``--config`` and the ``HUBBUB_*`` environment, as ``serve`` reads them: the
internal port when there is one). An unreachable server is shown on the
screen and retried; ``--once`` fails with one line instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from hubbub.config.model import Config
from hubbub.tools.top import Top, TopError, once, watch


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    top = sub.add_parser(
        "top",
        help="live view of a running node or cluster (through the server API)",
        description="Nodes, connections, messages/s in and out, errors and the busiest "
        "channels, refreshed in place. q or Ctrl-C quits.",
    )
    top.add_argument("--url", help="http://HOST:PORT of the server API (default: from the config)")
    top.add_argument("--api-key", help="http_api.key (default: from the config)")
    top.add_argument("--config", "-c", help="the server's config file")
    top.add_argument("--interval", "-i", type=float, default=1.0, help="seconds between readings")
    top.add_argument("--once", action="store_true", help="print one reading and exit")


def api_url(config: Config) -> str:
    """Where ``serve`` listens for the API with ``config``."""
    server = config.http_server
    if server.internal_port:
        host, port = server.internal_address, server.internal_port
    else:
        host, port = server.address, server.port
    if not host or host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def run(args: argparse.Namespace, config: Config) -> int:
    if args.interval <= 0:
        print("error: --interval must be more than 0", file=sys.stderr)
        return 1
    top = Top(args.url or api_url(config), args.api_key or config.http_api.key)
    try:
        if args.once:
            asyncio.run(once(top, pause=args.interval))
        else:
            asyncio.run(watch(top, interval=args.interval))
    except TopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
