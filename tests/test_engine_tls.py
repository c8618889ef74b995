"""TLS to Redis (engine.redis.tls) and NATS (broker.nats.tls), against real servers.

A throwaway CA (tests/tls_fixtures.py) signs the servers' certificates; a
redis-server listens with TLS on its own port (its plain port only tells the
fixture it is up), a nats-server requires TLS. The engines are made from
configuration as ``hubbub serve`` makes them (engine_from_config), so the
config keys, the context and the library plumbing are all exercised.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.config.loader import load_config
from hubbub.engines.base import EngineUnavailable, HistoryOptions, HistoryQuery
from hubbub.engines.factory import engine_from_config
from hubbub.errors import ConfigError
from tests.conftest import ServerFactory, merge
from tests.engine_fixtures import Events, pub, two_nodes_events
from tests.map_fixtures import MAP_CONFIG, api_result, server_state
from tests.nats_fixtures import NatsProcess, nats_server  # noqa: F401 (fixture)
from tests.redis_cluster_fixtures import RedisClusterProcesses
from tests.redis_fixtures import (  # noqa: F401 (fixture)
    RedisProcess,
    free_port,
    free_port_pair,
    own_redis,
)
from tests.redis_sentinel_fixtures import SentinelProcess
from tests.test_cli import run_cli
from tests.test_engine_nats import wait_for
from tests.tls_fixtures import NAMED_HOST, TlsFiles, make_tls_files
from tests.wsclient import connected_client

pytestmark = pytest.mark.timeout(60)

HISTORY = HistoryOptions(size=10, ttl=60.0, meta_ttl=3600.0)


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Another CA: the servers' certificates are not signed by it."""
    return make_tls_files(tmp_path_factory.mktemp("other-ca"))


def _tls_redis(
    directory: Path, files: TlsFiles, cert: Path, key: Path, mutual: bool
) -> RedisProcess:
    port = free_port()
    server = RedisProcess(
        directory,
        extra=(
            *("--tls-port", str(port)),
            *("--tls-cert-file", str(cert), "--tls-key-file", str(key)),
            *("--tls-ca-cert-file", str(files.ca)),
            *("--tls-auth-clients", "yes" if mutual else "no"),
        ),
    )
    server.tls_port = port  # type: ignore[attr-defined]
    return server


def _serving(server: RedisProcess) -> Iterator[int]:
    """A module fixture's body: ``server`` running, its TLS port yielded, then stopped."""
    server.start()
    yield server.tls_port  # type: ignore[attr-defined]
    server.stop()


@pytest.fixture(scope="module")
def tls_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The TLS port of a redis-server that does not ask for a client certificate."""
    directory = tmp_path_factory.mktemp("r1")
    yield from _serving(_tls_redis(directory, tls_files, tls_files.cert, tls_files.key, False))


@pytest.fixture(scope="module")
def mutual_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The TLS port of a redis-server that requires a client certificate of the CA."""
    directory = tmp_path_factory.mktemp("r2")
    yield from _serving(_tls_redis(directory, tls_files, tls_files.cert, tls_files.key, True))


@pytest.fixture(scope="module")
def named_redis(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A TLS redis-server whose certificate names only NAMED_HOST (not 127.0.0.1)."""
    directory = tmp_path_factory.mktemp("r3")
    cert, key = tls_files.named_cert, tls_files.named_key
    yield from _serving(_tls_redis(directory, tls_files, cert, key, False))


def _redis_config(port: int, tls: dict[str, Any], prefix: str = "") -> Any:
    base = {
        "engine": {
            "type": "redis",
            "redis": {
                "address": [f"127.0.0.1:{port}"],
                "prefix": prefix or f"t{uuid.uuid4().hex[:8]}",
                "tls": {"enabled": True, **tls},
            },
        }
    }
    return load_config(None, env={}, base=base).config


async def _publish_and_read(port: int, tls: dict[str, Any]) -> None:
    engine = engine_from_config(_redis_config(port, tls))
    events = Events()
    await engine.start(events)
    try:
        await engine.subscribe("chat:tls")
        await engine.publish("chat:tls", pub(1), HISTORY)
        await wait_for(lambda: bool(events.publications), 10)
        page = await engine.history("chat:tls", HistoryQuery(limit=-1), HISTORY)
        assert [p.data for p in page.publications] == [pub(1).data]
        assert engine.available
    finally:
        await engine.close()


async def test_redis_tls_with_the_servers_ca(tls_redis: int, tls_files: TlsFiles) -> None:
    await _publish_and_read(tls_redis, {"server_ca_pem": str(tls_files.ca)})


async def test_redis_tls_pem_given_inline(tls_redis: int, tls_files: TlsFiles) -> None:
    await _publish_and_read(tls_redis, {"server_ca_pem": tls_files.ca.read_text()})


async def test_redis_mutual_tls_with_a_client_certificate(
    mutual_redis: int, tls_files: TlsFiles
) -> None:
    tls = {
        "server_ca_pem": str(tls_files.ca),
        "cert_pem": str(tls_files.client_cert),
        "key_pem": str(tls_files.client_key),
    }
    await _publish_and_read(mutual_redis, tls)


async def _refused(
    port: int, tls: dict[str, Any], caplog: pytest.LogCaptureFixture, cause: str
) -> None:
    """The engine cannot reach Redis: the command fails as an outage, told in one
    warning naming ``cause``, without a traceback."""
    caplog.clear()
    engine = engine_from_config(_redis_config(port, tls))
    await engine.start(Events())
    try:
        with caplog.at_level(logging.INFO), pytest.raises(EngineUnavailable):
            await engine.publish("chat:tls", pub(1), HISTORY)
        assert not engine.available
    finally:
        await engine.close()
    assert not [r for r in caplog.records if r.exc_info], "an outage is told without a traceback"
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    told = [line for line in lines if "unreachable" in line]
    assert len(told) == 1 and cause in told[0], lines


async def test_redis_mutual_tls_without_a_certificate_is_an_outage(
    mutual_redis: int, tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    await _refused(
        mutual_redis, {"server_ca_pem": str(tls_files.ca)}, caplog, "TLS: the server closed"
    )


async def test_redis_server_signed_by_another_ca_is_not_trusted(
    tls_redis: int, other_ca: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    await _refused(tls_redis, {"server_ca_pem": str(other_ca.ca)}, caplog, "not trusted")


async def test_redis_insecure_skip_verify_connects(tls_redis: int, other_ca: TlsFiles) -> None:
    await _publish_and_read(
        tls_redis, {"server_ca_pem": str(other_ca.ca), "insecure_skip_verify": True}
    )


async def test_redis_server_name_is_checked_instead_of_the_host(
    named_redis: int, tls_files: TlsFiles, caplog: pytest.LogCaptureFixture
) -> None:
    await _publish_and_read(
        named_redis, {"server_ca_pem": str(tls_files.ca), "server_name": NAMED_HOST}
    )
    await _refused(named_redis, {"server_ca_pem": str(tls_files.ca)}, caplog, "tls.server_name")


# --- map subscriptions (map_broker.redis.tls) ------------------------------------------


async def test_map_subscriptions_over_mutual_tls_across_two_nodes(
    mutual_redis: int, tls_files: TlsFiles, start_server: ServerFactory
) -> None:
    """Two nodes keep their maps in a redis-server reached only over TLS with a client
    certificate: a key written through one node's API reaches a subscriber of the
    other (pub/sub) and is in the state the other reads (the map's keys in Redis)."""
    tls = {
        "enabled": True,
        "server_ca_pem": str(tls_files.ca),
        "cert_pem": str(tls_files.client_cert),
        "key_pem": str(tls_files.client_key),
    }
    redis = {"address": [f"127.0.0.1:{mutual_redis}"], "prefix": f"m{uuid.uuid4().hex[:8]}"}
    config = merge(MAP_CONFIG, {"map_broker": {"type": "redis", "redis": {**redis, "tls": tls}}})
    writer, reader = await start_server(config), await start_server(config)
    channel = "board:tls"
    await api_result(writer, "map_publish", {"channel": channel, "key": "a", "data": {"n": 1}})
    async with connected_client(reader.ws_url) as client:
        result = await client.result("subscribe", {"channel": channel, "type": 1, "phase": 2})
        assert [entry["key"] for entry in result["state"]] == ["a"]
        await api_result(writer, "map_publish", {"channel": channel, "key": "b", "data": {"n": 2}})
        pushed = await client.push(channel, "pub")
        assert (pushed["key"], pushed["data"]) == ("b", {"n": 2})
    assert await server_state(reader, channel) == {"a": {"n": 1}, "b": {"n": 2}}


# --- NATS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_nats(tls_files: TlsFiles) -> Iterator[NatsProcess]:
    server = NatsProcess(
        extra=(
            "--tls",
            *("--tlscert", str(tls_files.cert), "--tlskey", str(tls_files.key)),
            "--tlsverify",
            *("--tlscacert", str(tls_files.ca)),
        )
    )
    server.start()
    yield server
    server.stop()


async def test_nats_broker_over_mutual_tls_delivers_across_two_nodes(
    tls_nats: NatsProcess, tls_files: TlsFiles
) -> None:
    base = {
        "broker": {
            "enabled": True,
            "type": "nats",
            "nats": {
                "url": tls_nats.url,
                "prefix": f"n{uuid.uuid4().hex[:8]}",
                "tls": {
                    "enabled": True,
                    "server_ca_pem": str(tls_files.ca),
                    "cert_pem": str(tls_files.client_cert),
                    "key_pem": str(tls_files.client_key),
                },
            },
        }
    }
    config = load_config(None, env={}, base=base).config
    a, b = engine_from_config(config), engine_from_config(config)
    events_a, events_b = two_nodes_events()
    await a.start(events_a)
    await b.start(events_b)
    try:
        await wait_for(lambda: a.available and b.available, 15)
        await a.subscribe("news")
        await b.publish("news", pub(7), HistoryOptions())
        await wait_for(lambda: bool(events_a.publications), 10)
        assert events_a.publications[0][1].data == pub(7).data
    finally:
        await a.close()
        await b.close()


# --- configuration errors --------------------------------------------------------------


def test_bad_tls_values_are_refused_naming_the_key(tls_files: TlsFiles, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ({"server_ca_pem": str(tmp_path / "missing.pem")}, "engine.redis.tls.server_ca_pem"),
        ({"server_ca_pem": str(garbage)}, "engine.redis.tls.server_ca_pem"),
        ({"cert_pem": str(tls_files.client_cert)}, "engine.redis.tls.key_pem"),
        (
            {"cert_pem": str(tls_files.client_cert), "key_pem": str(tls_files.other_key)},
            "engine.redis.tls.key_pem",
        ),
    ]
    for tls, key in cases:
        with pytest.raises(ConfigError) as caught:
            _redis_config(6379, tls)
        assert key in str(caught.value), (tls, str(caught.value))


def test_checkconfig_refuses_a_missing_key_file_of_broker_nats_tls(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    tls = {"enabled": True, "key_pem": str(tmp_path / "nope.key"), "cert_pem": "x"}
    config.write_text(
        json.dumps({"broker": {"enabled": True, "type": "nats", "nats": {"tls": tls}}})
    )
    result = run_cli("checkconfig", str(config))
    assert result.returncode != 0
    assert "broker.nats.tls." in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_client_ca_and_insecure_skip_verify_load_with_a_warning(tls_files: TlsFiles) -> None:
    base = {
        "engine": {
            "type": "redis",
            "redis": {
                "tls": {
                    "enabled": True,
                    "client_ca_pem": str(tls_files.ca),
                    "insecure_skip_verify": True,
                }
            },
        }
    }
    loaded = load_config(None, env={}, base=base)
    text = "\n".join(loaded.warnings)
    assert "engine.redis.tls.client_ca_pem has no effect" in text
    assert "engine.redis.tls.insecure_skip_verify" in text


# --- Sentinel over TLS -------------------------------------------------------------------


async def test_sentinel_over_tls_finds_its_master_over_tls(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    """The sentinels answer on a TLS port only hubbub uses (sentinel_tls); the master
    they name is watched, and reached by hubbub, on its TLS port (tls)."""
    master = _tls_redis(tmp_path / "m", tls_files, tls_files.cert, tls_files.key, False)
    (tmp_path / "m").mkdir()
    master.start()
    sentinel_tls_port = free_port()
    sentinel = SentinelProcess(
        tmp_path,
        master.tls_port,  # type: ignore[attr-defined]
        "tlsmaster",
        extra=(
            f"tls-port {sentinel_tls_port}",
            f"tls-cert-file {tls_files.cert}",
            f"tls-key-file {tls_files.key}",
            f"tls-ca-cert-file {tls_files.ca}",
            "tls-auth-clients no",
            "tls-replication yes",  # the sentinel talks TLS to the master
        ),
    )
    try:
        sentinel.start()
        ca = {"enabled": True, "server_ca_pem": str(tls_files.ca)}
        base = {
            "engine": {
                "type": "redis",
                "redis": {
                    "sentinel_address": [f"127.0.0.1:{sentinel_tls_port}"],
                    "sentinel_master_name": "tlsmaster",
                    "prefix": f"t{uuid.uuid4().hex[:8]}",
                    "tls": ca,
                    "sentinel_tls": ca,
                },
            }
        }
        engine = engine_from_config(load_config(None, env={}, base=base).config)
        events = Events()
        await engine.start(events)
        try:
            await engine.subscribe("chat:s")
            await engine.publish("chat:s", pub(3), HISTORY)
            await wait_for(lambda: bool(events.publications), 10)
            page = await engine.history("chat:s", HistoryQuery(limit=-1), HISTORY)
            assert [p.data for p in page.publications] == [pub(3).data]
        finally:
            await engine.close()
    finally:
        sentinel.stop()
        master.stop()


async def test_other_users_of_redis_connect_over_tls(tls_redis: int, tls_files: TlsFiles) -> None:
    """The webhook queue and the redis_stream consumers (single_client) honour the
    tls section of the configuration they are given."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hubbub.engines.redis_single import single_client

    config = _redis_config(tls_redis, {"server_ca_pem": str(tls_files.ca)}).engine.redis
    client, sentinel = single_client(config, "engine.redis")
    assert sentinel is None
    try:
        assert await client.ping()
    finally:
        await client.aclose()
    untrusting = _redis_config(tls_redis, {}).engine.redis  # the system's CAs only
    client, _ = single_client(untrusting, "engine.redis")
    try:
        with pytest.raises(RedisConnectionError) as caught:
            await client.ping()
        assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    finally:
        await client.aclose()


# --- Redis Cluster over TLS ------------------------------------------------------------


async def test_cluster_over_tls(tls_files: TlsFiles, tmp_path: Path) -> None:
    """Each node also listens with TLS and talks TLS on the cluster bus; a client
    connected over TLS is told the nodes' TLS ports (CLUSTER SLOTS), so the seeds
    given are TLS ports and every node hubbub discovers is reached over TLS too."""
    tls_ports: list[int] = []

    def extra() -> tuple[str, ...]:
        tls_ports.append(free_port_pair(10000))  # its cluster bus: tls-port + 10000
        return (
            *("--tls-port", str(tls_ports[-1])),
            *("--tls-cert-file", str(tls_files.cert), "--tls-key-file", str(tls_files.key)),
            *("--tls-ca-cert-file", str(tls_files.ca), "--tls-auth-clients", "no"),
            *("--tls-cluster", "yes"),  # the bus: each node a client of the others
            *("--tls-client-cert-file", str(tls_files.client_cert)),
            *("--tls-client-key-file", str(tls_files.client_key)),
        )

    cluster = RedisClusterProcesses(tmp_path, replicas=False, extra=extra)
    try:
        cluster.start()
        seeds = ",".join(f"127.0.0.1:{port}" for port in tls_ports)
        ca = {"enabled": True, "server_ca_pem": str(tls_files.ca)}
        base = {
            "engine": {
                "type": "redis",
                "redis": {"cluster_address": [seeds], "prefix": "tc", "tls": ca},
            }
        }
        engine = engine_from_config(load_config(None, env={}, base=base).config)
        events = Events()
        await engine.start(events)
        try:
            channels = [f"chat:c{n}" for n in range(6)]  # spread over the masters
            for channel in channels:
                await engine.subscribe(channel)
            for n, channel in enumerate(channels):
                await engine.publish(channel, pub(n), HISTORY)
            await wait_for(lambda: len(events.publications) == len(channels), 10)
            for n, channel in enumerate(channels):
                page = await engine.history(channel, HistoryQuery(limit=-1), HISTORY)
                assert [p.data for p in page.publications] == [pub(n).data]
        finally:
            await engine.close()
    finally:
        cluster.stop()


async def test_nats_tls_against_a_server_without_tls_is_an_outage_saying_so(
    nats_server: NatsProcess,  # noqa: F811
    tls_files: TlsFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """nats-py would talk in the clear to a server that does not require TLS: with
    broker.nats.tls enabled that is refused (unavailable, one line), not ignored."""
    base = {
        "broker": {
            "enabled": True,
            "type": "nats",
            "nats": {
                "url": nats_server.url,
                "prefix": f"n{uuid.uuid4().hex[:8]}",
                "tls": {"enabled": True, "server_ca_pem": str(tls_files.ca)},
            },
        }
    }
    broker = engine_from_config(load_config(None, env={}, base=base).config)
    with caplog.at_level(logging.INFO):
        await broker.start(Events())
        try:
            await wait_for(lambda: any("does not require TLS" in m for m in caplog.messages), 10)
            assert not broker.available
        finally:
            await broker.close()
    assert not [r for r in caplog.records if r.exc_info]


async def test_nats_jetstream_consumer_over_mutual_tls(
    tmp_path: Path,
    own_redis: RedisProcess,  # noqa: F811
    tls_files: TlsFiles,
) -> None:
    """A ``hubbub serve`` node applies commands it reads from JetStream through a
    nats-server that requires TLS and a client certificate (consumers[].nats_jetstream.tls)."""
    import nats

    from tests.cluster_fixtures import Node
    from tests.test_consumers import eventually, history_numbers, nats_consumer, publish

    store = tmp_path / "js"
    store.mkdir()
    server = NatsProcess(
        store=str(store),
        extra=(
            "--tls",
            *("--tlscert", str(tls_files.cert), "--tlskey", str(tls_files.key)),
            "--tlsverify",
            *("--tlscacert", str(tls_files.ca)),
        ),
    )
    server.start()
    node = None
    nc = await nats.connect(server.url, tls=tls_files.client_context(with_certificate=True))
    try:
        js = nc.jetstream()
        await js.add_stream(name="COMMANDS", subjects=["commands.>"])
        extra = nats_consumer(server.url)
        extra["consumers"][0]["nats_jetstream"]["tls"] = {
            "enabled": True,
            "server_ca_pem": str(tls_files.ca),
            "cert_pem": str(tls_files.client_cert),
            "key_pem": str(tls_files.client_key),
        }
        node = Node(tmp_path, "n1", [own_redis.address], "jstls", config=extra)
        await node.start()

        async def fetching() -> bool:
            try:
                info = await js.consumer_info("COMMANDS", "hubbub")
            except nats.js.errors.NotFoundError:
                return False
            return (info.num_waiting or 0) >= 1

        await eventually(fetching)
        for n in range(3):
            await js.publish("commands.a", publish(n), headers={"centrifugo-method": "publish"})

        async def applied() -> bool:
            return sorted(await history_numbers(node)) == [0, 1, 2]

        await eventually(applied)
        assert "Traceback" not in node.log()
    finally:
        if node is not None:
            node.stop()
        await nc.close()
        server.stop()
