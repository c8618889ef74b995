"""Proxy configuration, routing and schema: checked at startup, resolved once, in sync.

Configuration errors name the key (an enabled proxy without endpoint, a
namespace naming a proxy that does not exist, a bad endpoint, ...); the
router gives each namespace its proxies and shares one client per named
proxy; the JSON Structs and the protobuf schema have the same fields; the
committed generated module is what protoc makes of proxy.proto; answers are
normalized (base64 decoded, pretty JSON made one line, null as absent).
"""

from __future__ import annotations

import base64
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hubbub.config.loader import load_config
from hubbub.errors import ConfigError
from hubbub.protocol.payload import Binary
from hubbub.proxy import ProxyRouter
from hubbub.proxy import messages as m
from hubbub.proxy.client import RESPONSES
from hubbub.proxy.grpc_transport import _METHODS, from_protobuf, to_protobuf
from hubbub.proxy.grpcproto import proxy_pb2 as pb

ROOT = Path(__file__).parents[1]
HTTP = "http://127.0.0.1:9/x"


def load(data: dict[str, Any]) -> Any:
    return load_config(None, env={}, base=data)


def error_key(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        load(data)
    return info.value.key


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"client": {"proxy": {"connect": {"enabled": True}}}}, "client.proxy.connect.endpoint"),
        (
            {"client": {"proxy": {"refresh": {"enabled": True, "endpoint": "ftp://x/"}}}},
            "client.proxy.refresh.endpoint",
        ),
        (
            {"client": {"proxy": {"connect": {"enabled": True, "endpoint": "grpc://h"}}}},
            "client.proxy.connect.endpoint",
        ),
        (
            {"client": {"proxy": {"connect": {"enabled": True, "endpoint": HTTP, "timeout": 0}}}},
            "client.proxy.connect.timeout",
        ),
        ({"client": {"connect_proxy_name": "nope"}}, "client.connect_proxy_name"),
        (
            {"channel": {"without_namespace": {"subscribe_proxy_enabled": True}}},
            "channel.without_namespace.subscribe_proxy_name",
        ),
        (
            {
                "channel": {
                    "namespaces": [
                        {"name": "ns", "publish_proxy_enabled": True, "publish_proxy_name": "x"}
                    ]
                }
            },
            "channel.namespaces[0].publish_proxy_name",
        ),
        ({"proxies": [{"name": "a", "endpoint": HTTP}]}, "proxies[0].name"),
        (
            {"proxies": [{"name": "aa", "endpoint": HTTP}, {"name": "aa", "endpoint": HTTP}]},
            "proxies[1].name",
        ),
        # A proxy without endpoint only fails where something uses it.
        (
            {
                "proxies": [{"name": "aa"}],
                "channel": {
                    "namespaces": [
                        {
                            "name": "ns",
                            "subscribe_proxy_enabled": True,
                            "subscribe_proxy_name": "aa",
                        }
                    ],
                },
            },
            "channel.namespaces[0].subscribe_proxy_name",
        ),
        (
            {
                "proxies": [{"name": "aa"}],
                "rpc": {"without_namespace": {"proxy_enabled": True, "proxy_name": "aa"}},
            },
            "rpc.without_namespace.proxy_name",
        ),
        (
            {"proxies": [{"name": "aa"}], "client": {"connect_proxy_name": "aa"}},
            "client.connect_proxy_name",
        ),
        (
            {"proxies": [{"name": "aa", "endpoint": HTTP, "http_headers": ["Bad Header"]}]},
            "proxies[0].http_headers[0]",
        ),
        (
            {
                "proxies": [
                    {
                        "name": "aa",
                        "endpoint": HTTP,
                        "http": {"status_to_code_transforms": [{"status_code": 404}]},
                    }
                ]
            },
            "proxies[0].http.status_to_code_transforms[0]",
        ),
        (
            {"rpc": {"without_namespace": {"proxy_enabled": True}}},
            "rpc.without_namespace.proxy_name",
        ),
        (
            {
                "rpc": {
                    "proxy": {
                        "endpoint": "grpc://127.0.0.1:9",
                        "grpc": {"tls": {"enabled": True, "insecure_skip_verify": True}},
                    }
                }
            },
            "rpc.proxy.grpc.tls.insecure_skip_verify",
        ),
        ({"rpc": {"namespaces": [{"name": "x"}]}}, "rpc.namespaces[0].name"),
        ({"webhooks": {"enabled": True, "endpoint": HTTP, "secret": "short"}}, "webhooks.secret"),
        (
            {"webhooks": {"enabled": True, "endpoint": HTTP, "secret": "s" * 32, "events": ["x"]}},
            "webhooks.events[0]",
        ),
        (
            {
                "webhooks": {
                    "enabled": True,
                    "endpoint": HTTP,
                    "secret": "s" * 32,
                    "queue_max_length": 0,
                }
            },
            "webhooks.queue_max_length",
        ),
        (
            {
                "webhooks": {
                    "enabled": True,
                    "endpoint": HTTP,
                    "secret": "s" * 32,
                    "queue_max_age": "-1s",
                }
            },
            "webhooks.queue_max_age",
        ),
    ],
)
def test_configuration_errors_name_the_key(data: dict[str, Any], key: str) -> None:
    assert error_key(data) == key


def test_a_named_proxy_without_endpoint_nothing_uses_loads_with_a_warning() -> None:
    loaded = load({"proxies": [{"name": "aa"}]})
    assert "proxies[0].endpoint is empty: nothing can use proxy 'aa'" in loaded.warnings


def test_a_full_centrifugo_proxy_configuration_loads() -> None:
    loaded = load(
        {
            "client": {
                "proxy": {
                    "connect": {
                        "enabled": True,
                        "endpoint": "grpc://127.0.0.1:9000",
                        "timeout": "500ms",
                        "http_headers": ["Cookie"],
                        "binary_encoding": True,
                        "grpc": {"credentials_key": "token", "credentials_value": "v"},
                    }
                },
                "refresh_proxy_name": "named",
            },
            "channel": {
                "proxy": {"subscribe": {"endpoint": HTTP}},
                "namespaces": [
                    {"name": "ns", "subscribe_proxy_enabled": True},
                    {"name": "other", "publish_proxy_enabled": True, "publish_proxy_name": "named"},
                ],
            },
            "rpc": {
                "proxy": {"endpoint": HTTP},
                "namespaces": [{"name": "rp", "proxy_enabled": True, "proxy_name": "named"}],
            },
            "proxies": [
                {
                    "name": "named",
                    "endpoint": HTTP,
                    "http": {"static_headers": {"X-A": "b"}},
                    "grpc_metadata": ["x"],
                }
            ],
        }
    )
    config = loaded.config
    assert config.client.proxy.connect.timeout == 0.5
    assert config.proxies[0].http.static_headers == (("X-A", "b"),)
    assert config.rpc.namespaces[0].proxy_name == "named"
    assert any("grpc_metadata has no effect" in w for w in loaded.warnings)


def test_proxies_from_the_environment_as_json() -> None:
    env = {"HUBBUB_PROXIES": '[{"name": "env-proxy", "endpoint": "http://127.0.0.1:1/x"}]'}
    config = load_config(None, env=env).config
    assert config.proxies[0].name == "env-proxy"


# --- routing ---------------------------------------------------------------------------


def test_router_resolves_each_namespace_once_and_shares_named_proxies() -> None:
    config = load(
        {
            "proxies": [{"name": "shared", "endpoint": HTTP}],
            "channel": {
                "proxy": {"publish": {"endpoint": "http://127.0.0.1:9/default"}},
                "without_namespace": {"publish_proxy_enabled": True},
                "namespaces": [
                    {
                        "name": "aa",
                        "subscribe_proxy_enabled": True,
                        "subscribe_proxy_name": "shared",
                    },
                    {
                        "name": "bb",
                        "subscribe_proxy_enabled": True,
                        "subscribe_proxy_name": "shared",
                    },
                    {"name": "cc"},
                ],
            },
            "rpc": {
                "proxy": {"endpoint": "http://127.0.0.1:9/rpc"},
                "without_namespace": {"proxy_enabled": True},
                "namespaces": [{"name": "nn", "proxy_enabled": True, "proxy_name": "shared"}],
            },
        }
    ).config
    router = ProxyRouter(config)
    aa, bb = router.channel("aa"), router.channel("bb")
    assert aa.subscribe is not None and aa.subscribe is bb.subscribe
    assert aa.publish is None and aa.sub_refresh is None
    assert router.channel("cc").subscribe is None
    default = router.channel("")
    assert default.publish is not None
    assert default.publish.endpoint == "http://127.0.0.1:9/default"
    assert router.connect is None and router.refresh is None
    rpc_ns = router.rpc("nn:method")
    assert rpc_ns is not None and rpc_ns.name == "shared"
    plain = router.rpc("method")
    assert plain is not None and plain.endpoint == "http://127.0.0.1:9/rpc"
    # An unknown prefix is a method without namespace (as before RPC namespaces existed).
    assert router.rpc("zz:method") is plain


# --- schema ---------------------------------------------------------------------------


def test_generated_module_is_in_sync_with_proxy_proto() -> None:
    check = subprocess.run(
        [sys.executable, "scripts/gen_proxy_proto.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("request_type", list(_METHODS))
def test_structs_and_protobuf_have_the_same_fields(request_type: type[msgspec.Struct]) -> None:
    _, request_pb, response_pb = _METHODS[request_type]
    assert set(request_type.__struct_fields__) == {f.name for f in request_pb.DESCRIPTOR.fields}
    result_pb = response_pb.DESCRIPTOR.fields_by_name["result"].message_type
    result_field = msgspec.structs.fields(RESPONSES[request_type])[0]  # result: X | None
    result_struct = typing.get_args(result_field.type)[0]
    assert set(result_struct.__struct_fields__) == {f.name for f in result_pb.fields}


def test_protobuf_round_trip_keeps_payloads_and_maps() -> None:
    request = m.PublishRequest(
        client="c", transport="websocket", protocol="json", data=msgspec.Raw(b'{"a":1}')
    )
    message = to_protobuf(request, pb.PublishRequest)
    assert message.data == b'{"a":1}' and message.client == "c"
    response = pb.ConnectResponse(
        result=pb.ConnectResult(
            user="u",
            expire_at=5,
            data=b"[1]",
            subs={"ch": pb.SubscribeOptions(info=b'{"i":1}')},
        )
    )
    decoded = msgspec.convert(from_protobuf(response), m.ConnectResponse)
    assert decoded.result is not None
    assert decoded.result.user == "u" and decoded.result.expire_at == 5
    assert bytes(decoded.result.data) == b"[1]"
    assert decoded.result.subs is not None
    assert bytes(decoded.result.subs["ch"].info) == b'{"i":1}'


# --- normalizing answers ----------------------------------------------------------------


def test_answers_are_normalized_to_one_line_json() -> None:
    b64 = base64.b64encode(b'{\n  "x": [1,\n 2]\n}').decode()
    result = m.ConnectResult(
        user="u",
        b64data=b64,
        info=msgspec.Raw(b'{\n "pretty": true\n}'),
        meta=msgspec.Raw(b"null"),
    )
    m.normalize_result(result, checked=True)
    assert bytes(result.data) == b'{"x":[1,2]}'
    assert bytes(result.info) == b'{"pretty":true}'
    assert result.meta is m.NO_DATA and result.b64data == ""


@pytest.mark.parametrize(
    "result",
    [
        m.RPCResult(b64data="not base64!"),
        m.RPCResult(data=msgspec.Raw(b"{not json")),
    ],
)
def test_malformed_payloads_are_refused(result: m.RPCResult) -> None:
    with pytest.raises(m.MalformedAnswer):
        m.normalize_result(result, checked=False)


def test_binary_answers_are_binary_payloads() -> None:
    """b64data that is not JSON is kept as bytes, for Protobuf clients (it used to be
    refused as malformed: hubbub's clients all spoke JSON)."""
    result = m.RPCResult(b64data=base64.b64encode(b"\x00binary").decode())
    m.normalize_result(result, checked=False)
    assert type(result.data) is Binary and result.data == b"\x00binary"
    assert result.b64data == ""


def test_binary_encoding_moves_data_to_b64data() -> None:
    request = m.PublishRequest(
        client="c", transport="websocket", protocol="json", data=msgspec.Raw(b'{"a":1}')
    )
    m.to_binary(request)
    assert request.data is m.NO_DATA
    assert base64.b64decode(request.b64data) == b'{"a":1}'
    assert msgspec.json.decode(msgspec.json.encode(request)) == {
        "client": "c",
        "transport": "websocket",
        "protocol": "json",
        "b64data": request.b64data,
    }
