"""Publication payloads for ``hubbub bench --text-payload``: text that compresses as chat does.

Rule: deterministic per publisher (seeded), built once before a run; a
benchmark of compression is only as honest as its payload, so the default
(one repeated letter, which compresses about 60 to 1) is not used for it.
"""

from __future__ import annotations

import random

#: Common words and chat vocabulary; ids and numbers are mixed in by ``text_pads``.
WORDS = (
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "he",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "have",
    "from",
    "or",
    "one",
    "had",
    "by",
    "word",
    "but",
    "not",
    "what",
    "all",
    "were",
    "we",
    "when",
    "your",
    "can",
    "said",
    "there",
    "use",
    "an",
    "each",
    "which",
    "she",
    "do",
    "how",
    "their",
    "if",
    "will",
    "up",
    "other",
    "about",
    "out",
    "many",
    "then",
    "them",
    "these",
    "so",
    "some",
    "her",
    "would",
    "make",
    "like",
    "him",
    "into",
    "time",
    "has",
    "look",
    "two",
    "more",
    "write",
    "go",
    "see",
    "number",
    "no",
    "way",
    "could",
    "people",
    "my",
    "than",
    "first",
    "water",
    "been",
    "call",
    "who",
    "oil",
    "its",
    "now",
    "find",
    "long",
    "down",
    "day",
    "did",
    "get",
    "come",
    "made",
    "may",
    "part",
    "order",
    "ready",
    "status",
    "update",
    "price",
    "user",
    "room",
    "message",
    "online",
    "offline",
    "typing",
    "joined",
    "left",
)


def text_pads(size: int, seed: int, count: int = 64) -> list[bytes]:
    """``count`` different pads of ``size`` bytes: words with ids and numbers among them."""
    rng = random.Random(seed)
    pads = []
    for _ in range(count):
        parts: list[str] = []
        length = 0
        while length < size:
            roll = rng.random()
            if roll < 0.1:
                part = f"{rng.getrandbits(32):08x}"
            elif roll < 0.2:
                part = str(rng.randint(0, 99999))
            else:
                part = rng.choice(WORDS)
            parts.append(part)
            length += len(part) + 1
        pads.append(" ".join(parts).encode()[:size])
    return pads
