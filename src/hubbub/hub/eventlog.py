"""Log lines about connections: one line per event, with who and from where.

Rule: each event is one record of logger ``hubbub.client`` whose structured
fields (client id, user, address, code, ...) ride in ``record.fields``; the
formatters of ``hubbub.server.logs`` print them as ``key=value`` or as JSON
members. Levels: a connection accepted or gone on the client's initiative is
DEBUG; one the server closed (a misbehaving or slow client, an API
disconnect) is INFO, with the reason, once per connection; each command is
TRACE (below DEBUG, as in Centrifugo). Nothing is formatted unless the level
is enabled. (Engine failures during an outage: ``hub/outages.py``.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from hubbub.codes import Disconnect, Error
from hubbub.hub.observer import Observer

if TYPE_CHECKING:
    from hubbub.codes import DisconnectInfo
    from hubbub.hub.session import Session
    from hubbub.protocol import Received

#: Below DEBUG: every command (``log.level: trace``).
TRACE = 5

log = logging.getLogger("hubbub.client")

#: Error codes below this are reply errors; from it on, disconnect codes.
DISCONNECT_CODES = 3000
TOO_MANY_REQUESTS = Error.TOO_MANY_REQUESTS.code
#: Server closes that are routine, not news: shutdown sends every client away.
_ROUTINE_CLOSES = frozenset({Disconnect.SHUTDOWN.code})


def who(session: Session) -> dict[str, Any]:
    """The fields naming a connection: client id, user and address."""
    return {"client": session.client_id, "user": session.user, "addr": session.remote}


class EventLog(Observer):
    """Writes connection events to the ``hubbub.client`` logger."""

    def connected(self, session: Session) -> None:
        if log.isEnabledFor(logging.DEBUG):
            fields = who(session)
            if session.name:
                fields["name"] = session.name
            if session.version:
                fields["version"] = session.version
            log.debug("client connected", extra={"fields": fields})

    def disconnected(
        self, session: Session, disconnect: DisconnectInfo, *, by_server: bool, detail: str
    ) -> None:
        notable = by_server and disconnect.code not in _ROUTINE_CLOSES
        level = logging.INFO if notable else logging.DEBUG
        if not log.isEnabledFor(level):
            return
        fields = who(session)
        fields["code"] = disconnect.code
        fields["reason"] = disconnect.reason
        fields["by"] = "server" if by_server else "client"
        if detail:
            fields["detail"] = detail
        log.log(level, "client disconnected", extra={"fields": fields})

    def command_done(
        self, session: Session, received: Received, seconds: float, error: int
    ) -> None:
        if error and error < DISCONNECT_CODES and error != TOO_MANY_REQUESTS:
            if log.isEnabledFor(logging.DEBUG):
                fields = who(session)
                fields.update(method=received.method, error=error)
                log.debug("command refused", extra={"fields": fields})
            return
        # A disconnect (code >= 3000) has its own line; 111 floods are counted in metrics.
        if log.isEnabledFor(TRACE):
            fields = who(session)
            fields.update(method=received.method, ms=round(seconds * 1000, 3))
            if error:
                fields["error"] = error
            log.log(TRACE, "command", extra={"fields": fields})
