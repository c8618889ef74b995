"""Verdicts and case results: what the audit concluded about each case, and the totals.

Rule: a verdict says how the server behaved against RFC 6455/7692 (or the
Centrifugo client protocol): FAILED only when a MUST is broken; NON-STRICT
when the server chose something the RFC discourages but allows (a close code
other than the one it SHOULD send, failing later than it could);
INFORMATIONAL when there is nothing to judge (a size limit of the server's own
choosing, a security finding that breaks no rule); UNIMPLEMENTED when the
server does not offer an optional feature (permessage-deflate). A case has two
verdicts, as in Autobahn: ``behavior`` (what it did with the frames) and
``close`` (how the connection ended); its verdict is the worse of the two.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
UNIMPLEMENTED = "UNIMPLEMENTED"
FAILED = "FAILED"

#: From best to worst: the worse of two verdicts is the one further down this list.
ORDER = (OK, INFORMATIONAL, NON_STRICT, UNIMPLEMENTED, FAILED)
RANK = {verdict: rank for rank, verdict in enumerate(ORDER)}

#: What each verdict means, for the reports' legend.
LEGEND = {
    OK: "the server did what the RFC asks",
    NON_STRICT: "allowed by the RFC, but not what it recommends (a SHOULD was not followed)",
    INFORMATIONAL: "nothing to judge: a choice the RFC leaves to the server, reported as a fact",
    UNIMPLEMENTED: "an optional feature the server does not offer",
    FAILED: "the server broke a MUST of the RFC (or of the client protocol)",
}


def worse(a: str, b: str) -> str:
    """The worse of two verdicts."""
    return a if RANK[a] >= RANK[b] else b


@dataclass
class WireEntry:
    """One line of a case's wire log: milliseconds since the case began, direction, text."""

    ms: float
    direction: str  # ">" sent, "<" received, "!" an event (close, EOF, violation)
    text: str


@dataclass
class CaseResult:
    """Everything recorded for one case."""

    id: str
    group: str
    description: str
    expectation: str
    behavior: str = OK
    close: str = OK
    observations: list[str] = field(default_factory=list)
    remote_close_code: int | None = None
    remote_close_reason: str = ""
    duration_ms: float = 0.0
    wire: list[WireEntry] = field(default_factory=list)
    wire_omitted: int = 0

    @property
    def verdict(self) -> str:
        return worse(self.behavior, self.close)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "group": self.group,
            "description": self.description,
            "expectation": self.expectation,
            "verdict": self.verdict,
            "behavior": self.behavior,
            "close": self.close,
            "observation": self.observations,
            "remote_close_code": self.remote_close_code,
            "remote_close_reason": self.remote_close_reason,
            "duration_ms": round(self.duration_ms, 1),
            "wire": [[round(e.ms, 1), e.direction, e.text] for e in self.wire],
            "wire_omitted": self.wire_omitted,
        }


def summarise(results: list[CaseResult]) -> dict[str, Any]:
    """Counts by verdict, overall and per group (groups in the order first seen)."""
    total = Counter(r.verdict for r in results)
    groups: dict[str, Counter[str]] = {}
    for result in results:
        groups.setdefault(result.group, Counter())[result.verdict] += 1
    return {
        "cases": len(results),
        "verdicts": {v: total.get(v, 0) for v in ORDER},
        "groups": {g: {v: c.get(v, 0) for v in ORDER} for g, c in groups.items()},
        "failed": [r.id for r in results if r.verdict == FAILED],
        "passed": total.get(FAILED, 0) == 0,
    }
