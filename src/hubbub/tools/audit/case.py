"""A case, the context it runs in, and the expectations every group shares.

Rule: a case is data (id, group, description, expectation) plus one coroutine
that drives a connection through ``CaseContext``; the context's ``expect_*``
helpers are the only place where events become verdicts, so that "the server
must fail the connection" or "must answer the close" is judged the same way in
every group. In Centrifugo mode the context's ``Probe`` turns a payload into a
command the server answers (an ``rpc``), so the framing cases run against a
server that does not echo.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hubbub.tools.audit.connection import AuditConnection, AuditTarget, Event, WireLog, preview
from hubbub.tools.audit.verdicts import (
    FAILED,
    INFORMATIONAL,
    NON_STRICT,
    OK,
    CaseResult,
    worse,
)
from hubbub.websocket.frames import OP_BINARY, OP_PONG, OP_TEXT

ECHO = "echo"
CENTRIFUGO = "centrifugo"
BOTH = frozenset((ECHO, CENTRIFUGO))
ECHO_ONLY = frozenset((ECHO,))
CENTRIFUGO_ONLY = frozenset((CENTRIFUGO,))

#: How long a server gets to answer or to fail a connection in an ordinary case.
ANSWER_TIMEOUT = 5.0
#: How long a close handshake may take before the server is judged not to answer it.
CLOSE_TIMEOUT = 5.0
TOO_BIG = 1009


@dataclass(frozen=True)
class AuditOptions:
    """What the user asked for (the CLI flags, as values)."""

    url: str
    mode: str = ECHO
    cases: str = "*"
    token: str = ""
    channel: str = "chat:audit"
    concurrency: int = 8
    allow_remote: bool = False
    flood: int = 200  # idle connections opened by the flood check
    slow_seconds: float = 15.0  # how long the slowloris check dribbles a handshake
    ping_wait: float = 40.0  # Centrifugo mode: longest wait for the server's first ping
    quiet: bool = False
    ca: str = ""  # wss://: trust this authority (a PEM file) instead of the system's


CaseRun = Callable[["CaseContext"], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One audit case. ``connect``: the runner opens a connection (and, in Centrifugo
    mode, sends ``connect``) before ``run``; ``serial``: run alone (timing cases)."""

    id: str
    description: str
    expectation: str
    run: CaseRun
    modes: frozenset[str] = BOTH
    connect: bool = True
    serial: bool = False
    limit: float = 30.0
    extensions: str | None = None

    @property
    def group(self) -> str:
        return self.id.split(".")[0]


class Answer:
    """A message sent so that the server answers it, and how to recognise the answer.

    The payload is ``prefix + body + suffix`` (the prefix and suffix wrap the body
    in a command in Centrifugo mode); ``split`` cuts it at positions of the body,
    so that a case fragments or chops the same content in both modes."""

    def __init__(
        self,
        payload: bytes,
        opcode: int,
        command_id: int | None,
        *,
        prefix: int = 0,
        suffix: int = 0,
    ) -> None:
        self.payload = payload
        self.opcode = opcode
        self.command_id = command_id
        self.prefix = prefix
        self.suffix = suffix

    def split(self, *cuts: int) -> list[bytes]:
        """The payload cut at the given body positions (len(cuts) + 1 pieces)."""
        bounds = [0, *(self.prefix + c for c in cuts), len(self.payload)]
        return [self.payload[a:b] for a, b in itertools.pairwise(bounds)]

    def body_offset(self, position: int) -> int:
        """Where body position ``position`` is in the payload."""
        return self.prefix + position

    def matches(self, event: Event) -> bool:
        if self.command_id is None:
            expected: str | bytes = (
                self.payload.decode() if self.opcode == OP_TEXT else self.payload
            )
            return event.opcode == self.opcode and event.data == expected
        return event.opcode == OP_TEXT and self.command_id in reply_ids(event.data)

    def describe(self) -> str:
        if self.command_id is not None:
            return f"the reply to command {self.command_id}"
        kind = "text" if self.opcode == OP_TEXT else "binary"
        return f"the echo of the {kind} message ({len(self.payload)} bytes)"


def reply_ids(data: str | bytes) -> set[int]:
    """The ids of the Centrifugo replies in a frame (one JSON object per line)."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    ids: set[int] = set()
    for line in text.split("\n"):
        if '"id"' not in line:
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("id"), int):
            ids.add(value["id"])
    return ids


class Probe:
    """Turns content into a message the server answers: itself (echo mode) or an
    ``rpc`` command carrying it (Centrifugo mode, whose JSON protocol has no echo)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.next_id = 100

    def _wrapper(self, command_id: int) -> tuple[bytes, bytes]:
        """The bytes before and after a body in Centrifugo mode: an ``rpc`` command."""
        return b'{"id":%d,"rpc":{"method":"audit","data":"' % command_id, b'"}}'

    def text(self, content: bytes) -> Answer:
        """A text message carrying ``content`` that the server answers."""
        if self.mode == ECHO:
            return Answer(content, OP_TEXT, None)
        self.next_id += 1
        try:
            body = json.dumps(content.decode(), ensure_ascii=False)[1:-1].encode()
        except UnicodeDecodeError:  # invalid UTF-8 goes in raw: the server must refuse it
            body = content
        prefix, suffix = self._wrapper(self.next_id)
        return Answer(
            prefix + body + suffix, OP_TEXT, self.next_id, prefix=len(prefix), suffix=len(suffix)
        )

    def sized(self, size: int, fill: bytes = b"*") -> Answer:
        """A text message of exactly ``size`` bytes (or the smallest command possible)."""
        if self.mode == ECHO:
            return self.text(fill * size)
        prefix, suffix = self._wrapper(self.next_id + 1)  # the id text() will take
        return self.text(fill * max(0, size - len(prefix) - len(suffix)))

    def binary(self, content: bytes) -> Answer:
        return Answer(content, OP_BINARY, None)


@dataclass
class CaseContext:
    """The state of one running case: its connection, verdicts and observations."""

    case: Case
    options: AuditOptions
    target: AuditTarget
    wire: WireLog
    result: CaseResult
    probe: Probe
    conn: AuditConnection | None = None
    failed_connection: bool = False  # the server has closed or dropped the connection
    ending: str = ""  # how: "close", "eof" or "violation"
    others: list[AuditConnection] = field(default_factory=list)  # more connections of the case
    pushed: list[Event] = field(default_factory=list)  # events looked at and put back

    @property
    def ws(self) -> AuditConnection:
        assert self.conn is not None, "this case opens no connection"
        return self.conn

    async def open(self, **options: Any) -> AuditConnection:
        """Another connection for this case (closed by the runner), logged in its wire log."""
        conn = await AuditConnection.open(self.target, self.wire, **options)
        self.others.append(conn)
        return conn

    async def protocol_connect(self, conn: AuditConnection | None = None) -> dict[str, Any]:
        """Centrifugo mode: send ``connect`` (with ``--token``) and return its result.

        Raises ``ConnectionError`` when the server refuses or does not answer."""
        ws = conn or self.ws
        params = {"token": self.options.token} if self.options.token else {}
        ws.send_frame(json.dumps({"id": 1, "connect": params}))
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            event = await ws.next_event(max(0.0, deadline - time.monotonic()))
            if event is None or event.kind != "message":
                raise ConnectionError(f"no reply to connect ({event.kind if event else 'timeout'})")
            for line in str(event.data).split("\n"):
                try:
                    reply = json.loads(line) if line.startswith("{") else {}
                except ValueError:
                    raise ConnectionError(f"a reply that is not JSON: {preview(line)}") from None
                if isinstance(reply, dict) and reply.get("id") == 1:
                    if "error" in reply:
                        raise ConnectionError(f"connect refused: {reply['error']}")
                    result: dict[str, Any] = reply.get("connect", {})
                    return result

    # -- verdicts -------------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.result.observations.append(text)

    def judge(self, verdict: str, text: str, *, close: bool = False) -> None:
        """Record an observation and lower the behavior (or close) verdict to ``verdict``."""
        self.note(f"{verdict}: {text}" if verdict != OK else text)
        if close:
            self.result.close = worse(self.result.close, verdict)
        else:
            self.result.behavior = worse(self.result.behavior, verdict)

    # -- expectations ---------------------------------------------------------------------
    async def await_event(self, within: float) -> Event | None:
        """The next event that matters (Centrifugo pings and pushes answered or skipped)."""
        deadline = time.monotonic() + within
        while True:
            if self.pushed:
                return self.pushed.pop(0)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            event = await self.ws.next_event(left)
            if event is None:
                return None
            if event.kind in ("close", "eof", "violation"):
                self._ended(event)
            if self.probe.mode == CENTRIFUGO and event.kind == "message":
                if event.data == "{}":  # the server's ping: a pong keeps us connected
                    self.ws.send_frame(b"{}")
                    continue
                if event.opcode == OP_TEXT and not reply_ids(event.data):
                    continue  # a push (join, publication...): not what cases wait for
            return event

    def _ended(self, event: Event) -> None:
        if not self.failed_connection:
            self.ending = event.kind
        self.failed_connection = True
        if event.kind == "close":
            self.result.remote_close_code = event.code
            self.result.remote_close_reason = event.reason
        elif event.kind == "violation":
            self.judge(FAILED, f"the server sent an invalid frame: {event.reason}")

    async def poll_failure(self, seconds: float) -> bool:
        """Whether the server fails the connection within ``seconds`` (fail-fast checks);
        anything else that arrives is kept for the next expectation."""
        if self.failed_connection:
            return True
        event = await self.await_event(seconds)
        if event is None:
            return False
        if event.kind == "message":
            self.pushed.append(event)
            return False
        return True

    async def expect_answer(
        self,
        answer: Answer,
        *,
        within: float = ANSWER_TIMEOUT,
        early_failure: str = FAILED,
        log: bool = True,
        limit_codes: tuple[int, ...] = (TOO_BIG,),
    ) -> bool:
        """The server must answer ``answer`` (echo it, or reply to the command).

        ``early_failure``: the verdict when the server fails the connection instead
        (NON-STRICT where a later frame was invalid and the server failed early).
        A close 1009 (``limit_codes``) is the server's size limit: INFORMATIONAL,
        never a failure.
        """
        while True:
            event = await self.await_event(within)
            if event is None:
                self.judge(FAILED, f"no answer within {within:g} s: expected {answer.describe()}")
                return False
            if event.kind == "message" and event.opcode == OP_PONG:
                self.note(f"pong {preview(event.data)} while waiting for {answer.describe()}")
                continue
            if event.kind == "message":
                if answer.matches(event):
                    if log:
                        self.note(f"got {answer.describe()}")
                    return True
                self.judge(
                    FAILED,
                    f"expected {answer.describe()}, got {_kind(event)} {preview(event.data)}",
                )
                return False
            if event.kind == "close" and event.code in limit_codes:
                self.judge(
                    INFORMATIONAL,
                    f"the server refused a message of {len(answer.payload)} bytes with close "
                    f"{event.code} (a limit of its own: the RFC leaves it to the server)",
                )
                return False
            if event.kind != "violation":
                self.judge(early_failure, f"{_ending(event)} instead of {answer.describe()}")
            return False

    async def expect_pong(self, payload: bytes, *, within: float = ANSWER_TIMEOUT) -> bool:
        """The server MUST answer a ping with a pong carrying the same payload (5.5.2)."""
        while True:
            event = await self.await_event(within)
            if event is None:
                self.judge(FAILED, f"no pong within {within:g} s")
                return False
            if event.kind == "message" and event.opcode == OP_PONG:
                if event.data == payload:
                    self.note(f"pong with the ping's payload ({len(payload)} bytes)")
                    return True
                self.judge(FAILED, f"pong payload differs: {preview(event.data)}")
                return False
            if event.kind == "message":
                self.judge(FAILED, f"expected a pong, got {_kind(event)} {preview(event.data)}")
                return False
            if event.kind != "violation":
                self.judge(FAILED, f"{_ending(event)} instead of a pong")
            return False

    async def expect_failure(
        self,
        codes: tuple[int, ...] = (1002,),
        *,
        why: str = "",
        within: float = ANSWER_TIMEOUT,
        late: bool = False,
    ) -> None:
        """The server MUST fail the connection: close it (with one of ``codes``, as it
        SHOULD; another code is NON-STRICT) or drop it, and answer nothing more.
        ``late``: failing only now is allowed but not ideal (NON-STRICT)."""
        if not self.failed_connection:
            while True:
                event = await self.await_event(within)
                if event is None:
                    self.judge(FAILED, f"the connection is still open {within:g} s after {why}")
                    return
                if event.kind == "message":
                    self.judge(
                        FAILED,
                        f"the server answered ({_kind(event)} {preview(event.data)}) "
                        f"instead of failing the connection after {why}",
                    )
                    return
                break
        if late:
            self.judge(NON_STRICT, f"the server failed the connection only later than {why}")
        self._judge_failure_close(codes, why)
        await self.expect_tcp_close()

    def _judge_failure_close(self, codes: tuple[int, ...], why: str) -> None:
        code = self.result.remote_close_code
        if code is None:
            self.judge(OK, f"the server dropped the connection after {why}", close=True)
        elif code in codes:
            self.judge(OK, f"the server closed with {code} after {why}", close=True)
        else:
            expected = " or ".join(map(str, codes))
            self.judge(
                NON_STRICT,
                f"the server closed with {code}, the RFC asks for {expected}",
                close=True,
            )

    async def close_normally(self, code: int | None = 1000, reason: bytes = b"") -> None:
        """Start the closing handshake: the server MUST answer with a close (5.5.1) and
        then close the TCP connection (7.1.1)."""
        if self.failed_connection:
            if self.ending == "eof":
                self.judge(FAILED, "the server dropped the connection without a close", close=True)
            return
        self.ws.send_close(code, reason)
        await self.await_close_reply()

    async def await_close_reply(
        self, *, within: float = CLOSE_TIMEOUT, late_data: str = OK
    ) -> None:
        """After our close: frames may still arrive (judged ``late_data`` when they answer
        something sent after our close), then the server's close, then EOF."""
        deadline = time.monotonic() + within
        while not self.failed_connection:
            event = await self.await_event(deadline - time.monotonic())
            if event is None:
                self.judge(FAILED, f"no close frame within {within:g} s of ours", close=True)
                return
            if event.kind == "message":
                text = f"after our close: {_kind(event)} {preview(event.data)}"
                self.judge(late_data, text) if late_data != OK else self.note(text)
        if self.ending == "close":
            code = self.result.remote_close_code
            self.judge(OK, f"the server answered the close ({code})", close=True)
        elif self.ending == "eof":
            self.judge(
                FAILED, "the server dropped the connection without a close frame", close=True
            )
        await self.expect_tcp_close()

    async def expect_tcp_close(self, within: float = CLOSE_TIMEOUT) -> None:
        """After the close frames, the server MUST close the TCP connection (7.1.1)."""
        deadline = time.monotonic() + within
        while not self.ws.eof:
            event = await self.ws.next_event(max(0.0, deadline - time.monotonic()))
            if event is not None and event.kind == "message" and self.ending == "close":
                self.judge(
                    FAILED, f"{_kind(event)} after the server's close frame (5.5.1: MUST NOT)"
                )
            if event is None:
                self.judge(
                    FAILED, f"the TCP connection is still open {within:g} s after the close",
                    close=True,
                )  # fmt: skip
                return

    async def expect_nothing(self, seconds: float, what: str) -> None:
        """Nothing but pongs may arrive for ``seconds`` (no echo of an ignored frame)."""
        event = await self.await_event(seconds)
        if event is not None and event.kind == "message" and event.opcode != OP_PONG:
            self.judge(FAILED, f"unexpected {_kind(event)} {preview(event.data)} after {what}")


def _kind(event: Event) -> str:
    return {OP_TEXT: "text", OP_BINARY: "binary", OP_PONG: "pong"}.get(
        event.opcode, f"opcode {event.opcode}"
    )


def _ending(event: Event) -> str:
    if event.kind == "close":
        return f"the server closed with {event.code}" + (
            f" ({event.reason})" if event.reason else ""
        )
    if event.kind == "eof":
        return "the server dropped the connection"
    return f"the server sent an invalid frame ({event.reason})"
