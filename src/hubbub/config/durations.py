"""Go-style durations ("1m30s", "500ms") as seconds, and config values in messages.

Rule: a duration is a number of seconds or a Go duration string; anything else
is a ConfigError naming the key.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

from hubbub.errors import ConfigError

__all__ = ["parse_duration", "show"]


def show(value: object) -> str:
    """A configuration value as error messages quote it."""
    return json.dumps(value, default=str, ensure_ascii=False)


_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),  # Go accepts both micro signs
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_RE = re.compile(rf"[-+]?(?:{_DURATION_PART.pattern})+")


def parse_duration(value: str | int | float, *, key: str = "duration") -> float:
    """Seconds from a number of seconds or a Go duration ("1m30s", "500ms", "0")."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(key, f'expected a duration like "30s" or seconds, got {show(value)}')
    if not isinstance(value, str):
        if not math.isfinite(value):
            raise ConfigError(key, f"expected a finite duration, got {show(value)}")
        return float(value)
    text = value.strip()
    if re.fullmatch(r"[-+]?0", text):
        return 0.0
    if not _DURATION_RE.fullmatch(text):
        raise ConfigError(
            key, f'invalid duration {show(value)}: use seconds or units like "1m30s", "500ms"'
        )
    total = sum(
        (Decimal(num) * _DURATION_UNITS[unit] for num, unit in _DURATION_PART.findall(text)),
        Decimal(0),
    )
    return float(-total if text.startswith("-") else total)
