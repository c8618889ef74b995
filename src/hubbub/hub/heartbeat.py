"""Deadlines of a session: connect in time, answer pings, refresh expiring tokens.

Rule 1: every deadline is a timer of the hub's one wheel, held in a slot of
its session or subscription (``heartbeat_timer``: the stale check, then
ping -> pong check -> ping; ``expiry_timer``; ``Subscription.expiry``). A new
deadline replaces the slot's old one, and ``stop`` cancels them all when the
session closes: a closed session is never kept alive by a timer.
Rule 2: a check runs on the loop, never awaits, and re-reads what it checks
(the token may have been refreshed, the pong may have come).
Rule 3: each ping also refreshes the session's presence entries, which
expire otherwise (``lifecycle.PRESENCE_TTL``).
Rule 4 (issue 12): with a refresh decider (refresh proxy or ``on_refresh``;
sub_refresh for a subscription's namespace) the expiry timer, in the same
slot, asks the decider when the expiry comes (``hub.decisions``) instead of
closing after the grace period; ``due`` moves that ask (a retry).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hubbub.codes import Disconnect, Unsubscribe
from hubbub.hub.timers import Timer

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session, Subscription


class Heartbeat:
    """The deadlines of a hub's sessions."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.timers = hub.timers
        self.config = hub.config.client
        # Bound once, shared by every session's timer (Rule 1 of timers.py: no closure
        # per connection; an idle connection's ping deadline is one Timer).
        self._ping_for = self._ping
        self._pong_due_for = self._pong_due
        self._stale_for = self._close_if_stale

    # --- before connect ------------------------------------------------------------------

    def watch_stale(self, session: Session) -> None:
        """Close with 3502 unless connect succeeds within ``client.stale_close_delay``."""
        delay = self.config.stale_close_delay
        _set_heartbeat(session, self.timers.call_later_for(delay, self._stale_for, session))

    def _close_if_stale(self, session: Session) -> None:
        if not session.closed and not session.connected:
            session.close(Disconnect.STALE)

    # --- connected -------------------------------------------------------------------------

    def start(self, session: Session) -> None:
        """The session is accepted: pings begin (instead of the stale check), expiry is watched."""
        interval = self.config.ping_interval
        if interval > 0:
            # The first ping comes at a random point of the first interval, so that
            # a burst of connections does not turn into a burst of pings forever.
            self._next_ping(session, random.uniform(interval / 2, interval))
        else:
            _set_heartbeat(session, None)
        self.watch_expiry(session)

    def stop(self, session: Session) -> None:
        """Cancel every deadline of ``session`` (closed, or its connect undone)."""
        _set_heartbeat(session, None)
        _set_expiry(session, None)

    def _next_ping(self, session: Session, delay: float) -> None:
        _set_heartbeat(session, self.timers.call_later_for(delay, self._ping_for, session))

    def _ping(self, session: Session) -> None:
        if session.closed:
            return
        if session.unidirectional:
            # A unidirectional client cannot answer: the ping only keeps its stream alive.
            session.ping()
            self._next_ping(session, self.config.ping_interval)
            self.hub.lifecycle.refresh_presence(session)
            return
        if not session.protocol.ping():
            session.close(Disconnect.NO_PONG)
            return
        session.ping()
        due = self.timers.call_later_for(self.config.pong_timeout, self._pong_due_for, session)
        _set_heartbeat(session, due)
        self.hub.lifecycle.refresh_presence(session)

    def _pong_due(self, session: Session) -> None:
        if session.closed:
            return
        if session.protocol.ping_outstanding:
            session.close(Disconnect.NO_PONG)
            return
        self._next_ping(session, max(self.config.ping_interval - self.config.pong_timeout, 0.0))

    # --- token expiry ----------------------------------------------------------------------

    def watch_expiry(self, session: Session, *, due: float = 0.0) -> None:
        """Close with 3005 if the connection is still expired after the grace period."""
        expire_at = session.expire_at
        if not expire_at:
            _set_expiry(session, None)
            return
        decisions = self.hub.decisions
        if decisions.server_refresh:  # Rule 4: the decider is asked at the expiry
            delay = max((due or expire_at) - time.time(), 0.0)
            ask = self.timers.call_later(delay, lambda: decisions.refresh_due(session, expire_at))
            _set_expiry(session, ask)
            return

        def check() -> None:
            if not session.closed and session.expire_at == expire_at:
                session.close(Disconnect.EXPIRED)  # not refreshed in time

        _set_expiry(session, self._after_grace(expire_at, check))

    def watch_subscription(self, subscription: Subscription, *, due: float = 0.0) -> None:
        """Unsubscribe with 2501 (the SDK resubscribes with a fresh token) if the
        subscription token is still expired after the grace period."""
        if subscription.expiry is not None:
            subscription.expiry.cancel()
            subscription.expiry = None
        expire_at = subscription.expire_at
        if not expire_at:
            return
        decisions = self.hub.decisions
        if decisions.server_sub_refresh(subscription.channel):  # Rule 4
            delay = max((due or expire_at) - time.time(), 0.0)
            subscription.expiry = self.timers.call_later(
                delay, lambda: decisions.sub_refresh_due(subscription, expire_at)
            )
            return

        def check() -> None:
            subscription.expiry = None
            if subscription.expire_at == expire_at:
                self.hub.lifecycle.end(subscription, push=Unsubscribe.EXPIRED)

        subscription.expiry = self._after_grace(expire_at, check)

    def _after_grace(self, expire_at: float, check: Callable[[], None]) -> Timer:
        """Run ``check`` once ``expire_at`` (unix time) plus ``client.expired_close_delay``
        has passed: the grace a client has to refresh an expiring token."""
        delay = expire_at - time.time() + self.config.expired_close_delay
        return self.timers.call_later(max(delay, 0.0), check)


def _set_heartbeat(session: Session, timer: Timer | None) -> None:
    """Put ``timer`` in the session's heartbeat slot, cancelling the one it replaces."""
    if session.heartbeat_timer is not None:
        session.heartbeat_timer.cancel()
    session.heartbeat_timer = timer


def _set_expiry(session: Session, timer: Timer | None) -> None:
    """Put ``timer`` in the session's expiry slot, cancelling the one it replaces."""
    if session.expiry_timer is not None:
        session.expiry_timer.cancel()
    session.expiry_timer = timer
