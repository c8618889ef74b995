"""Every case of the audit, in report order.

Rule: one list, built from the group modules; ids are unique (checked here,
at build time, so that a duplicate never reaches a report).
"""

from __future__ import annotations

from hubbub.tools.audit import closing, fragments, framing, limits, utf8
from hubbub.tools.audit.case import Case, CaseContext


async def _nothing(ctx: CaseContext) -> None:
    """The preflight's placeholder case: it runs nothing."""


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
    ]
    cases.sort(key=lambda c: tuple(int(part) for part in c.id.split(".")))
    ids = [c.id for c in cases]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise ValueError(f"duplicate audit case ids: {sorted(duplicates)}")
    return cases
