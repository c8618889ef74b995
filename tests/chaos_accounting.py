"""What a subscriber should have received, and what it did: lost, duplicated, out of order, told.

Pure functions over two records, so the rules are tested without a cluster:

* the publisher's acknowledgements of one channel, in the order it got them
  (``Ack``: the sequence number it published and the stream position the API
  answered);
* one subscriber's events on that channel, in the order its SDK reported them
  (``Subscribed`` with the position its subscribe result carried, and
  ``Received`` with the sequence number and offset of each publication).

Rule 1: a subscription is owed every acknowledged publication after the
position of its first subscribe result, exactly once and in stream order.
Rule 2: the only excuse is being told: a resubscribe result that was recovering
and says ``recovered: false`` (or moves to another epoch) ends the client's
span at its last position and starts a new one at the result's position;
acknowledged publications between the two that it did not receive count as
*told*, per window. Anything else missing is *lost*.
Rule 3: duplicates (a sequence number twice) and publications delivered at or
behind the client's position are never excused.
Rule 4: stream positions of different epochs are ordered by when the epoch was
first seen (by the publisher or any subscriber): a Redis restart makes a new
epoch, and nothing of an older one is published after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: An open end: later than every stream position.
OPEN = (1 << 62, 0)

Key = tuple[int, int]  # (epoch rank, offset)


@dataclass(frozen=True, slots=True)
class Ack:
    """The API acknowledged publication ``n`` at ``epoch``/``offset`` (at time ``at``)."""

    n: int
    epoch: str
    offset: int
    at: float


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscribe result: the SDK's on_subscribed (client- or server-side)."""

    was_recovering: bool
    recovered: bool
    epoch: str
    offset: int
    at: float


@dataclass(frozen=True, slots=True)
class Received:
    """A publication the SDK handed to the application."""

    n: int
    offset: int


Event = Subscribed | Received


@dataclass(slots=True)
class Account:
    """One subscription's account against one channel's acknowledgements."""

    owed: int = 0  # acknowledged publications it had to receive (not excused)
    received: int = 0  # distinct sequence numbers received
    lost: int = 0  # owed, never received, never told
    duplicated: int = 0  # each extra copy of a sequence number
    out_of_order: int = 0  # delivered at or behind the client's position
    told: int = 0  # missed, in a window the client was told about
    told_windows: int = 0  # resubscribes that said it could not recover
    told_same_epoch: int = 0  # of which the stream's epoch had not changed (history limits)
    recovered: int = 0  # resubscribes that recovered
    anomalies: list[str] = field(default_factory=list)  # what breaks the protocol's rules
    lost_numbers: list[int] = field(default_factory=list)  # the first few, for the report

    @property
    def clean(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order or self.anomalies)

    def add(self, other: Account) -> None:
        self.owed += other.owed
        self.received += other.received
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order
        self.told += other.told
        self.told_windows += other.told_windows
        self.told_same_epoch += other.told_same_epoch
        self.recovered += other.recovered
        self.anomalies.extend(other.anomalies)
        self.lost_numbers.extend(other.lost_numbers[: max(0, 10 - len(self.lost_numbers))])


def epoch_ranks(acks: Iterable[Ack], events: Iterable[Iterable[Event]]) -> dict[str, int]:
    """Each epoch's rank by when it was first seen (Rule 4)."""
    first: dict[str, float] = {}
    for ack in acks:
        first.setdefault(ack.epoch, ack.at)
    for log in events:
        for event in log:
            if (
                isinstance(event, Subscribed)
                and event.epoch
                and event.at < first.get(event.epoch, float("inf"))
            ):
                first[event.epoch] = event.at
    return {epoch: rank for rank, epoch in enumerate(sorted(first, key=first.__getitem__))}


def check_acks(acks: Sequence[Ack], ranks: dict[str, int]) -> list[str]:
    """The publisher's view must itself be a stream: offsets grow within an epoch,
    and an epoch, once left, never comes back."""
    problems: list[str] = []
    previous: Ack | None = None
    for ack in acks:
        if previous is not None:
            if ack.epoch == previous.epoch and ack.offset <= previous.offset:
                problems.append(
                    f"ack of n={ack.n} at offset {ack.offset} after n={previous.n} at "
                    f"{previous.offset} in epoch {ack.epoch}"
                )
            elif ranks[ack.epoch] < ranks[previous.epoch]:
                problems.append(f"ack of n={ack.n} in epoch {ack.epoch} after a newer epoch")
        previous = ack
    return problems


def account(acks: Sequence[Ack], log: Sequence[Event], ranks: dict[str, int]) -> Account:
    """One subscription's account (Rules 1-3); ``ranks`` from ``epoch_ranks``."""
    result = Account()
    unknown = len(ranks)

    def key(epoch: str, offset: int) -> Key:
        return (ranks.get(epoch, unknown), offset)

    spans: list[tuple[Key, Key]] = []  # (after, up to and including): owed
    told: list[tuple[Key, Key]] = []  # (after, up to and including): excused
    start: Key | None = None  # where the current span began
    position: Key | None = None  # the client's position: its last publication or result
    epoch = ""
    seen: set[int] = set()
    for event in log:
        if isinstance(event, Subscribed):
            here = key(event.epoch, event.offset)
            if start is None or position is None:
                start = position = here
            elif event.was_recovering and event.recovered and event.epoch == epoch:
                result.recovered += 1
            elif event.was_recovering:  # told: recovered false, or another epoch
                if event.recovered:
                    result.anomalies.append(f"recovered into another epoch: {event}")
                elif event.epoch == epoch:
                    result.told_same_epoch += 1
                spans.append((start, position))
                told.append((position, here))
                start = position = here
            else:
                # A fresh subscribe after having had a position: nobody told the
                # client its position was gone, so what it missed meanwhile is lost.
                result.anomalies.append(f"resubscribed without recovering at {event}")
                spans.append((start, here))
                start = position = here
            epoch = event.epoch
            continue
        if event.n in seen:
            result.duplicated += 1
            continue
        seen.add(event.n)
        here = key(epoch, event.offset)
        if position is None:
            result.anomalies.append(f"publication n={event.n} before any subscribe result")
        elif here <= position:
            result.out_of_order += 1
        else:
            position = here
    if start is not None:
        spans.append((start, OPEN))
    result.told_windows = len(told)
    result.received = len(seen)
    for ack in acks:
        here = key(ack.epoch, ack.offset)
        if start is None or here <= spans[0][0]:
            continue  # published before the subscription's first position
        in_span = any(after < here <= upto for after, upto in spans)
        if not in_span and any(after < here <= upto for after, upto in told):
            if ack.n not in seen:
                result.told += 1
            continue
        result.owed += 1
        if ack.n not in seen:
            result.lost += 1
            if len(result.lost_numbers) < 10:
                result.lost_numbers.append(ack.n)
    return result
