"""Run an audit: check the target, pick the cases, run them (bounded, some in parallel).

Rule: every case runs on fresh connections under a hard time bound, and its
connections are dropped when it ends, whatever happened; an exception in a
case is an observation of that case, never the end of the audit. Cases marked
``serial`` (timing, large messages) run one at a time after the others, so that
they do not measure each other. Only a loopback host is audited unless the
user passes ``--allow-remote`` (the security checks open many connections).
"""

from __future__ import annotations

import asyncio
import fnmatch
import sys
import time
from collections.abc import Callable

from hubbub.tools.audit import catalog
from hubbub.tools.audit.case import CENTRIFUGO, AuditOptions, Case, CaseContext, Probe
from hubbub.tools.audit.connection import AuditConnection, AuditTarget, HandshakeError, WireLog
from hubbub.tools.audit.verdicts import FAILED, CaseResult

Progress = Callable[[CaseResult, int, int], None]


class AuditError(Exception):
    """The audit cannot run at all (bad target, no handshake, connect refused)."""


def select(cases: list[Case], mode: str, pattern: str) -> list[Case]:
    """The cases of ``mode`` whose id matches ``pattern``: comma-separated ids, id
    prefixes (``6`` or ``6.4`` take a whole group; ``C`` or ``S`` every Centrifugo or
    security group) or shell patterns (``7.*.1``)."""
    parts = [p.strip() for p in pattern.split(",") if p.strip()] or ["*"]

    def wanted(case_id: str) -> bool:
        for part in parts:
            if any(c in part for c in "*?["):
                if fnmatch.fnmatchcase(case_id, part):
                    return True
            elif case_id == part or case_id.startswith(part + "."):
                return True
            if part.isalpha() and case_id.startswith(part):  # "C": every C1, C2... group
                return True
        return False

    return [c for c in cases if mode in c.modes and wanted(c.id)]


async def preflight(options: AuditOptions, target: AuditTarget) -> None:
    """One plain connection (and Centrifugo ``connect``) before any case: a target that
    cannot be talked to is a usage error, not hundreds of FAILED cases."""
    wire = WireLog()
    try:
        conn = await AuditConnection.open(target, wire, origin=target.origin)
    except HandshakeError as exc:
        raise AuditError(f"{target.url}: WebSocket handshake failed: {exc.problem}") from None
    except OSError as exc:
        raise AuditError(f"{target.url}: cannot connect: {exc.strerror or exc}") from None
    try:
        if options.mode == CENTRIFUGO:
            ctx = _context(catalog.PREFLIGHT, options, target, wire)
            ctx.conn = conn
            try:
                await ctx.protocol_connect()
            except (ConnectionError, ValueError) as exc:
                hint = "" if options.token else " (a server that needs a token: pass --token)"
                raise AuditError(f"{target.url}: {exc}{hint}") from None
    finally:
        await conn.abort()


def _context(case: Case, options: AuditOptions, target: AuditTarget, wire: WireLog) -> CaseContext:
    result = CaseResult(case.id, case.group, case.description, case.expectation)
    return CaseContext(case, options, target, wire, result, Probe(options.mode))


async def run_case(case: Case, options: AuditOptions, target: AuditTarget) -> CaseResult:
    """Run one case under its time bound; always returns its result."""
    wire = WireLog()
    ctx = _context(case, options, target, wire)
    started = time.monotonic()
    try:
        async with asyncio.timeout(case.limit):
            if case.connect:
                ctx.conn = await AuditConnection.open(
                    target, wire, origin=target.origin, extensions=case.extensions
                )
                if options.mode == CENTRIFUGO:
                    await ctx.protocol_connect()
            await case.run(ctx)
    except HandshakeError as exc:
        ctx.judge(FAILED, f"the opening handshake failed: {exc.problem}")
    except TimeoutError:
        ctx.judge(FAILED, f"the case did not finish within {case.limit:g} s")
    except (OSError, ConnectionError) as exc:
        ctx.judge(FAILED, f"connection error: {type(exc).__name__}: {exc}")
    except Exception as exc:  # what a server sent broke an assumption of the case
        ctx.judge(FAILED, f"the case could not go on: {type(exc).__name__}: {exc}")
    finally:
        for conn in [ctx.conn, *ctx.others]:
            if conn is not None:
                await conn.abort()
    ctx.result.duration_ms = (time.monotonic() - started) * 1000
    ctx.result.wire = wire.entries()
    ctx.result.wire_omitted = wire.omitted
    return ctx.result


async def run_audit(options: AuditOptions, progress: Progress | None = None) -> list[CaseResult]:
    """Run every selected case; results in catalog order."""
    try:
        target = AuditTarget(options.url, ca=options.ca)
    except ValueError as exc:
        raise AuditError(str(exc)) from None
    if not target.loopback and not options.allow_remote:
        raise AuditError(
            f"{target.host} is not a loopback address: the audit opens many connections and "
            "malformed frames; pass --allow-remote to audit a host you run"
        )
    cases = select(catalog.all_cases(), options.mode, options.cases)
    if not cases:
        raise AuditError(f"no {options.mode} case matches {options.cases!r}")
    await preflight(options, target)
    results: dict[str, CaseResult] = {}
    semaphore = asyncio.Semaphore(max(1, options.concurrency))
    done = 0

    async def one(case: Case) -> None:
        nonlocal done
        async with semaphore:
            result = await run_case(case, options, target)
        results[case.id] = result
        done += 1
        if progress is not None:
            progress(result, done, len(cases))

    parallel = [c for c in cases if not c.serial]
    await asyncio.gather(*(one(c) for c in parallel))
    for case in cases:
        if case.serial:
            await one(case)
    return [results[c.id] for c in cases]


def print_progress(result: CaseResult, done: int, total: int) -> None:
    """One line per case that is not OK, and a counter, on stderr."""
    if result.verdict != "OK":
        why = next((o for o in result.observations if o.startswith(result.verdict)), "")
        why = why or (result.observations[-1] if result.observations else "")
        print(f"  {result.id:<10} {why}", file=sys.stderr, flush=True)
    if done % 50 == 0 or done == total:
        print(f"[audit] {done}/{total} cases", file=sys.stderr, flush=True)
