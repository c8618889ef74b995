"""The chaos run's summary as text: setup, faults, publications, every client, totals, logs.

Rule: every number printed comes from the report; the last line is the verdict
(PASS or FAIL with the reasons), so a script's exit status and its last line agree.
"""

from __future__ import annotations

from collections import Counter

from tests.chaos_accounting import Account
from tests.chaos_run import ChaosReport


def render(report: ChaosReport) -> str:
    options = report.options
    lines: list[str] = []
    out = lines.append
    server_side = sum(1 for r in report.clients if r.client.server_side)
    js = sum(1 for r in report.clients if r.client.sdk == "js")
    out(
        f"chaos run: seed {options.seed}, {options.streams} fault stream(s) for "
        f"{options.seconds:g} s (whole run {report.seconds:.0f} s), {options.nodes} nodes "
        f"(redis engine) on one redis-server, {'nginx, ' if options.nginx else ''}"
        f"{len(report.clients) - js} centrifuge-python clients ({server_side} with "
        f"server-side subscriptions) and {js} centrifuge-js clients, "
        f"{options.channels} channels at {options.rate:g} publications/s each"
    )
    kinds = Counter(done.fault.kind for done in report.faults)
    out(
        f"faults injected: {len(report.faults)} ("
        + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        + f"; {len(report.plan)} planned)"
    )
    for done in report.faults:
        late = done.started - done.fault.at
        note = f"  [{done.note.strip('; ')}]" if done.note else ""
        out(
            f"  {done.fault.describe(report.names)}  (started {late:+.1f}s, "
            f"took {done.took:.1f}s){note}"
        )
    attempted = sum(p.attempted for p in report.publishers)
    acked = sum(len(p.acks) for p in report.publishers)
    failures: Counter[str] = Counter()
    for publisher in report.publishers:
        failures.update(publisher.failures)
    why = ", ".join(f"{reason} {count}" for reason, count in failures.most_common())
    out(
        f"publications: {attempted} attempted, {acked} acknowledged, "
        f"{attempted - acked} not acknowledged ({why or 'none'})"
    )
    epochs = {ack.epoch for p in report.publishers for ack in p.acks}
    out(f"epochs seen by the publisher: {len(epochs)}")
    out("")
    out(
        f"{'client':<6} {'route':<24} {'owed':>6} {'recv':>6} {'lost':>5} {'dup':>4} "
        f"{'ooo':>4} {'told':>5} {'win':>4} {'recov':>5} {'conn':>5}  reconnect codes"
    )
    for result in report.clients:
        client = result.client
        total = result.total
        codes = dict(sorted((client.connecting + client.unsubscribed).items()))
        codes.pop(0, None)  # the first connect / subscribe call
        out(
            f"{client.name:<6} {result.route:<24} {total.owed:>6} {total.received:>6} "
            f"{total.lost:>5} {total.duplicated:>4} {total.out_of_order:>4} {total.told:>5} "
            f"{total.told_windows:>4} {total.recovered:>5} {client.connects:>5}  {codes}"
        )
        for channel, one in result.accounts.items():
            if not one.clean:
                out(f"       {channel}: {_problems(one)}")
        if client.final:
            out(f"       stopped reconnecting after disconnect codes {client.final}")
    total = report.total
    out("")
    out(
        f"total: lost {total.lost}, duplicated {total.duplicated}, out of order "
        f"{total.out_of_order} (of {total.owed} owed deliveries, {total.received} received); "
        f"told: {total.told} publications in {total.told_windows} windows "
        f"({total.told_same_epoch} of them in an unchanged epoch); "
        f"recovered {total.recovered} times"
    )
    scan = report.logs
    per_node = ", ".join(
        f"{name}: {c['traceback']}/{c['error']}/{c['warning']}" for name, c in scan.per_node.items()
    )
    out(
        f"node logs: {scan.tracebacks} tracebacks, {scan.errors} error lines, "
        f"{scan.warnings} warning lines (traceback/error/warning per node: {per_node})"
    )
    for kind, count in scan.kinds.most_common(12):
        out(f"  {count} x {kind}")
    for example in list(scan.examples.values())[:3]:
        out("first of its kind, in full:\n" + example)
    if not report.caught_up:
        out("not every client received the last acknowledged publication before the deadline")
    for problem in report.ack_problems:
        out(f"publisher saw: {problem}")
    out(_verdict(report, total))
    return "\n".join(lines)


def _problems(account: Account) -> str:
    parts = []
    if account.lost:
        parts.append(f"lost {account.lost} (first: {account.lost_numbers})")
    if account.duplicated:
        parts.append(f"duplicated {account.duplicated}")
    if account.out_of_order:
        parts.append(f"out of order {account.out_of_order}")
    parts.extend(account.anomalies[:3])
    return "; ".join(parts)


def _verdict(report: ChaosReport, total: Account) -> str:
    reasons = []
    if total.lost or total.duplicated or total.out_of_order:
        reasons.append("publications lost, duplicated or reordered without excuse")
    if total.anomalies:
        reasons.append(f"{len(total.anomalies)} protocol anomalies")
    if report.logs.tracebacks:
        reasons.append("tracebacks in node logs")
    if report.dead_clients:
        reasons.append(f"clients stopped reconnecting: {report.dead_clients}")
    if report.ack_problems:
        reasons.append("the API's acknowledgements are not a stream")
    return "result: PASS" if not reasons else "result: FAIL: " + "; ".join(reasons)
