"""The load of one bench process: fanout, rpc, connect and idle, on a share of the clients.

Rule: a worker owns only the clients whose global index falls to it
(``index % procs``), reports plain data (counters, histogram buckets, timings)
and never decides a figure that needs the other workers' counts; the runner
merges. Every wait is bounded; the only clocks are ``time.monotonic`` (shared by
all processes of the machine) and ``time.process_time`` (this worker's CPU).

Honest latency: every publication carries ``@<send_us>,<publisher>,<seq>,``.
At a fixed rate the timestamp is the *intended* send time of that sequence
number (a late publisher does not hide its lateness: no coordinated omission);
at saturation it is the time the frame was written. Sampled subscribers (every
``sample_every``-th) decode every publication they receive; the others only
count ``@`` bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hubbub.tools.histogram import Histogram
from hubbub.tools.publisher import (
    PHASES,
    SCENARIOS,
    BenchOptions,
    Publisher,
    RefusedError,
    acked,
    channel_name,
    subscribers_per_channel,
)
from hubbub.tools.wsclient import (
    BenchConnection,
    SeqTracker,
    Target,
    now_us,
    open_connection,
)

__all__ = ["PHASES", "SCENARIOS", "BenchOptions", "RefusedError", "Worker",
           "subscribers_per_channel"]  # fmt: skip
SETUP_TIMEOUT = 120.0
DRAIN_MAX = 5.0


Phase = Callable[[str], Awaitable[None]]
Progress = Callable[[int, dict[str, float]], None]


class Worker:
    """One process's share of the load."""

    def __init__(self, opts: BenchOptions, index: int, phase: Phase, progress: Progress) -> None:
        self.opts = opts
        self.index = index
        self.phase = phase
        self.progress = progress
        self.target = Target(opts.url or "", opts.dialect, compress=opts.compress)
        # Subscribers' target: the same server, in Protobuf when asked.
        self.sub_target = (
            Target(opts.url or "", "protobuf", compress=opts.compress)
            if opts.protobuf
            else self.target
        )
        self.latency = Histogram()
        self.result: dict[str, Any] = {"worker": index}
        self.cpu0 = time.process_time()
        self.wall0 = time.monotonic()

    def mine(self, count: int) -> list[int]:
        return [i for i in range(count) if i % self.opts.procs == self.index]

    async def run(self) -> dict[str, Any]:
        scenario = getattr(self, f"_{self.opts.scenario}")
        await scenario()
        self.result["cpu_s"] = time.process_time() - self.cpu0
        self.result["wall_s"] = time.monotonic() - self.wall0
        self.result["latency_hist"] = self.latency.to_dict()
        return self.result

    # -- clients ------------------------------------------------------------------------
    async def _client(
        self,
        channel: int | None,
        *,
        latency: Histogram | None = None,
        seqs: SeqTracker | None = None,
        recover: dict[str, Any] | None = None,
        subscriber: bool = False,  # a receiving client: Protobuf with opts.protobuf
    ) -> tuple[BenchConnection, dict[str, Any]]:
        target = self.sub_target if subscriber else self.target
        conn = await open_connection(target, latency=latency, seqs=seqs)
        reply: dict[str, Any] = {}
        if self.opts.dialect == "centrifugo":
            connect: dict[str, Any] = {"token": self.opts.token} if self.opts.token else {}
            commands: list[dict[str, Any]] = [{"connect": connect}]
            if channel is not None:
                subscribe: dict[str, Any] = {"channel": channel_name(self.opts, channel)}
                if recover:
                    subscribe.update(recover=True, **recover)
                commands.append({"subscribe": subscribe})
            try:
                reply = await asyncio.wait_for(conn.request_frame(commands), 10)
            except BaseException:
                conn.abort()
                raise
            if "error" in reply:
                conn.abort()
                what = "subscribe to " + channel_name(self.opts, channel) if channel is not None \
                    else "connect"  # fmt: skip
                raise RefusedError(f"the server refused {what}: {reply['error']} (see --channel, "
                                   "--namespace, --token)")  # fmt: skip
        return conn, reply

    async def _open_many(
        self, channels: list[int | None], sampled: list[bool]
    ) -> tuple[list[BenchConnection], list[SeqTracker | None]]:
        semaphore = asyncio.Semaphore(self.opts.concurrency)
        seqs: list[SeqTracker | None] = [SeqTracker() if s else None for s in sampled]

        async def one(k: int) -> BenchConnection:
            async with semaphore:
                conn, _ = await self._client(
                    channels[k],
                    latency=self.latency if sampled[k] else None,
                    seqs=seqs[k],
                    subscriber=True,
                )
                return conn

        conns = await asyncio.wait_for(
            asyncio.gather(*(one(k) for k in range(len(channels)))), SETUP_TIMEOUT
        )
        return list(conns), seqs

    def _report(self, values: dict[str, float]) -> None:
        values["cpu"] = (time.process_time() - self.cpu0) / max(1e-9, time.monotonic() - self.wall0)
        self.progress(self.index, values)

    # -- fanout -------------------------------------------------------------------------
    async def _fanout(self) -> None:
        opts = self.opts
        sub_ids = self.mine(opts.subscribers)
        pub_ids = self.mine(opts.publishers)
        sampled = [i % max(1, opts.sample_every) == 0 for i in sub_ids]
        subs, seqs = await self._open_many([i % opts.channels for i in sub_ids], sampled)
        publishers: list[Publisher] = []
        for ident in pub_ids:
            conn = None
            if opts.api is None:
                # Some servers (the demo preset) let only a channel's subscribers publish.
                own = ident % opts.channels if opts.subscribe_publishers else None
                conn, _ = await self._client(own)
                conn.replies_with_pushes = own is not None
            publishers.append(Publisher(opts, ident, conn))
        if opts.dialect != "centrifugo":
            await self._plain_ready(subs, publishers)
        # Counters are reset before the start barrier: nothing is published before it,
        # and after it another process's publisher may already be sending.
        probes: dict[int, BenchConnection] = {}
        for i, conn in zip(sub_ids, subs, strict=True):
            probes.setdefault(i % opts.channels, conn)
            conn.marks = 0
            conn.wire_bytes = 0
        for pub in publishers:
            if pub.conn is not None:
                pub.base_replies = pub.conn.replies
                pub.base_errors = pub.conn.reply_errors
        self.latency.reset()
        for tracker in seqs:
            if tracker is not None:
                tracker.reset()
        await self.phase("connected")
        t0 = time.monotonic()
        cpu0 = time.process_time()
        end = t0 + opts.seconds
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(self._publish(pub, probes.get(pub.channel), t0, end))
            for pub in publishers
        ]
        ticker = asyncio.create_task(self._fanout_progress(subs, publishers, t0, stop))
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), opts.seconds + 30)
        finally:
            stop.set()
            await ticker
        elapsed = time.monotonic() - t0
        window = sum(c.marks for c in subs)
        wire = sum(c.wire_bytes for c in subs)
        cpu = time.process_time() - cpu0
        await self.phase("measured")  # the coordinator reads the server's CPU time here
        await self._drain(subs, publishers)
        self.result.update(
            elapsed_s=elapsed,
            measure_cpu_s=cpu,
            delivered_window=window,
            wire_bytes_window=wire,
            compressed_subscribers=sum(1 for c in subs if c.deflate is not None),
            delivered_total=sum(c.marks for c in subs),
            sent={p.ident: p.sent for p in publishers},
            # Acknowledged without error: what the server promised to deliver. A
            # publish still unanswered when the drain ends is not counted as lost.
            acked={p.ident: acked(p, self.opts.dialect) for p in publishers},
            publish_errors={p.ident: p.errors for p in publishers},
            rate_limited=sum(p.conn.rate_limited for p in publishers if p.conn is not None),
            first_error=next(
                (
                    p.conn.first_error.decode(errors="replace")
                    for p in publishers
                    if p.conn is not None and p.conn.first_error
                ),
                None,
            ),
            publisher_channels={p.ident: p.channel for p in publishers},
            seq=[
                {"channel": i % opts.channels, "unique": s.unique, "duplicates": s.duplicates}
                for i, s in zip(sub_ids, seqs, strict=True)
                if s is not None
            ],
            closed=sum(1 for c in subs if c.closed.done()),
        )
        for conn in subs + [p.conn for p in publishers if p.conn is not None]:
            conn.close()

    async def _plain_ready(self, subs: list[BenchConnection], pubs: list[Publisher]) -> None:
        """Plain servers give no subscribe reply: send hellos until every subscriber hears one."""
        if not any(pub.conn is not None for pub in pubs):
            return  # no publisher in this process: nobody here to send hellos
        hello = b'42["m","hello"]' if self.opts.dialect == "socketio" else b"hello"
        deadline = time.monotonic() + 15
        for conn in subs:
            conn.frames = 0
        while time.monotonic() < deadline:
            for pub in pubs:
                if pub.conn is not None:
                    pub.conn.send_text(hello)
            await asyncio.sleep(0.3)
            if all(c.frames > 0 for c in subs):
                await asyncio.sleep(0.2)
                return
        missing = sum(1 for c in subs if c.frames == 0)
        if pubs:
            raise TimeoutError(f"{missing} subscribers never received the hello broadcast")

    async def _publish(
        self, pub: Publisher, probe: BenchConnection | None, t0: float, end: float
    ) -> None:
        opts = self.opts
        if opts.api is not None:
            await self._publish_api(pub, t0, end)
            return
        conn = pub.conn
        assert conn is not None
        if opts.rate > 0:
            rate = opts.rate / opts.publishers
            interval_us = 1e6 / rate
            t0_us = int(t0 * 1e6)
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                due = int((now - t0) * rate) + 1
                if due > pub.sent:
                    stamps = [int(t0_us + k * interval_us) for k in range(pub.sent, due)]
                    conn.send_raw(pub.frames(stamps))
                await asyncio.sleep(max(0.0, t0 + pub.sent / rate - time.monotonic()))
            return
        wake = asyncio.Event()
        conn.listeners.append(wake)
        if probe is not None:
            probe.listeners.append(wake)
        centrifugo = opts.dialect == "centrifugo"
        if probe is None and not centrifugo:
            raise RuntimeError("plain saturation needs a subscriber of each channel per process")
        while time.monotonic() < end:
            in_flight = pub.sent - (probe.marks if probe is not None else pub.sent)
            if centrifugo:
                in_flight = max(in_flight, pub.sent - (conn.replies - pub.base_replies))
            if in_flight < opts.window:
                conn.send_raw(pub.frames([now_us()] * opts.batch))
                continue
            if conn.closed.done():
                raise ConnectionError(f"publisher connection closed ({conn.closed.result()})")
            wake.clear()
            try:
                await asyncio.wait_for(wake.wait(), 5)
            except TimeoutError:
                if conn.first_error is not None:
                    raise RefusedError(
                        "publisher stalled: its publishes are refused: "
                        f"{conn.first_error.decode(errors='replace')[:200]} (a channel where "
                        "clients may publish: see --channel, --namespace, --api, and "
                        "--subscribe-publishers where only subscribers may publish)"
                    ) from None
                raise TimeoutError("publisher stalled: nothing delivered for 5 s") from None
        if centrifugo:
            pub.errors = conn.reply_errors - pub.base_errors

    async def _publish_api(self, pub: Publisher, t0: float, end: float) -> None:
        import aiohttp

        opts = self.opts
        assert opts.api is not None
        url = opts.api.rstrip("/") + "/publish"
        headers = {"X-API-Key": opts.api_key}
        semaphore = asyncio.Semaphore(max(1, opts.window))
        async with aiohttp.ClientSession(headers=headers) as session:

            async def post(data: str) -> None:
                body = {"channel": pub.api_channel, "data": data}
                try:
                    async with semaphore, session.post(url, json=body) as response:
                        reply = await response.json(content_type=None)
                        if response.status != 200 or "error" in reply:
                            pub.errors += 1
                except (aiohttp.ClientError, ValueError):
                    pub.errors += 1

            tasks: list[asyncio.Task[None]] = []
            if opts.rate > 0:
                rate = opts.rate / opts.publishers
                t0_us = int(t0 * 1e6)
                while time.monotonic() < end:
                    due = int((time.monotonic() - t0) * rate) + 1
                    while pub.sent < due:  # pub.data() advances pub.sent
                        data = pub.data(int(t0_us + pub.sent * 1e6 / rate))
                        tasks.append(asyncio.create_task(post(data)))
                    await asyncio.sleep(max(0.0, t0 + pub.sent / rate - time.monotonic()))
            else:
                while time.monotonic() < end:
                    await post(pub.data(now_us()))
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

    async def _fanout_progress(
        self, subs: list[BenchConnection], pubs: list[Publisher], t0: float, stop: asyncio.Event
    ) -> None:
        last, last_t = 0, t0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            now = time.monotonic()
            delivered = sum(c.marks for c in subs)
            self._report(
                {
                    "elapsed": now - t0,
                    "delivered": delivered,
                    "rate": (delivered - last) / max(1e-9, now - last_t),
                    "sent": sum(p.sent for p in pubs),
                }
            )
            last, last_t = delivered, now

    async def _drain(self, subs: list[BenchConnection], pubs: list[Publisher]) -> None:
        opts = self.opts
        expected: int | None = None
        if opts.procs == 1:
            per_channel = [0] * opts.channels
            for pub in pubs:
                per_channel[pub.channel] += pub.sent
            counts = subscribers_per_channel(opts)
            expected = sum(per_channel[c] * counts[c] for c in range(opts.channels))
        deadline = time.monotonic() + DRAIN_MAX
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            total = sum(c.marks for c in subs)
            replies_done = (
                all(p.conn is None or p.conn.replies - p.base_replies >= p.sent for p in pubs)
                or opts.dialect != "centrifugo"
            )
            if expected is not None and total >= expected and replies_done:
                break
            if total != last:
                last, stable_since = total, time.monotonic()
            elif time.monotonic() - stable_since > 0.5 and replies_done:
                break
            await asyncio.sleep(0.05)
        for pub in pubs:
            if pub.conn is not None and opts.dialect == "centrifugo":
                pub.errors = pub.conn.reply_errors - pub.base_errors

    # -- rpc ----------------------------------------------------------------------------
    async def _rpc(self) -> None:
        opts = self.opts
        ids = self.mine(opts.subscribers)
        conns, _ = await self._open_many([None] * len(ids), [False] * len(ids))
        if opts.dialect == "centrifugo" and conns:
            probe = await conns[0].request({"rpc": {"method": opts.rpc_method, "data": "probe"}})
            if "error" in probe:
                hint = ""
                if probe["error"].get("code") in (104, 108):
                    hint = (" - the server has no handler for this method; hubbub answers "
                            "'echo' with 'hubbub serve --echo-rpc' (on in the demo preset), "
                            "or choose another with --rpc-method")  # fmt: skip
                raise RefusedError(f"rpc {opts.rpc_method!r} answered {probe['error']}{hint}")
        await self.phase("connected")
        pad = "x" * max(1, opts.payload - 30)
        counts = {"requests": 0, "errors": 0, "rate_limited": 0}
        t0 = time.monotonic()
        end = t0 + opts.seconds

        async def loop(conn: BenchConnection, ident: int) -> None:
            seq = 0
            while time.monotonic() < end:
                start = now_us()
                data = f"@{start},{ident},{seq},{pad}"
                seq += 1
                if opts.dialect == "centrifugo":
                    reply = await conn.request({"rpc": {"method": opts.rpc_method, "data": data}})
                    if "error" in reply:
                        counts["errors"] += 1
                        counts["rate_limited"] += reply["error"].get("code") == 111
                else:
                    waiter = asyncio.get_running_loop().create_future()
                    conn.waiter = waiter
                    conn.send_text(
                        f'42["m","{data}"]'.encode()
                        if opts.dialect == "socketio"
                        else data.encode()
                    )
                    await asyncio.wait_for(waiter, 10)
                self.latency.record(now_us() - start)
                counts["requests"] += 1

        stop = asyncio.Event()

        async def ticker() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    now = time.monotonic()
                    self._report({"elapsed": now - t0, "requests": counts["requests"]})

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.wait_for(
                asyncio.gather(*(loop(c, i) for c, i in zip(conns, ids, strict=True))),
                opts.seconds + 20,
            )
        finally:
            stop.set()
            await tick
        self.result.update(elapsed_s=time.monotonic() - t0, rpc=counts)
        for conn in conns:
            conn.close()

    # -- connect ------------------------------------------------------------------------
    async def _connect(self) -> None:
        opts = self.opts
        ids = self.mine(opts.subscribers)
        semaphore = asyncio.Semaphore(opts.concurrency)
        slots: list[BenchConnection | None] = [None] * len(ids)
        positions: list[dict[str, Any] | None] = [None] * len(ids)
        recovered = [False] * len(ids)
        attempts = {"failed": 0}
        deadline = time.monotonic() + SETUP_TIMEOUT

        async def establish(k: int) -> None:
            delay = 0.05
            while True:
                start = now_us()
                try:
                    async with semaphore:
                        conn, reply = await self._client(
                            ids[k] % opts.channels, recover=positions[k]
                        )
                except RefusedError:
                    raise  # a refusal is not an outage: retrying will not help
                except (OSError, ConnectionError, TimeoutError):
                    attempts["failed"] += 1
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 0.5)
                    continue
                self.latency.record(now_us() - start)
                slots[k] = conn
                result = reply.get("subscribe", {})
                if "epoch" in result:
                    positions[k] = {"epoch": result["epoch"], "offset": result.get("offset", 0)}
                recovered[k] = bool(result.get("recovered"))
                return

        t0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.wait_for(asyncio.gather(*(establish(k) for k in range(len(ids)))), 130)
        connect_s = time.monotonic() - t0
        self.result["connect"] = {
            "clients": len(ids),
            "seconds": connect_s,
            "failed_attempts": attempts["failed"],
            "cpu_s": time.process_time() - cpu0,  # this generator's CPU: is it the bottleneck?
        }
        self._report({"elapsed": connect_s, "connected": len(ids)})
        await self.phase("connected")
        storm = self.opts.storm
        await self.phase("storm")
        if storm == "none":
            await self.phase("back")
            for conn in slots:
                if conn is not None:
                    conn.close()
            return
        t_storm, cpu_storm = time.monotonic(), time.process_time()
        attempts["failed"] = 0
        if storm == "drop":
            for conn in slots:
                assert conn is not None
                conn.abort()

        async def back(k: int) -> None:
            conn = slots[k]
            assert conn is not None
            await asyncio.wait_for(asyncio.shield(conn.closed), 60)
            await establish(k)

        deadline = time.monotonic() + SETUP_TIMEOUT
        await asyncio.wait_for(asyncio.gather(*(back(k) for k in range(len(ids)))), 130)
        self.result["storm"] = {
            "mode": storm,
            "t_storm": t_storm,
            "t_back": time.monotonic(),
            "seconds": time.monotonic() - t_storm,
            "recovered": sum(recovered),
            "failed_attempts": attempts["failed"],
            "cpu_s": time.process_time() - cpu_storm,
        }
        await self.phase("back")  # the coordinator reads the server's CPU time here
        for conn in slots:
            if conn is not None:
                conn.close()

    # -- idle ---------------------------------------------------------------------------
    async def _idle(self) -> None:
        opts = self.opts
        ids = self.mine(opts.subscribers)
        t0 = time.monotonic()
        conns, _ = await self._open_many([i % opts.channels for i in ids], [False] * len(ids))
        connect_s = time.monotonic() - t0
        self._report({"elapsed": connect_s, "connected": len(conns)})
        await asyncio.sleep(opts.hold)
        await self.phase("connected")
        await self.phase("held")
        rest = max(0.0, opts.seconds - opts.hold)
        await asyncio.sleep(rest)
        self.result["idle"] = {
            "clients": len(conns),
            "connect_s": connect_s,
            "closed_by_server": sum(1 for c in conns if c.closed.done()),
        }
        for conn in conns:
            conn.close()
