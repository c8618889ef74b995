"""A log-bucketed latency histogram (HDR-style, 7 significant bits).

Rule: recording is O(1) and allocation-free; values are integer microseconds;
every bucket is within 1/64 (1.6 %) of the values it holds, the maximum is kept
exactly. Histograms from several processes merge by adding bucket counts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SUB_BITS = 7
SUB = 1 << SUB_BITS  # 128 exact values below this
HALF = SUB >> 1  # 64 buckets per power of two above it
BUCKETS = HALF * 60  # enough for 2**58 us


def bucket_of(value: int) -> int:
    """The bucket index of a non-negative integer value."""
    if value < SUB:
        return value if value > 0 else 0
    shift = value.bit_length() - SUB_BITS
    return (shift + 1) * HALF + (value >> shift) - HALF


def bucket_range(index: int) -> tuple[int, int]:
    """The smallest and largest value that fall into bucket ``index``."""
    if index < SUB:
        return index, index
    shift = index // HALF - 1
    mantissa = index % HALF + HALF
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """Counts of microsecond values in log buckets; percentiles, merge, (de)serialise."""

    __slots__ = ("counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = 0
        self.max = 0
        self.min = 0

    def reset(self) -> None:
        self.counts = [0] * BUCKETS
        self.total = self.max = self.min = 0

    def record(self, value: int) -> None:
        if value < 0:
            value = 0
        if value < SUB:
            index = value
        else:
            shift = value.bit_length() - SUB_BITS
            index = (shift + 1) * HALF + (value >> shift) - HALF
        self.counts[index] += 1
        if self.total == 0 or value < self.min:
            self.min = value
        self.total += 1
        if value > self.max:
            self.max = value

    def record_many(self, values: Iterable[int]) -> None:
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        if other.total == 0:
            return
        counts = self.counts
        for index, count in enumerate(other.counts):
            if count:
                counts[index] += count
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, percent: float) -> int:
        """The value at ``percent`` (0-100): the bucket's midpoint, capped at the exact max."""
        if self.total == 0:
            return 0
        if percent >= 100:
            return self.max
        rank = max(1, math.ceil(self.total * percent / 100))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                low, high = bucket_range(index)
                return min((low + high) // 2, self.max)
        return self.max  # pragma: no cover - the counts always reach the total

    def summary(self) -> dict[str, int]:
        """p50, p90, p99, p99.9, max and count, in microseconds."""
        return {
            "count": self.total,
            "min_us": self.min,
            "p50_us": self.percentile(50),
            "p90_us": self.percentile(90),
            "p99_us": self.percentile(99),
            "p99_9_us": self.percentile(99.9),
            "max_us": self.max,
        }

    def to_dict(self) -> dict[str, object]:
        """Sparse buckets ({index: count}) plus min and max: JSON- and pickle-friendly."""
        return {
            "buckets": {str(i): c for i, c in enumerate(self.counts) if c},
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Histogram:
        histogram = cls()
        buckets = data.get("buckets", {})
        assert isinstance(buckets, dict)
        for key, count in buckets.items():
            histogram.counts[int(key)] += int(count)
            histogram.total += int(count)
        histogram.min = int(str(data.get("min", 0)))
        histogram.max = int(str(data.get("max", 0)))
        return histogram

    def distribution(self) -> list[tuple[int, int]]:
        """(bucket midpoint us, count) for every non-empty bucket, ascending."""
        points = []
        for index, count in enumerate(self.counts):
            if count:
                low, high = bucket_range(index)
                points.append(((low + high) // 2, count))
        return points
