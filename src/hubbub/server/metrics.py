"""``GET /metrics`` (``prometheus.enabled``): the node's figures in Prometheus's text format.

Rule 1: nothing is counted here. A scrape reads the hub's counters
(hub/counters.py, Delivery's per-batch counts) and works the gauges out from
its state at that moment, so the hot path never touches a metrics object.
Rule 2: where Centrifugo has a family, it has Centrifugo's exact name and
labels (``centrifugo_node_num_clients``, ``centrifugo_node_messages_sent_count``
with ``type`` and ``channel_namespace``, ...), so its Grafana dashboard works;
hubbub's own families follow Prometheus's conventions (``hubbub_`` prefix,
``_total`` counters, base units). docs/metrics.md lists every family.
Rule 3: prometheus-client renames every counter to end in ``_total`` in its
text output, which would break Centrifugo's names; so the families are
prometheus-client ``Metric`` objects written by ``render`` as they are named,
and the process families come from prometheus-client's own collector.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import Metric

from hubbub.hub.counters import Histogram
from hubbub.hub.hub import Hub
from hubbub.server.keys import HUB_KEY
from hubbub.version import __version__
from hubbub.webhooks import DROP_REASONS

__all__ = ["CONTENT_TYPE", "collect", "metrics_handler", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The quantiles of Centrifugo's summaries (estimated here from histogram buckets).
QUANTILES = (0.5, 0.99, 0.999)


def _family(name: str, kind: str, help_text: str) -> Metric:
    return Metric(name, help_text, kind)


def _counter(name: str, help_text: str, values: Iterable[tuple[dict[str, str], float]]) -> Metric:
    family = _family(name, "counter", help_text)
    for labels, value in values:
        family.add_sample(name, labels, float(value))
    return family


def _gauge(name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> Metric:
    family = _family(name, "gauge", help_text)
    family.add_sample(name, labels or {}, float(value))
    return family


def _summary(
    name: str, help_text: str, series: Iterable[tuple[dict[str, str], Histogram]]
) -> Metric:
    family = _family(name, "summary", help_text)
    for labels, histogram in series:
        for q in QUANTILES:
            family.add_sample(name, {**labels, "quantile": str(q)}, histogram.quantile(q))
        family.add_sample(name + "_sum", labels, histogram.sum)
        family.add_sample(name + "_count", labels, float(histogram.count))
    return family


def _histogram(
    name: str, help_text: str, series: Iterable[tuple[dict[str, str], Histogram]]
) -> Metric:
    family = _family(name, "histogram", help_text)
    for labels, histogram in series:
        for bound, count in histogram.cumulative():
            le = "+Inf" if math.isinf(bound) else repr(bound)
            family.add_sample(name + "_bucket", {**labels, "le": le}, float(count))
        family.add_sample(name + "_sum", labels, histogram.sum)
        family.add_sample(name + "_count", labels, float(histogram.count))
    return family


def collect(hub: Hub) -> Iterator[Metric]:
    """Every family of ``hub``, read now."""
    counters = hub.counters
    sessions = list(hub.sessions.values())
    connected = [s for s in sessions if s.connected]
    stats = hub.stats()

    # --- Centrifugo's families --------------------------------------------------------
    yield _gauge("centrifugo_node_num_clients", "Number of clients connected.", len(connected))
    yield _gauge(
        "centrifugo_node_num_users", "Number of unique users connected.", stats["num_users"]
    )
    yield _gauge("centrifugo_node_num_subscriptions", "Number of subscriptions.", stats["num_subs"])
    yield _gauge(
        "centrifugo_node_num_channels",
        "Number of channels with one or more subscribers.",
        stats["num_channels"],
    )
    yield _gauge(
        "centrifugo_node_num_nodes",
        "Number of nodes in the cluster.",
        1 + len(hub.control.registry.live()),  # this node and every live one it heard from
    )
    yield _gauge("centrifugo_node_build", "Node build info.", 1, {"version": __version__})
    yield _counter(
        "centrifugo_node_messages_sent_count",
        "Number of messages sent by node to broker.",
        (
            ({"type": kind, "channel_namespace": namespace}, n)
            for kind, by_namespace in (
                ("publication", counters.published),
                ("join", counters.sent_joins),
                ("leave", counters.sent_leaves),
            )
            for namespace, n in sorted(by_namespace.items())
        ),
    )
    yield _counter(
        "centrifugo_node_messages_received_count",
        "Number of messages received from broker.",
        (
            ({"type": kind, "channel_namespace": ""}, n)
            for kind, n in (
                ("publication", counters.received_publications),
                ("join", counters.received_joins),
                ("leave", counters.received_leaves),
            )
        ),
    )
    yield _summary(
        "centrifugo_client_command_duration_seconds",
        "Client command duration summary.",
        (
            ({"method": method, "channel_namespace": ""}, histogram)
            for method, histogram in sorted(counters.command_seconds.items())
        ),
    )
    yield _counter(
        "centrifugo_client_num_reply_errors",
        "Number of errors in replies sent to clients.",
        (
            ({"method": method, "code": str(code), "channel_namespace": ""}, n)
            for (method, code), n in sorted(counters.reply_errors.items())
            if code < 3000  # codes from 3000 on closed the connection: see disconnects
        ),
    )
    yield _counter(
        "centrifugo_client_num_server_disconnects",
        "Number of server initiated disconnects.",
        (
            ({"code": str(code)}, n)
            for (code, by_server), n in sorted(counters.disconnects.items())
            if by_server
        ),
    )
    yield _counter(
        "centrifugo_client_num_server_unsubscribes",
        "Number of server initiated unsubscribes.",
        (
            ({"code": str(code), "channel_namespace": ""}, n)
            for code, n in sorted(counters.unsubscribes.items())
        ),
    )
    yield _counter(
        "centrifugo_transport_connect_count",
        "Number of connect attempts to specific transport.",
        (({"transport": name}, n) for name, n in sorted(counters.connects.items())),
    )
    delivery = hub.delivery
    sent = delivery.sent.by_transport()  # (transport, frame type, messages, bytes)
    yield _counter(
        "centrifugo_transport_messages_sent",
        "Number of messages sent to client connections over specific transport.",
        (
            ({"transport": transport, "frame_type": kind, "channel_namespace": ""}, n)
            for transport, kind, n, _ in sent
        ),
    )
    yield _counter(
        "centrifugo_transport_messages_sent_size",
        "Size in bytes of messages sent to client connections over specific transport "
        "(uncompressed and does not include framing overhead).",
        (
            ({"transport": transport, "frame_type": kind, "channel_namespace": ""}, size)
            for transport, kind, _, size in sent
        ),
    )
    yield _counter(
        "centrifugo_transport_messages_received",
        "Number of messages received from client connections over specific transport.",
        (
            ({"transport": transport, "frame_type": method, "channel_namespace": ""}, n)
            for (transport, method), n in sorted(counters.received.items())
        ),
    )
    yield _counter(
        "centrifugo_transport_messages_received_size",
        "Size in bytes of messages received from client connections over specific "
        "transport (uncompressed and does not include framing overhead).",
        (
            ({"transport": transport, "frame_type": "", "channel_namespace": ""}, size)
            for transport, size in sorted(counters.bytes_in.items())
        ),
    )
    api = sorted(counters.api_seconds.items())
    yield _summary(
        "centrifugo_api_command_duration_seconds",
        "Duration of API per command.",
        (({"protocol": "http", "method": method}, histogram) for method, histogram in api),
    )
    yield _histogram(
        "centrifugo_api_command_duration_seconds_histogram",
        "Duration of API per command.",
        (({"protocol": "http", "method": method}, histogram) for method, histogram in api),
    )

    proxies = sorted(counters.proxy_seconds.items())
    yield _summary(
        "centrifugo_proxy_duration_seconds",
        "Duration of proxy call.",
        (({"protocol": p, "type": t, "name": n}, h) for (p, t, n), h in proxies),
    )
    yield _histogram(
        "centrifugo_proxy_duration_seconds_histogram",
        "Histogram of duration of proxy call.",
        (({"protocol": p, "type": t, "name": n}, h) for (p, t, n), h in proxies),
    )
    yield _counter(
        "centrifugo_proxy_errors",
        "Proxy call error count.",
        (
            ({"protocol": p, "type": t, "name": n}, counters.proxy_errors[p, t, n])
            for (p, t, n) in sorted(counters.proxy_calls)
        ),
    )
    inflight = _family(
        "centrifugo_proxy_inflight_requests", "gauge", "Number of inflight proxy requests."
    )
    for (p, t, n), count in sorted(counters.proxy_inflight.items()):
        inflight.add_sample(inflight.name, {"protocol": p, "type": t, "name": n}, float(count))
    yield inflight

    # --- hubbub's families ------------------------------------------------------------
    yield _counter(
        "hubbub_proxy_calls_total",
        "Event proxy calls, by protocol, type (the event) and proxy name.",
        (
            ({"protocol": p, "type": t, "name": n}, count)
            for (p, t, n), count in sorted(counters.proxy_calls.items())
        ),
    )
    yield _histogram(
        "hubbub_client_command_duration_seconds",
        "Time from a client command's arrival to its reply being queued, by method.",
        (({"method": m}, histogram) for m, histogram in sorted(counters.command_seconds.items())),
    )
    yield _counter(
        "hubbub_transport_frames_written_total",
        "WebSocket frames written to clients (one write may carry many messages).",
        [({}, delivery.stats_frames)],
    )
    yield _counter(
        "hubbub_transport_frames_received_total",
        "Text frames received from clients (one frame may carry many commands).",
        [({}, counters.frames_in)],
    )
    yield _counter(
        "hubbub_client_slow_disconnects_total",
        "Clients disconnected (3008) because their pending output passed client.queue_max_size.",
        [({}, sum(n for (code, by_server), n in counters.disconnects.items() if code == 3008))],
    )
    yield _gauge(
        "hubbub_client_outbox_bytes",
        "Bytes queued for clients and not yet taken by the kernel (outboxes and transport "
        "buffers), over every connection.",
        sum(s.protocol.outbox_bytes + s.transport.buffered() for s in sessions),
    )
    yield _counter(
        "hubbub_api_calls_total",
        "Server API calls, by method (HTTP API and admin API).",
        (({"method": m}, n) for m, n in sorted(counters.api_calls.items())),
    )
    yield _counter(
        "hubbub_api_errors_total",
        "Server API calls answered with an error, by method and error code.",
        (({"method": m, "code": str(c)}, n) for (m, c), n in sorted(counters.api_errors.items())),
    )
    yield _counter(
        "hubbub_engine_failures_total",
        "Engine operations that failed because the engine's backend was unavailable.",
        [({}, hub.outages.failures)],
    )
    yield _histogram(
        "hubbub_engine_publish_duration_seconds",
        "Time the engine took to publish (store and broadcast) one publication.",
        [({}, counters.publish_seconds)],
    )
    yield _gauge(
        "hubbub_engine_available",
        "1 while the engine's backend (Redis, NATS) is reachable, 0 while it is not.",
        1 if hub.engine.available else 0,
    )
    webhooks = hub.webhooks
    if webhooks.enabled:
        yield _counter(
            "hubbub_webhook_events_dropped_total",
            "Webhook events dropped before delivery, by reason: the queue's bounds "
            "(webhooks.queue_max_length, queue_max_age) or events waiting to be queued "
            "(webhooks.max_pending).",
            (({"reason": reason}, webhooks.dropped[reason]) for reason in DROP_REASONS),
        )
        yield _gauge(
            "hubbub_webhook_events_queued",
            "Webhook events accepted and not yet delivered, as last seen by this node.",
            webhooks.queue.queued,
        )
    losses = getattr(hub.engine, "pubsub_losses", None)
    if isinstance(losses, int):
        yield _counter(
            "hubbub_redis_pubsub_connection_losses_total",
            "Redis pub/sub connections lost while carrying channels (each is reconnected, "
            "and its channels' subscribers recover).",
            [({}, losses)],
        )


# --- the text format -----------------------------------------------------------------


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render(families: Iterable[Metric]) -> str:
    """Families in the text format (0.0.4), each named exactly as it is (Rule 3)."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.documentation)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sample.labels.items())
            name = f"{sample.name}{{{labels}}}" if labels else sample.name
            lines.append(f"{name} {_number(sample.value)}")
    return "\n".join(lines) + "\n"


async def metrics_handler(request: web.Request) -> web.Response:
    hub: Hub = request.app[HUB_KEY]
    process = CollectorRegistry(auto_describe=False)  # process_* (CPU, memory, open files)
    ProcessCollector(registry=process)
    text = render(collect(hub)) + generate_latest(process).decode()
    return web.Response(text=text, headers={"Content-Type": CONTENT_TYPE})
