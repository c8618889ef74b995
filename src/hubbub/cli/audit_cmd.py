"""``hubbub audit``: flags -> AuditOptions -> run -> table, JSON, HTML; exit status.

Rule: parsing and presentation only; the cases live in ``hubbub.tools.audit``.
Exit 0 when no case FAILED, 1 when some did, 2 when the audit could not run
(bad flags, unreachable server, refused handshake): one line, no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from hubbub.tools.audit.case import CENTRIFUGO, ECHO, AuditOptions

EPILOG = """\
verdicts: OK (as the RFC asks), NON-STRICT (allowed, but not what the RFC
recommends), INFORMATIONAL (a choice left to the server, reported),
UNIMPLEMENTED (an optional feature not offered), FAILED (a MUST broken).
Exit status: 0 no case FAILED, 1 some FAILED, 2 the audit could not run.

examples:
  hubbub audit ws://127.0.0.1:9001/                      # an echo server
  hubbub audit ws://127.0.0.1:8000/connection/websocket --mode centrifugo
  hubbub audit ws://127.0.0.1:9001/ --cases 6.4,7.* --html report.html
  hubbub audit wss://127.0.0.1:8443/connection/websocket --mode centrifugo --ca ca.pem
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser(
        "audit",
        help="check a WebSocket server's conformance (RFC 6455/7692, Centrifugo) and security",
        description="Run conformance and security cases against a WebSocket server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    audit.add_argument(
        "url",
        help="ws://HOST:PORT/PATH or wss://... of the server (a loopback host, unless "
        "--allow-remote)",
    )
    audit.add_argument(
        "--mode",
        choices=[ECHO, CENTRIFUGO],
        default=ECHO,
        help="echo: the server sends every message back (Autobahn-style groups 1-13); "
        "centrifugo: the server speaks Centrifugo's JSON client protocol (default: echo)",
    )
    audit.add_argument(
        "--cases",
        default="*",
        metavar="PATTERN",
        help="comma-separated case ids, id prefixes (6 or 6.4) or shell "
        "patterns (7.*.1); default: all cases of the mode",
    )
    audit.add_argument("--json", metavar="FILE", help="write the full JSON report here")
    audit.add_argument(
        "--html",
        metavar="FILE",
        help="write a self-contained HTML report here (summary and wire logs)",
    )
    audit.add_argument(
        "--token",
        default="",
        help="centrifugo mode: connection token (JWT) for servers that need one",
    )
    audit.add_argument(
        "--channel",
        default="chat:audit",
        help="centrifugo mode: a channel the client may subscribe to and publish "
        "in, with history and presence (default: chat:audit, which the demo "
        "preset of 'hubbub serve' allows)",
    )
    audit.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="cases run at once (the timing cases always run alone); default 8",
    )
    audit.add_argument(
        "--allow-remote",
        action="store_true",
        help="audit a host that is not loopback (only one you run: the audit "
        "sends malformed frames and opens many connections)",
    )
    audit.add_argument(
        "--flood",
        type=int,
        default=200,
        metavar="N",
        help="security: idle connections opened by the flood check (default 200)",
    )
    audit.add_argument(
        "--slow-seconds",
        type=float,
        default=15.0,
        metavar="S",
        help="security: how long the slow-handshake check dribbles (default 15)",
    )
    audit.add_argument(
        "--ping-wait",
        type=float,
        default=40.0,
        metavar="S",
        help="centrifugo mode: longest wait for the server's first ping (default 40)",
    )
    audit.add_argument(
        "--ca",
        default="",
        metavar="FILE",
        help="wss://: verify the server's certificate against this CA certificate (PEM) "
        "instead of the system's authorities",
    )
    audit.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    from hubbub.tools.audit.html import write_html
    from hubbub.tools.audit.report import document, table, write_json
    from hubbub.tools.audit.runner import AuditError, print_progress, run_audit
    from hubbub.tools.runner import run_async

    options = AuditOptions(
        url=args.url,
        mode=args.mode,
        cases=args.cases,
        token=args.token,
        channel=args.channel,
        concurrency=args.concurrency,
        allow_remote=args.allow_remote,
        flood=args.flood,
        slow_seconds=args.slow_seconds,
        ping_wait=args.ping_wait,
        quiet=args.quiet,
        ca=args.ca,
    )
    if options.concurrency < 1 or options.flood < 0 or options.slow_seconds <= 0:
        print(
            "error: --concurrency must be >= 1, --flood >= 0, --slow-seconds > 0", file=sys.stderr
        )
        return 2
    started = time.monotonic()
    try:
        results = run_async(run_audit(options, None if args.quiet else print_progress))
    except (AuditError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = document(results, options, time.monotonic() - started)
    print(table(report))
    try:
        if args.json:
            write_json(report, args.json)
        if args.html:
            write_html(report, args.html)
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return 2
    return 0 if report["summary"]["passed"] else 1
