"""The control plane: server API actions and questions that reach every node.

Rule 1: an action of the server API (disconnect, unsubscribe, subscribe,
refresh) is applied to this node's sessions first (awaited, so its errors
reach the caller), then published on the engine's control channel; every other
node applies it to its own sessions. A node ignores its own messages (it
already acted). With the memory engine there is no other node, and nothing
changes: the message comes back to this node and is ignored.
Rule 2: each node announces itself every ``ANNOUNCE_INTERVAL`` (nodes.py keeps
the registry), once more when it meets a node it did not know, and says
goodbye when it closes. ``info`` lists this node and every live one.
Rule 3: a survey (``channels``) asks every live node and waits for all of them
at most ``SURVEY_TIMEOUT``; a node that does not answer makes the survey fail
with error 100, never a partial answer presented as whole. ``ask`` is a survey
of one node, sent to that node only (``emulation``: the commands of a session
it holds, hub/emulation.py).
Rule 4: control is at most once (as Centrifugo's): a node that is away when an
action is published does not apply it later; its clients reconnect and are
subject to the action's cause (token, permission) like anyone.
Rule 5: a live trace (the admin UI's) is cluster-wide: the node serving it asks
every node to trace the channel or user too (``trace_start``, renewed every
``ANNOUNCE_INTERVAL`` as a lease that lapses after ``NODE_TTL`` if the asker
dies, withdrawn by ``trace_stop``), and they send their events back to that
node alone (``trace_events``). What to trace and how is the ``TraceRelay``'s
(hub/tracing.py); this module carries the messages.

The messages are JSON objects with a ``kind`` (Centrifugo's control command
kinds: node, shutdown, disconnect, unsubscribe, subscribe, refresh,
survey_request, survey_response; and hubbub's trace_start, trace_stop,
trace_events) and the ``sender`` node's uid. Survey ops: ``channels`` (counts
per channel) and ``connections`` (a user's connections, or all up to a limit).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from hubbub.codes import DisconnectInfo, Error, disconnect_info
from hubbub.engines.base import EngineUnavailable
from hubbub.errors import ClientError
from hubbub.hub.nodes import ANNOUNCE_INTERVAL, NodeInfo, NodeRegistry
from hubbub.protocol.messages import NO_DATA, StreamPosition
from hubbub.tasks import stop_task

if TYPE_CHECKING:
    from hubbub.hub.hub import Hub
    from hubbub.hub.session import Session

log = logging.getLogger("hubbub.control")

#: How long a survey waits for the other nodes' answers (seconds).
SURVEY_TIMEOUT = 3.0


# --- messages --------------------------------------------------------------------------


class _Message(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    sender: str  # the uid of the node that published it


class Announce(_Message, tag="node"):
    node: NodeInfo


class Shutdown(_Message, tag="shutdown"):
    pass


class DisconnectUser(_Message, tag="disconnect"):
    user: str
    code: int
    client: str = ""
    whitelist: list[str] = []
    reason: str = ""


class UnsubscribeUser(_Message, tag="unsubscribe"):
    user: str
    channel: str
    client: str = ""


class SubscribeUser(_Message, tag="subscribe"):
    user: str
    channel: str
    client: str = ""
    info: msgspec.Raw = NO_DATA  # absent: omitted
    data: msgspec.Raw = NO_DATA
    recover_since: StreamPosition | None = None


class RefreshUser(_Message, tag="refresh"):
    user: str
    client: str = ""
    expired: bool = False
    expire_at: int = 0


class SurveyRequest(_Message, tag="survey_request"):
    id: str
    op: str
    params: msgspec.Raw = NO_DATA  # the op's parameters (JSON), if it has any


class SurveyResponse(_Message, tag="survey_response"):
    id: str
    data: msgspec.Raw


class TraceStart(_Message, tag="trace_start"):
    """Trace ``channel`` or ``user`` here too and send the events to the sender
    (Rule 5); sent again while the trace lasts."""

    id: str
    channel: str = ""
    user: str = ""


class TraceStop(_Message, tag="trace_stop"):
    id: str


class TraceEvents(_Message, tag="trace_events"):
    """Events of the trace ``id`` (each a JSON object), to the node that asked."""

    id: str
    events: list[msgspec.Raw]


class ConnectionsParams(msgspec.Struct, omit_defaults=True):
    user: str = ""
    limit: int = 0


ControlMessage = (
    Announce
    | Shutdown
    | DisconnectUser
    | UnsubscribeUser
    | SubscribeUser
    | RefreshUser
    | SurveyRequest
    | SurveyResponse
    | TraceStart
    | TraceStop
    | TraceEvents
)
_decoder = msgspec.json.Decoder(ControlMessage)
_encode = msgspec.json.encode


class TraceRelay(Protocol):
    """The traces of one node (hub/tracing.py's Tracer), as the control plane sees them."""

    def remote_watch(self, trace_id: str, node: str, channel: str, user: str) -> None:
        """Node ``node`` traces ``channel`` or ``user``: send it what happens here
        (a new trace, or the renewal of one)."""

    def remote_unwatch(self, trace_id: str) -> None:
        """That trace ended."""

    def remote_events(self, trace_id: str, events: list[msgspec.Raw]) -> None:
        """Another node's events of this node's trace ``trace_id``."""


def describe_connection(session: Session, node: str) -> dict[str, Any]:
    """One connection as the ``connections`` API shows it (Centrifugo PRO's shape)."""
    return {
        "user": session.user,
        "app_name": session.name,
        "app_version": session.version,
        "transport": session.transport_name,
        "protocol": session.codec.name,
        "addr": session.remote,
        "node": node,
        "channels": sorted(session.subscriptions),
    }


class _Survey:
    """The answers gathered for one survey request."""

    def __init__(self, expected: set[str]) -> None:
        self.expected = expected
        self.answers: dict[str, msgspec.Raw] = {}
        self.complete = asyncio.Event()
        if not expected:
            self.complete.set()

    def answer(self, node: str, data: msgspec.Raw) -> None:
        self.answers[node] = data
        if self.expected <= self.answers.keys():
            self.complete.set()


class Control:
    """One hub's side of the control plane."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.registry = NodeRegistry()
        self.tracing: TraceRelay | None = None  # set by the server when it serves traces
        self._surveys: dict[str, _Survey] = {}
        self._announcer: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._announcer is None:
            self._announcer = asyncio.get_running_loop().create_task(
                self._announce_forever(), name="hubbub-node-announce"
            )

    async def close(self) -> None:
        """Stop announcing and tell the other nodes this one is gone."""
        if self._announcer is None:
            return
        await stop_task(self._announcer)
        self._announcer = None
        await self._publish(Shutdown(sender=self.hub.node_id), quiet=True)

    async def _announce_forever(self) -> None:
        while True:
            await self.announce()
            await asyncio.sleep(ANNOUNCE_INTERVAL)

    async def announce(self) -> None:
        await self._publish(Announce(sender=self.hub.node_id, node=self.local_info()), quiet=True)

    def local_info(self) -> NodeInfo:
        return msgspec.convert(self.hub.stats(), NodeInfo)

    # --- server API actions: this node, then every other -------------------------------

    async def disconnect_user(
        self,
        user: str,
        disconnect: DisconnectInfo,
        *,
        client: str = "",
        whitelist: Iterable[str] = (),
    ) -> None:
        keep = list(whitelist)
        self.hub.disconnect_user(user, disconnect, client=client, whitelist=keep)
        message = DisconnectUser(
            sender=self.hub.node_id,
            user=user,
            client=client,
            whitelist=keep,
            code=disconnect.code,
            reason=disconnect.reason,
        )
        await self._publish(message)

    async def unsubscribe_user(self, user: str, channel: str, *, client: str = "") -> None:
        self.hub.unsubscribe_user(user, channel, client=client)
        message = UnsubscribeUser(
            sender=self.hub.node_id, user=user, channel=channel, client=client
        )
        await self._publish(message)

    async def subscribe_user(
        self,
        user: str,
        channel: str,
        *,
        client: str = "",
        info: msgspec.Raw | None = None,
        data: msgspec.Raw | None = None,
        recover_since: StreamPosition | None = None,
    ) -> None:
        await self.hub.subscribe_user(
            user, channel, client=client, info=info, data=data, recover_since=recover_since
        )
        message = SubscribeUser(
            sender=self.hub.node_id,
            user=user,
            channel=channel,
            client=client,
            info=info or NO_DATA,
            data=data or NO_DATA,
            recover_since=recover_since,
        )
        await self._publish(message)

    async def refresh_user(
        self, user: str, *, client: str = "", expired: bool = False, expire_at: int = 0
    ) -> None:
        self.hub.refresh_user(user, client=client, expired=expired, expire_at=expire_at)
        message = RefreshUser(
            sender=self.hub.node_id,
            user=user,
            client=client,
            expired=expired,
            expire_at=expire_at,
        )
        await self._publish(message)

    # --- questions to every node -------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """This node and every other live one, by name."""
        return sorted([self.local_info(), *self.registry.live()], key=lambda n: (n.name, n.uid))

    async def channel_counts(self) -> dict[str, int]:
        """Channels with subscribers on any node, and how many (summed over the nodes)."""
        totals = dict(self.hub.channel_counts())
        for answer in await self.survey("channels"):
            for name, count in msgspec.json.decode(answer, type=dict[str, int]).items():
                totals[name] = totals.get(name, 0) + count
        return totals

    async def connections(self, user: str = "", limit: int = 0) -> dict[str, Any]:
        """Connections of ``user`` (every connected one if "") on every node, by client
        id; at most ``limit`` of them when it is more than 0."""
        found = self.local_connections(user, limit)
        params = msgspec.Raw(_encode(ConnectionsParams(user=user, limit=limit)))
        for answer in await self.survey("connections", params):
            found.update(msgspec.json.decode(answer, type=dict[str, dict[str, Any]]))
        if limit > 0 and len(found) > limit:
            found = dict(list(found.items())[:limit])
        return found

    def local_connections(self, user: str, limit: int) -> dict[str, Any]:
        hub = self.hub
        if user:
            sessions = hub.sessions_of(user)
        else:
            sessions = [s for s in hub.sessions.values() if s.connected]
        if limit > 0:
            sessions = sessions[:limit]
        return {s.client_id: describe_connection(s, hub.node_id) for s in sessions}

    async def survey(self, op: str, params: msgspec.Raw = NO_DATA) -> list[msgspec.Raw]:
        """Ask every other live node ``op``; their answers (ClientError 100 on timeout)."""
        expected = self.registry.uids()
        if not expected:
            return []
        answers = await self._ask(
            expected, SurveyRequest(sender=self.hub.node_id, id="", op=op, params=params)
        )
        return list(answers.values())

    async def ask(self, node: str, op: str, params: msgspec.Raw) -> msgspec.Raw:
        """Ask the live node ``node`` alone (a survey of one, sent to it only); its answer.

        ``KeyError`` when no such node is alive; ClientError 100 when it does not
        answer within ``SURVEY_TIMEOUT``; ``EngineUnavailable`` as ``survey``.
        """
        if node not in self.registry.uids():
            raise KeyError(node)
        request = SurveyRequest(sender=self.hub.node_id, id="", op=op, params=params)
        answers = await self._ask({node}, request, to=node)
        return answers[node]

    async def _ask(
        self, expected: set[str], request: SurveyRequest, *, to: str = ""
    ) -> dict[str, msgspec.Raw]:
        request.id = uuid.uuid4().hex
        survey = self._surveys[request.id] = _Survey(expected)
        try:
            await self.hub.engine.publish_control(_encode(request), to)
            try:
                async with asyncio.timeout(SURVEY_TIMEOUT):
                    await survey.complete.wait()
            except TimeoutError:
                missing = sorted(survey.expected - survey.answers.keys())
                log.warning("survey %s: no answer from node(s) %s", request.op, ", ".join(missing))
                raise ClientError(Error.INTERNAL, f"no answer from node(s) {missing}") from None
            return survey.answers
        finally:
            del self._surveys[request.id]

    def _answer(self, op: str, params: msgspec.Raw) -> Any:
        if op == "channels":
            return self.hub.channel_counts()
        if op == "emulation":
            return self.hub.emulation.answer(params)
        if op == "connections":
            asked = msgspec.json.decode(params or b"{}", type=ConnectionsParams)
            return self.local_connections(asked.user, asked.limit)
        raise ValueError(f"unknown survey {op!r}")

    # --- traces across nodes (Rule 5) --------------------------------------------------

    async def trace_start(self, trace_id: str, *, channel: str = "", user: str = "") -> None:
        """Ask every other node to trace ``channel`` or ``user`` for this one (again)."""
        message = TraceStart(sender=self.hub.node_id, id=trace_id, channel=channel, user=user)
        await self._publish(message, quiet=True)

    async def trace_stop(self, trace_id: str) -> None:
        await self._publish(TraceStop(sender=self.hub.node_id, id=trace_id), quiet=True)

    async def trace_events(self, node: str, trace_id: str, events: list[msgspec.Raw]) -> None:
        """Events of ``node``'s trace ``trace_id``, to that node alone."""
        message = TraceEvents(sender=self.hub.node_id, id=trace_id, events=events)
        try:
            await self.hub.engine.publish_control(_encode(message), node)
        except EngineUnavailable as exc:
            self.hub.outages.failed("sending trace events", exc)

    # --- messages from the engine ------------------------------------------------------

    def handle(self, data: bytes) -> None:
        """A control message from the engine (called synchronously, on the loop)."""
        try:
            message = _decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.warning("control: an undecodable message ignored: %s", exc)
            return
        hub = self.hub
        if message.sender == hub.node_id:
            return  # ours: already applied here
        match message:
            case Announce(node=info):
                if self.registry.update(info):
                    log.info("node %s (%s) joined", info.name, info.uid)
                    hub.spawn(self.announce())  # so the newcomer knows this node at once
            case Shutdown():
                self.registry.remove(message.sender)
                log.info("node %s left", message.sender)
            case DisconnectUser():
                hub.disconnect_user(
                    message.user,
                    disconnect_info(message.code, message.reason),
                    client=message.client,
                    whitelist=message.whitelist,
                )
            case UnsubscribeUser():
                hub.unsubscribe_user(message.user, message.channel, client=message.client)
            case SubscribeUser():
                hub.spawn(self._subscribe_here(message))
            case RefreshUser():
                hub.refresh_user(
                    message.user,
                    client=message.client,
                    expired=message.expired,
                    expire_at=message.expire_at,
                )
            case SurveyRequest():
                hub.spawn(self._reply(message))
            case SurveyResponse():
                survey = self._surveys.get(message.id)
                if survey is not None:
                    survey.answer(message.sender, message.data)
            case TraceStart() if self.tracing is not None:
                self.tracing.remote_watch(message.id, message.sender, message.channel, message.user)
            case TraceStop() if self.tracing is not None:
                self.tracing.remote_unwatch(message.id)
            case TraceEvents() if self.tracing is not None:
                self.tracing.remote_events(message.id, message.events)

    async def _subscribe_here(self, message: SubscribeUser) -> None:
        try:
            await self.hub.subscribe_user(
                message.user,
                message.channel,
                client=message.client,
                info=message.info or None,
                data=message.data or None,
                recover_since=message.recover_since,
            )
        except ClientError as exc:
            log.info("control: subscribe %s to %s refused: %s", message.user, message.channel, exc)
        except EngineUnavailable as exc:
            self.hub.outages.failed(f"subscribe {message.user} to {message.channel}", exc)

    async def _reply(self, request: SurveyRequest) -> None:
        try:
            data = msgspec.Raw(_encode(self._answer(request.op, request.params)))
        except (ValueError, msgspec.DecodeError) as exc:
            log.warning("control: %s", exc)
            return
        response = SurveyResponse(sender=self.hub.node_id, id=request.id, data=data)
        try:
            await self.hub.engine.publish_control(_encode(response), request.sender)
        except EngineUnavailable as exc:
            self.hub.outages.failed(f"answering survey {request.op}", exc)

    async def _publish(self, message: _Message, *, quiet: bool = False) -> None:
        """Publish to every node; ``quiet``: an outage is only counted (by the engine)."""
        try:
            await self.hub.engine.publish_control(_encode(message))
        except EngineUnavailable:
            if not quiet:
                raise
