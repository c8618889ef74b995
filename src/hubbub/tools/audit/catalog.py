"""Every case of the audit, in report order.

Rule: one list, built from the group modules; ids are unique (checked here,
at build time, so that a duplicate never reaches a report).
"""

from __future__ import annotations

from hubbub.tools.audit import (
    centrifugo,
    closing,
    compression,
    fragments,
    framing,
    limits,
    security,
    utf8,
)
from hubbub.tools.audit.case import Case, CaseContext


async def _nothing(ctx: CaseContext) -> None:
    """The preflight's placeholder case: it runs nothing."""


#: Group titles, by the first part of a case id.
GROUPS = {
    "1": "Framing",
    "2": "Pings and pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling and codes",
    "9": "Limits and performance",
    "10": "Automatic fragmentation",
    "12": "permessage-deflate: payloads",
    "13": "permessage-deflate: parameter offers",
    "C1": "Centrifugo: connect",
    "C2": "Centrifugo: subscribe and publish",
    "C3": "Centrifugo: history and recovery",
    "C4": "Centrifugo: presence",
    "C5": "Centrifugo: ping and pong",
    "C6": "Centrifugo: errors and disconnects",
    "S1": "Security: origin (cross-site WebSocket hijacking)",
    "S2": "Security: oversize frames and messages",
    "S3": "Security: compression bombs",
    "S4": "Security: slow handshakes",
    "S5": "Security: unmasked frames",
    "S6": "Security: idle connection floods",
}


def order(case: Case) -> tuple[tuple[int, int, str], ...]:
    """Numeric groups first, in number order; then lettered ones (C1, S1...)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, int(part[1:] or 0), part[:1])
        for part in case.id.split(".")
    )


PREFLIGHT = Case("0.0", "preflight", "the handshake and connect succeed", _nothing)


def all_cases() -> list[Case]:
    cases = [
        *framing.group1(),
        *framing.group2(),
        *framing.group3(),
        *framing.group4(),
        *fragments.group5(),
        *utf8.group6(),
        *closing.group7(),
        *limits.group9(),
        *limits.group10(),
        *compression.group12(),
        *compression.group13(),
        *centrifugo.cases(),
        *security.cases(),
    ]
    cases.sort(key=order)
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate audit case ids: {sorted(duplicates)}")
    return cases
