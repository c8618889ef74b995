"""The chaos run (issue 9): three nodes on one Redis, real SDK clients, every kind of fault.

The run itself (``test_chaos_run``) is the short version of
``python benchmarks/chaos.py --minutes 3``: one round of every fault kind
(kill -9, SIGTERM, SIGSTOP a node; restart or SIGSTOP Redis; cut, stall and
partition the links node-Redis and clients-node) while centrifuge-python
clients (through nginx and direct, client- and server-side) and a
centrifuge-js client receive numbered publications.
Nothing acknowledged may be lost, duplicated or reordered unless the client
was told it could not recover, and no node may log a traceback.

The other tests pin the machinery: the accounting rules on hand-made event
logs, the link proxy's faults on a real socket, the seeded plan, the log scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

import pytest

from tests.chaos_accounting import Ack, Received, Subscribed, account, check_acks, epoch_ranks
from tests.chaos_cluster import FAULT_KINDS, LogScan, plan_faults, scan_log
from tests.chaos_proxy import LinkProxy
from tests.chaos_report import render
from tests.chaos_run import ChaosOptions, run_chaos

# --- accounting ----------------------------------------------------------------------


def acks(epoch: str, numbers: range, first_offset: int = 1, at: float = 1.0) -> list[Ack]:
    return [Ack(n, epoch, first_offset + i, at + i * 0.01) for i, n in enumerate(numbers)]


def sub(
    epoch: str, offset: int, *, recovering: bool = False, recovered: bool = False
) -> Subscribed:
    return Subscribed(recovering, recovered, epoch, offset, at=0.5 if not recovering else 5.0)


def received(numbers: range, first_offset: int) -> list[Received]:
    return [Received(n, first_offset + i) for i, n in enumerate(numbers)]


def check(all_acks: list[Ack], log: list[Subscribed | Received]) -> tuple[int, int, int, int, int]:
    result = account(all_acks, log, epoch_ranks(all_acks, [log]))
    return result.lost, result.duplicated, result.out_of_order, result.told, result.told_windows


def test_everything_after_the_first_position_is_owed() -> None:
    published = acks("e1", range(1, 11))
    # Subscribed after n=3 (offset 3): owes 4..10.
    log = [sub("e1", 3), *received(range(4, 11), 4)]
    result = account(published, log, epoch_ranks(published, [log]))
    assert (result.owed, result.received, result.lost) == (7, 7, 0)
    assert result.clean


def test_a_silent_gap_is_lost_even_after_a_recovery() -> None:
    published = acks("e1", range(1, 11))
    log = [
        sub("e1", 0),
        *received(range(1, 4), 1),
        sub("e1", 3, recovering=True, recovered=True),  # recovered, yet 4 never comes
        *received(range(5, 11), 5),
    ]
    assert check(published, log) == (1, 0, 0, 0, 0)


def test_duplicates_and_reordering_are_never_excused() -> None:
    published = acks("e1", range(1, 6))
    log = [sub("e1", 0), *received(range(1, 4), 1), Received(2, 2), *received(range(4, 6), 4)]
    assert check(published, log) == (0, 1, 0, 0, 0)
    swapped = [
        sub("e1", 0),
        Received(1, 1),
        Received(3, 3),
        Received(2, 2),
        *received(range(4, 6), 4),
    ]
    assert check(published, swapped) == (0, 0, 1, 0, 0)
    # A publication the subscribe position already covered, delivered after it.
    behind = [sub("e1", 2), Received(2, 2), *received(range(3, 6), 3)]
    assert check(published, behind) == (0, 0, 1, 0, 0)


def test_told_windows_excuse_only_what_fell_in_them() -> None:
    # Redis restarted after n=5: n=6, 7 in the old epoch (acknowledged, then lost with
    # Redis), n=8..10 in the new one; the client resubscribed at new offset 1 (n=8).
    published = acks("old", range(1, 8)) + acks("new", range(8, 11), at=3.0)
    log = [
        sub("old", 0),
        *received(range(1, 6), 1),
        sub("new", 1, recovering=True, recovered=False),
        *received(range(9, 10), 2),  # n=10 missing: owed after the new position
    ]
    assert check(published, log) == (1, 0, 0, 3, 1)  # told: 6, 7 (old) and 8 (new, <= 1)
    assert account(published, log, epoch_ranks(published, [log])).told_same_epoch == 0
    # Recovery refused in an unchanged epoch (the history no longer reached back):
    # excused, and counted apart.
    same = acks("e1", range(1, 11))
    refused = [sub("e1", 0), *received(range(1, 3), 1)]
    refused += [sub("e1", 8, recovering=True, recovered=False), *received(range(9, 11), 9)]
    result = account(same, refused, epoch_ranks(same, [refused]))
    assert (result.lost, result.told, result.told_windows, result.told_same_epoch) == (0, 6, 1, 1)


def test_recovering_into_another_epoch_is_told_and_an_anomaly() -> None:
    published = acks("old", range(1, 4)) + acks("new", range(4, 6), at=3.0)
    log = [sub("old", 0), *received(range(1, 3), 1), sub("new", 1, recovering=True, recovered=True)]
    log += received(range(5, 6), 2)
    result = account(published, log, epoch_ranks(published, [log]))
    assert (result.lost, result.told, result.told_windows) == (0, 2, 1)
    assert result.anomalies and not result.clean


def test_a_fresh_subscribe_after_having_a_position_is_not_an_excuse() -> None:
    published = acks("e1", range(1, 8))
    log = [sub("e1", 0), *received(range(1, 3), 1), sub("e1", 5), *received(range(6, 8), 6)]
    result = account(published, log, epoch_ranks(published, [log]))
    assert result.lost == 3 and result.anomalies


def test_epochs_rank_by_first_sight_and_acks_form_a_stream() -> None:
    published = acks("a", range(1, 3), at=1.0) + acks("b", range(3, 5), at=2.0)
    seen_first_by_a_client = [Subscribed(True, False, "c", 0, at=1.5)]
    ranks = epoch_ranks(published, [seen_first_by_a_client])
    assert ranks == {"a": 0, "c": 1, "b": 2}
    assert check_acks(published, ranks) == []
    broken = [*published, Ack(9, "b", 2, 3.0), Ack(10, "a", 9, 3.1)]
    assert len(check_acks(broken, epoch_ranks(broken, []))) == 2


# --- the plan and the log scan ------------------------------------------------------------


def test_the_plan_is_the_seeds() -> None:
    first = plan_faults(7, 120, 3)
    assert first == plan_faults(7, 120, 3)
    assert first != plan_faults(8, 120, 3)
    kinds = [fault.kind for fault in first]
    assert sorted(kinds[: len(FAULT_KINDS)]) == sorted(FAULT_KINDS)  # each kind once a round
    assert all(3.0 <= fault.at <= 117 for fault in first)


def test_log_scan_counts_a_chained_traceback_once() -> None:
    text = "\n".join(
        [
            "2026-01-01 10:00:00,000 INFO hubbub.server: listening",
            "2026-01-01 10:00:01,000 ERROR hubbub.api: api call failed",
            "Traceback (most recent call last):",
            '  File "x.py", line 1, in f',
            "ConnectionResetError: reset",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            '  File "y.py", line 2, in g',
            "redis.exceptions.ConnectionError: closed",
            "2026-01-01 10:00:02,000 WARNING hubbub.engines.redis: redis lost",
        ]
    )
    scan = LogScan()
    scan_log("a", text, scan)
    assert (scan.tracebacks, scan.errors, scan.warnings) == (1, 1, 1)
    assert list(scan.kinds) == [
        "traceback after 'hubbub.api: api call failed': redis.exceptions.ConnectionError: closed"
    ]
    # The text formatter indents a record's further lines (one block per record).
    lines = text.splitlines()
    indented = "\n".join(lines[:2] + ["    " + line for line in lines[2:-1]] + lines[-1:])
    again = LogScan()
    scan_log("a", indented, again)
    assert (again.tracebacks, again.errors, again.warnings) == (1, 1, 1)
    assert list(again.kinds) == list(scan.kinds)


# --- the link proxy -------------------------------------------------------------------


async def test_link_proxy_forwards_cuts_stalls_and_partitions() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(1024):
                writer.write(data)
        writer.close()

    async def close(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    proxy = LinkProxy("echo", server.sockets[0].getsockname()[1])
    await proxy.start()

    async def roundtrip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
        writer.write(b"ping")
        return await asyncio.wait_for(reader.readexactly(4), 5)

    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await roundtrip(reader, writer) == b"ping"
        # Stall: the bytes arrive, late.
        proxy.stall(0.5)
        began = time.monotonic()
        assert await roundtrip(reader, writer) == b"ping"
        assert time.monotonic() - began >= 0.4
        # Cut: the connection is reset.
        assert proxy.cut() == 1
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(reader, writer)
        await close(writer)
        # Partition: new connections are dropped at once, then accepted again.
        proxy.partition(0.5)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            await roundtrip(reader, writer)
        await close(writer)
        await asyncio.sleep(0.6)
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await roundtrip(reader, writer) == b"ping"
        await close(writer)
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
        gc.collect()  # finalize the reset streams now, not inside a later compile()


# --- the run --------------------------------------------------------------------------

#: Seed 7 plans one round of every fault kind within 36 s.
SHORT_RUN = ChaosOptions(
    seed=7,
    seconds=36.0,
    direct_clients=1,
    nginx_clients=3,
    js_clients=1,
    rate=10.0,
    gap=(0.5, 1.5),
    tail=2.0,
    settle=30.0,
)


def test_the_short_run_plans_every_fault_kind() -> None:
    plan = plan_faults(SHORT_RUN.seed, SHORT_RUN.seconds, SHORT_RUN.nodes, gap=SHORT_RUN.gap)
    assert {fault.kind for fault in plan} == set(FAULT_KINDS)


@pytest.mark.chaos
@pytest.mark.timeout(240)
async def test_chaos_run() -> None:
    report = await run_chaos(SHORT_RUN)
    summary = render(report)
    print(summary)
    assert {done.fault.kind for done in report.faults} == set(FAULT_KINDS), summary
    total = report.total
    assert total.owed > 1000, summary  # the run really delivered
    assert (total.lost, total.duplicated, total.out_of_order) == (0, 0, 0), summary
    assert not total.anomalies, summary
    assert report.caught_up, summary
    assert not report.dead_clients, summary
    assert not report.ack_problems, summary
    assert report.logs.tracebacks == 0, summary
    assert report.ok, summary
