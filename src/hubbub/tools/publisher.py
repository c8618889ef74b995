"""What a bench run is (``BenchOptions``) and the publishers' side of it: channel
names, publication frames, and what counts as acknowledged.

Rule: a publication is built from a template once per publisher and carries
``@<send_us>,<publisher>,<seq>,`` so that subscribers can time and order it
without decoding JSON; frames come from the codec (``wsclient.client_frame``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubbub.tools.payloads import text_pads
from hubbub.tools.wsclient import BenchConnection, client_frame

SCENARIOS = ("fanout", "rpc", "connect", "idle")
PHASES = {"fanout": ["connected", "measured"], "rpc": ["connected"],
          "connect": ["connected", "storm", "back"], "idle": ["connected", "held"]}  # fmt: skip


@dataclass(frozen=True)
class BenchOptions:
    """Everything that defines a bench run (the CLI flags, as values)."""

    scenario: str = "fanout"
    url: str | None = None  # None: start hubbub
    dialect: str = "centrifugo"
    protobuf: bool = False  # subscribers speak the Protobuf protocol (publishers JSON)
    subscribers: int = 100  # fanout/idle/connect: clients; rpc: concurrent requesters
    channels: int = 1
    publishers: int = 1
    rate: float = 0.0  # publications/s over all publishers; 0 = saturation
    payload: int = 100
    seconds: float = 5.0
    window: int = 200  # saturation: publications in flight per channel
    batch: int = 20  # saturation: publications per write
    sample_every: int = 10
    api: str | None = None
    api_key: str = ""
    concurrency: int = 200  # parallel handshakes
    rpc_method: str = "echo"
    channel: str = "bench"  # channel name (with several channels: a prefix, then 0, 1...)
    namespace: str = ""  # "chat": channels chat:bench...
    subscribe_publishers: bool = False  # publishers subscribe to their channel first
    max_errors: float = 0.01  # error replies above this fraction of requests: exit 1
    token: str = ""
    storm: str = "auto"  # connect: auto | restart | drop | none
    hold: float = 1.0  # idle: settle time before RSS is read
    procs: int = 1
    server_cmd: str | None = None
    server_pid: int | None = None
    server_cpu: int | None = None
    cpu: int | None = None
    quiet: bool = False
    compress: bool = False  # offer permessage-deflate (and start hubbub with it on)
    text_payload: bool = False  # varied words and ids instead of one repeated letter
    extra: dict[str, Any] = field(default_factory=dict)


def channel_name(opts: BenchOptions, index: int) -> str:
    """The channel of index ``index``: ``[namespace:]channel``, numbered when several."""
    name = opts.channel if opts.channels == 1 else f"{opts.channel}{index}"
    return f"{opts.namespace}:{name}" if opts.namespace else name


def subscribers_per_channel(opts: BenchOptions) -> list[int]:
    counts = [0] * opts.channels
    for i in range(opts.subscribers):
        counts[i % opts.channels] += 1
    return counts


class RefusedError(ConnectionError):
    """The server refused the bench's connect or subscribe: no point in retrying."""


class Publisher:
    """Builds publication frames for one publisher id in the target's dialect."""

    def __init__(self, opts: BenchOptions, ident: int, conn: BenchConnection | None) -> None:
        self.ident = ident
        self.channel = ident % opts.channels
        self.conn = conn
        self.dialect = opts.dialect
        self.sent = 0
        self.errors = 0
        self.base_replies = 0
        self.base_errors = 0
        pad = b"x" * max(1, opts.payload - 30)
        name = channel_name(opts, self.channel).encode()
        self.api_channel = channel_name(opts, self.channel)
        self.pad = pad
        if self.dialect == "centrifugo":
            self.template = (
                b'{"id":%d,"publish":{"channel":"' + name + b'","data":"@%d,%d,%d,' + pad + b'"}}'
            )
        elif self.dialect == "socketio":
            self.template = b'42["m","@%d,%d,%d,' + pad + b'"]'
        else:
            self.template = b"@%d,%d,%d," + pad
        self.pads = text_pads(len(pad), ident) if opts.text_payload else [pad]  # --text-payload
        head, _, tail = self.template.rpartition(pad)  # the pad is the template's last x-run
        self.templates = [head + p.replace(b"%", b"%%") + tail for p in self.pads]

    def frames(self, stamps: list[int]) -> bytes:
        """Wire bytes for the next ``len(stamps)`` publications (one write)."""
        assert self.conn is not None
        seq, ident, templates = self.sent, self.ident, self.templates
        count = len(templates)
        self.sent += len(stamps)
        if self.dialect == "centrifugo":
            conn = self.conn
            lines = [
                templates[(seq + k) % count] % (conn.next_id(), t, ident, seq + k)
                for k, t in enumerate(stamps)
            ]
            return _frame(b"\n".join(lines))
        return b"".join(
            _frame(templates[(seq + k) % count] % (t, ident, seq + k)) for k, t in enumerate(stamps)
        )

    def data(self, stamp: int) -> str:
        seq, self.sent = self.sent, self.sent + 1
        return f"@{stamp},{self.ident},{seq},{self.pads[seq % len(self.pads)].decode()}"


def _frame(payload: bytes) -> bytes:
    return client_frame(payload)


def acked(pub: Publisher, dialect: str) -> int:
    """Publications the server answered without error (all sent ones where no replies exist)."""
    if pub.conn is None or dialect != "centrifugo":
        return pub.sent - pub.errors
    return max(0, pub.conn.replies - pub.base_replies - pub.errors)
