"""Read a config file, the environment and overrides into one validated ``Config``.

Rule: values are layered file < ``HUBBUB_*`` environment < overrides, then
converted field by field against the model. Every bad value is a problem
naming its dotted key; loading goes on past a problem (a bad value keeps its
default, combinations that involve it are not checked) so that one
``ConfigError`` reports every problem found. A Centrifugo option hubbub does
not implement is accepted with one warning; any other unknown key is an
error. Nothing is read from the environment at import time.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import ipaddress
import json
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubbub.config.backend import ChannelProxyConfig, ProxyGrpcOptions, ProxyOptions, StrPairs
from hubbub.config.backend_checks import check_backend
from hubbub.config.durations import parse_duration
from hubbub.config.durations import show as _show
from hubbub.config.engine_checks import check_broker, check_redis, check_routing
from hubbub.config.model import (
    DATA_FORMATS,
    AdminConfig,
    BrokerConfig,
    ChannelOptions,
    ClientConfig,
    Config,
    ConsumerConfig,
    EngineConfig,
    HttpApiConfig,
    HttpServerConfig,
    LogConfig,
    Namespace,
    NatsBrokerConfig,
    PresenceManagerConfig,
    PrometheusConfig,
    RedisConfig,
    RpcConfig,
    SubscriptionTokenConfig,
    TokenConfig,
    UniWebSocketConfig,
    WebSocketConfig,
)
from hubbub.config.streams import check_streams
from hubbub.config.transport import check_transport  # TLS and websocket.* (issue 10)
from hubbub.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "LoadedConfig",
    "connect_warnings",
    "env_var_name",
    "load_config",
    "parse_duration",
]

ENV_PREFIX = "HUBBUB_"
# Centrifugo's levels (any case), and "warning" as Python spells it.
LOG_LEVELS = ("none", "trace", "debug", "info", "warn", "warning", "error", "fatal")
LOG_FORMATS = ("text", "json")
NAMESPACE_NAME_RE = re.compile(r"^[-a-zA-Z0-9_.]{2,}$")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TOKEN_IGNORED = _names("audience_regex issuer_regex user_id_claim")

# Centrifugo v6 options hubbub accepts but does not implement (one warning each).
# A name stands for its whole subtree.
_IGNORED: dict[type, frozenset[str]] = {
    Config: _names(
        """swagger debug opentelemetry graphite usage_stats
        grpc_api unified_proxy uni_grpc webtransport shutdown node
        map_broker dev init pid_file enable_unreleased_features"""
    ),
    HttpServerConfig: _names(""),
    HttpApiConfig: _names("handler_prefix external error_mode"),
    ClientConfig: _names(
        """connection_limit
        connection_rate_limit concurrency disallow_anonymous_connection_tokens
        allowed_delta_types expired_sub_close_delay presence_update_interval
        channel_position_check_delay channel_position_max_time_lag
        connect_include_server_time insecure_skip_token_signature_verify
        user_id_http_header subscribe_to_user_personal_channel
        connect_code_to_unidirectional_disconnect"""
    ),
    TokenConfig: _TOKEN_IGNORED,
    SubscriptionTokenConfig: _TOKEN_IGNORED,
    ChannelProxyConfig: _names("subscribe_stream cache_empty state"),
    ChannelOptions: _names(
        """subscribe_stream_proxy_enabled subscribe_stream_proxy_name
        subscribe_stream_proxy_bidirectional subscribe_stream_bidirectional
        allow_tags_filter batch_max_size batch_max_delay batch_flush_latest"""
    ),
    ProxyOptions: _names("emulated_headers"),
    ProxyGrpcOptions: _names("static_metadata"),
    RpcConfig: _names("ping ping_method"),
    # Buffer sizes tune gorilla/websocket; hubbub's writes are not per-message
    # (slow clients are cut by client.queue_max_size, not a write timeout).
    WebSocketConfig: _names(
        "read_buffer_size write_buffer_size use_write_buffer_pool write_timeout"
    ),
    LogConfig: _names(""),
    AdminConfig: _names("web_path web_proxy_address"),
    PrometheusConfig: _names(
        "instrument_http_handlers recovered_publications_histogram native_histograms"
    ),
    UniWebSocketConfig: _names(
        """compression compression_min_size compression_level read_buffer_size
        use_write_buffer_pool write_buffer_size write_timeout join_push_messages"""
    ),
    EngineConfig: _names(""),
    BrokerConfig: _names("name redis"),
    NatsBrokerConfig: _names("write_timeout"),
    # RESP2 is what hubbub speaks anyway; the presence layout and reads from
    # replicas are Centrifugo optimisations (reads stay on the master here).
    RedisConfig: _names("force_resp2 presence_hash_field_ttl presence_user_mapping replica_client"),
    PresenceManagerConfig: _names("redis"),
    ConsumerConfig: _names(
        """postgresql kafka nats_jetstream redis_stream google_pub_sub aws_sqs
        azure_service_bus"""
    ),
}


def _ignored(cls: type) -> frozenset[str]:
    """The ignored option names of ``cls``, including those of its base classes."""
    return frozenset().union(*(_IGNORED.get(base, frozenset()) for base in cls.__mro__))


ENGINE_TYPES = ("memory", "redis")

_INT_RANGES: dict[str, tuple[int, int]] = {
    "http_server.port": (0, 65535),
    "engine.redis.db": (0, 15),
    "websocket.compression_level": (-2, 9),  # zlib's levels, -2: Huffman only
}
_STR_LIST = tuple[str, ...]
_NAMESPACES = tuple[Namespace, ...]
_T = typing.TypeVar("_T")


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """The validated configuration and the warnings found while loading it."""

    config: Config
    warnings: tuple[str, ...] = ()


class _Problems:
    """The problems found while loading, and the keys they are about."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def __bool__(self) -> bool:
        return bool(self.errors)

    def add(self, error: ConfigError) -> None:
        self.errors.extend(error.problems)

    def fail(self, key: str, message: str) -> None:
        self.add(ConfigError(key, message))

    def about(self, *keys: str) -> bool:
        """Whether a problem was found in one of ``keys`` (or inside it)."""
        return any(
            error.key == key or error.key.startswith((key + ".", key + "["))
            for error in self.errors
            for key in keys
        )


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    base: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Load ``path`` (optional), apply ``HUBBUB_*`` variables and ``overrides``, validate.

    ``env=None`` reads ``os.environ``. ``overrides`` maps dotted keys to typed
    values (``{"http_server.port": 9000}``); a ``None`` value means "not given".
    ``base`` is configuration data used when no ``path`` is given (a preset).
    """
    warnings: list[str] = []
    problems = _Problems()
    if path is not None:
        raw: dict[str, Any] = _read_file(Path(path))
    else:
        raw = copy.deepcopy(dict(base or {}))
    _apply_env(raw, os.environ if env is None else env, warnings, problems)
    for key, value in (overrides or {}).items():
        if value is not None:
            try:
                _set_dotted(raw, key, value)
            except ConfigError as exc:
                problems.add(exc)
    unknown: list[str] = []
    _scan(Config, raw, "", unknown, warnings)
    if unknown:
        unknown.sort()
        problems.fail(unknown[0], _unknown_message(unknown))
    config = _build(Config, raw, "", problems)
    warnings.extend(_validate(config, problems))
    if problems:
        raise ConfigError.combine(problems.errors)
    return LoadedConfig(config, tuple(dict.fromkeys(warnings)))


def connect_warnings(config: Config) -> list[str]:
    """Warnings about a configuration no client could ever connect with.

    For ``hubbub serve`` and ``checkconfig``: an application that embeds the
    hub may still let clients in with an ``on_connect`` hook.
    """
    client = config.client
    if (
        client.token.configured
        or client.allow_anonymous_connect_without_token
        or client.insecure
        or client.proxy.connect.enabled  # the backend decides who connects
    ):
        return []
    return [
        "no client can connect: set a token key (client.token.hmac_secret_key, "
        "rsa_public_key, ecdsa_public_key or jwks_public_endpoint), "
        "client.proxy.connect or client.allow_anonymous_connect_without_token"
    ]


def env_var_name(key: str) -> str:
    """``http_server.port`` -> ``HUBBUB_HTTP_SERVER_PORT``."""
    return ENV_PREFIX + key.upper().replace(".", "_")


# ---------------------------------------------------------------- file

_PARSERS = {".json": "JSON", ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}


def _yaml(text: str) -> object:
    """YAML parsed; a syntax error raised as ValueError. PyYAML is imported here, for
    YAML files only (it costs start-up time)."""
    import yaml  # type: ignore[import-untyped, unused-ignore]

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"can not read config file {path}: {exc.strerror}") from None
    fmt = _PARSERS.get(path.suffix.lower(), "JSON")
    try:
        text = data.decode("utf-8")
        if fmt == "TOML":
            parsed: object = tomllib.loads(text)
        elif fmt == "YAML":
            parsed = _yaml(text) if text.strip() else {}
        else:
            parsed = json.loads(text) if text.strip() else {}
    except ValueError as exc:  # JSON, TOML, YAML (_yaml) and Unicode errors
        raise ConfigError("", f"can not parse config file {path} as {fmt}: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("", f"config file {path}: the top level must be an object")
    return parsed


# ---------------------------------------------------------------- schema


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a model dataclass (cached)."""
    types = _FIELD_TYPES.get(cls)
    if types is None:
        hints = typing.get_type_hints(cls)
        types = _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return types


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _section_list(tp: Any) -> type | None:
    """The item class of a ``tuple[Section, ...]`` field (a list of objects), else None."""
    if typing.get_origin(tp) is tuple and tp != _NAMESPACES:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and _is_section(args[0]):
            item: type = args[0]
            return item
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _sections(cls: type = Config, path: str = "") -> Iterator[tuple[str, type]]:
    yield path, cls
    for name, tp in _field_types(cls).items():
        if _is_section(tp):
            yield from _sections(tp, _join(path, name))


@functools.cache
def _env_leaves() -> dict[str, tuple[str, Any]]:
    """Env var name -> (dotted key, type) for every leaf of the model."""
    return {
        env_var_name(_join(path, name)): (_join(path, name), tp)
        for path, cls in _sections()
        for name, tp in _field_types(cls).items()
        if not _is_section(tp)
    }


@functools.cache
def _env_ignored() -> dict[str, str]:
    """Env var prefix -> dotted key of an ignored Centrifugo option."""
    return {
        env_var_name(_join(path, name)): _join(path, name)
        for path, cls in _sections()
        for name in _ignored(cls)
    }


# ---------------------------------------------------------------- layering


def _set_dotted(raw: dict[str, Any], key: str, value: object) -> None:
    if not isinstance(key, str) or not key or "[" in key:
        raise ConfigError(str(key), "an override key must be a dotted name like http_server.port")
    *parents, leaf = key.split(".")
    node = raw
    for i, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parents[: i + 1]), f"expected an object, got {_show(child)}")
        node = child
    node[leaf] = value


def _apply_env(
    raw: dict[str, Any], env: Mapping[str, str], warnings: list[str], problems: _Problems
) -> None:
    leaves = _env_leaves()
    for var in sorted(name for name in env if name.startswith(ENV_PREFIX)):
        if var in leaves:
            key, tp = leaves[var]
            try:
                _set_dotted(raw, key, _from_env(tp, env[var], key, var))
            except ConfigError as exc:
                problems.add(exc)
            continue
        ignored = next(
            (
                key
                for prefix, key in _env_ignored().items()
                if var == prefix or var.startswith(prefix + "_")
            ),
            None,
        )
        if ignored is not None:
            warnings.append(f"{ignored} is a Centrifugo option hubbub ignores (from {var})")
        else:
            warnings.append(f"unknown environment variable {var}: it matches no option")


_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _from_env(tp: Any, text: str, key: str, var: str) -> object:
    if tp is bool:
        word = text.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise ConfigError(key, f"expected true or false, got {_show(text)} (from {var})")
    if tp is int:
        try:
            return int(text.strip())
        except ValueError:
            wanted = _int_wanted(key)
            raise ConfigError(key, f"expected {wanted}, got {_show(text)} (from {var})") from None
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return text  # a Go duration string, parsed with the rest
    if tp == _STR_LIST and not text.lstrip().startswith("["):
        return text.split()
    if tp in (_STR_LIST, _NAMESPACES, StrPairs) or _section_list(tp) is not None:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(key, f"{var} is not valid JSON: {exc}") from None
    return text


# ---------------------------------------------------------------- unknown keys


def _scan(cls: type, raw: object, path: str, unknown: list[str], warnings: list[str]) -> None:
    """Collect unknown keys and warn about ignored ones; types are checked later."""
    if not isinstance(raw, dict):
        return
    types = _field_types(cls)
    for name, value in raw.items():
        key = _join(path, str(name))
        tp = types.get(name)
        if tp is None:
            if name in _ignored(cls):
                warnings.append(f"{key} is a Centrifugo option hubbub ignores")
            elif not (cls is ChannelOptions and name == "name" and path.endswith("]")):
                unknown.append(key)
        elif _is_section(tp):
            _scan(tp, value, key, unknown, warnings)
        elif tp == _NAMESPACES and isinstance(value, list):
            for i, item in enumerate(value):
                _scan(ChannelOptions, item, f"{key}[{i}]", unknown, warnings)
        elif (item_cls := _section_list(tp)) is not None and isinstance(value, list):
            for i, item in enumerate(value):
                _scan(item_cls, item, f"{key}[{i}]", unknown, warnings)


def _unknown_message(unknown: list[str]) -> str:
    """``unknown keys: a, b`` plus a guess for near misses of a known key."""
    leaves = {key.rsplit(".", 1)[-1] for key, _ in _env_leaves().values()}
    guesses = []
    for key in unknown:
        parent, _, leaf = key.rpartition(".")
        match = difflib.get_close_matches(leaf, leaves, n=1, cutoff=0.8)
        if match:
            guesses.append(_join(parent, match[0]))
    text = "unknown keys: " + ", ".join(unknown)
    return text + (f" (did you mean {', '.join(guesses)}?)" if guesses else "")


# ---------------------------------------------------------------- conversion


def _build(cls: type[_T], raw: object, path: str, problems: _Problems) -> _T:
    """``cls`` from ``raw``; a field with a bad value is a problem and keeps its default."""
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected an object, got {_show(raw)}")
    types = _field_types(cls)
    kwargs = {}
    for name, value in raw.items():
        if name in types:
            try:
                kwargs[name] = _convert(types[name], value, _join(path, name), problems)
            except ConfigError as exc:
                problems.add(exc)
    return cls(**kwargs)


def _int_wanted(key: str) -> str:
    low, high = _INT_RANGES.get(key, (0, None))
    return f"an integer {low}..{high}" if high is not None else f"an integer >= {low}"


def _convert(tp: Any, value: object, key: str, problems: _Problems) -> object:
    if _is_section(tp):
        return _build(tp, value, key, problems)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {_show(value)}")
        return value
    if tp is int:
        low, high = _INT_RANGES.get(key, (0, None))
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(key, f"expected {_int_wanted(key)}, got {_show(value)}")
        if high is not None and value > high:
            raise ConfigError(key, f"expected {_int_wanted(key)}, got {_show(value)}")
        return value
    if tp is float:
        seconds = parse_duration(value, key=key)  # type: ignore[arg-type]
        if seconds < 0:
            raise ConfigError(key, f"expected a duration >= 0, got {_show(value)}")
        return seconds
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_show(value)}")
        if key == "log.level":
            return value.lower()  # Centrifugo accepts any case
        return value
    if tp == _STR_LIST:
        if key in (
            "engine.redis.address",
            "engine.redis.cluster_address",
            "engine.redis.sentinel_address",
        ) and isinstance(value, str):
            value = [value]  # Centrifugo takes one address as a string
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(key, f"expected a list of strings, got {_show(value)}")
        return tuple(value)
    if tp == _NAMESPACES:
        return _namespaces(value, key, problems)
    if tp == StrPairs:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(key, f"expected an object of strings, got {_show(value)}")
        return tuple((str(k), v) for k, v in value.items())
    item_cls = _section_list(tp)
    if item_cls is not None:
        if not isinstance(value, list):
            raise ConfigError(key, f"expected a list of objects, got {_show(value)}")
        return tuple(
            _build(item_cls, item, f"{key}[{i}]", problems) for i, item in enumerate(value)
        )
    raise TypeError(f"no converter for {key}: {tp!r}")  # a model field of a new type


def _namespaces(value: object, key: str, problems: _Problems) -> tuple[Namespace, ...]:
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of namespace objects, got {_show(value)}")
    result = []
    for i, item in enumerate(value):
        item_key = f"{key}[{i}]"
        if not isinstance(item, dict):
            problems.fail(item_key, f"expected an object, got {_show(item)}")
            continue
        if "name" not in item:
            problems.fail(f"{item_key}.name", "missing: every namespace needs a name")
            continue
        name = item["name"]
        if not isinstance(name, str):
            problems.fail(f"{item_key}.name", f"expected a string, got {_show(name)}")
            continue
        fields = {k: v for k, v in item.items() if k != "name"}
        result.append(Namespace(name, _build(ChannelOptions, fields, item_key, problems)))
    return tuple(result)


# ---------------------------------------------------------------- combinations


def _validate(config: Config, problems: _Problems) -> list[str]:
    """Check value sets and combinations (each problem once); return the warnings.

    A combination is not checked when one of its keys already has a problem:
    its value is the default, and a complaint about it would mislead.
    """
    warnings: list[str] = []
    channel = config.channel
    if not channel.namespace_boundary and not problems.about("channel.namespace_boundary"):
        problems.fail("channel.namespace_boundary", "must not be empty")
    meta_ttl = channel.history_meta_ttl
    if channel.publication_data_format not in DATA_FORMATS:
        problems.fail(
            "channel.publication_data_format", _data_format(channel.publication_data_format)
        )
    _check_options(channel.without_namespace, "channel.without_namespace", meta_ttl, problems)
    if not problems.about("channel.namespaces"):
        seen: set[str] = set()
        for i, ns in enumerate(channel.namespaces):
            key = f"channel.namespaces[{i}]"
            if not NAMESPACE_NAME_RE.match(ns.name):
                pattern = NAMESPACE_NAME_RE.pattern
                problems.fail(
                    f"{key}.name",
                    f"invalid namespace name {_show(ns.name)}: it must match {pattern}",
                )
            elif ns.name in seen:
                problems.fail(f"{key}.name", f"duplicate namespace name {_show(ns.name)}")
            seen.add(ns.name)
            _check_options(ns.options, key, meta_ttl, problems)
    else:
        # A malformed entry shifted the list: check the options of each, not the names.
        for i, ns in enumerate(channel.namespaces):
            _check_options(ns.options, f"channel.namespaces[{i}]", meta_ttl, problems)

    client = config.client
    if client.pong_timeout >= client.ping_interval and not problems.about(
        "client.pong_timeout", "client.ping_interval"
    ):
        problems.fail(
            "client.pong_timeout",
            f"must be less than client.ping_interval ({client.ping_interval:g}s), "
            f"got {client.pong_timeout:g}s",
        )
    server = config.http_server
    if server.internal_port and server.internal_port == server.port:
        problems.fail(
            "http_server.internal_port", f"must differ from http_server.port ({server.port})"
        )
    if client.command_rate_limit and client.command_rate_burst < 1:
        problems.fail("client.command_rate_burst", "must be at least 1 when a rate is set")
    for i, proxy in enumerate(server.trusted_proxies):
        try:
            ipaddress.ip_network(proxy.strip(), strict=False)
        except ValueError:
            problems.fail(
                f"http_server.trusted_proxies[{i}]",
                f"expected an IP address or a network like 10.0.0.0/8, got {_show(proxy)}",
            )
    # The API (and admin, metrics) listen on the internal address when there is an
    # internal port.
    internal_address = server.internal_address if server.internal_port else server.address
    admin_address = server.address if config.admin.external else internal_address
    for key, on, address in (
        ("client.insecure", client.insecure, server.address),
        ("http_api.insecure", config.http_api.insecure, internal_address),
        ("admin.insecure", config.admin.enabled and config.admin.insecure, admin_address),
    ):
        if on and not _is_loopback(address):
            problems.fail(
                key,
                "is only for local development: the address it is served on must be a "
                f"loopback address (127.0.0.1, ::1, localhost), not {_show(address)}",
            )
    _check_log(config, problems)
    if config.engine.type not in ENGINE_TYPES:
        problems.fail(
            "engine.type", f'{_show(config.engine.type)} is unknown: use "memory" or "redis"'
        )
    warnings += _check_admin(config.admin, problems)
    # The other rooms' checks stop at their first problem; it joins the others.
    checks: tuple[Callable[[Config], list[str] | None], ...] = (
        _redis,
        check_broker,
        check_routing,
        check_backend,
        check_transport,
        check_streams,
    )
    for check in checks:
        try:
            warnings += check(config) or []  # engines, proxies, TLS, streams
        except ConfigError as exc:
            problems.add(exc)
    for key, prefix in (
        ("prometheus.handler_prefix", config.prometheus.handler_prefix),
        ("health.handler_prefix", config.health.handler_prefix),
    ):
        if not prefix.startswith("/"):
            problems.fail(key, f'must start with "/", got {_show(prefix)}')

    api = config.http_api
    if not api.key and not api.insecure and not api.disabled:
        warnings.append(
            "http_api.key is empty: the HTTP API rejects every request until you set it"
        )
    return warnings


def _check_log(config: Config, problems: _Problems) -> None:
    log = config.log
    if log.level not in LOG_LEVELS:
        problems.fail(
            "log.level", f"expected one of {', '.join(LOG_LEVELS)}, got {_show(log.level)}"
        )
    if log.format not in LOG_FORMATS:
        problems.fail(
            "log.format", f"expected one of {', '.join(LOG_FORMATS)}, got {_show(log.format)}"
        )


#: Shorter admin secrets could be guessed from a token offline.
MIN_ADMIN_SECRET = 16


def _check_admin(admin: AdminConfig, problems: _Problems) -> list[str]:
    """The admin UI is refused unless it is protected: a password and a token
    secret, or ``admin.insecure`` on a loopback address (checked above)."""
    prefix = admin.handler_prefix
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        problems.fail(
            "admin.handler_prefix", f'must start with "/" and not end with one, got {_show(prefix)}'
        )
    if not admin.enabled or admin.insecure:
        return []
    for key, value in (("admin.password", admin.password), ("admin.secret", admin.secret)):
        if not value:
            problems.fail(
                key,
                "is required when admin.enabled is true: set admin.password and admin.secret "
                "(or admin.insecure for local development on a loopback address)",
            )
    if admin.secret and len(admin.secret) < MIN_ADMIN_SECRET:
        return [
            f"admin.secret is shorter than {MIN_ADMIN_SECRET} characters: admin tokens "
            "signed with it could be forged (hubbub genconfig makes a long one)"
        ]
    return []


def _redis(config: Config) -> None:
    check_redis(config.engine.redis)


def _check_options(
    options: ChannelOptions, path: str, global_meta_ttl: float, problems: _Problems
) -> None:
    if problems.about(path):
        return  # a value of this section is wrong: its combinations are not checked
    if options.history_size > 0 and options.history_ttl == 0:
        problems.fail(f"{path}.history_ttl", "history_size is set: history_ttl is required too")
    if options.history_ttl > 0 and options.history_size == 0:
        problems.fail(f"{path}.history_size", "history_ttl is set: history_size is required too")
    meta_ttl = options.history_meta_ttl or global_meta_ttl
    if options.history_ttl > meta_ttl:
        problems.fail(
            f"{path}.history_ttl",
            f"must not exceed the history meta ttl ({meta_ttl:g}s), got {options.history_ttl:g}s",
        )
    for name in ("force_recovery", "allow_recovery"):
        if getattr(options, name) and not options.history_enabled:
            problems.fail(
                f"{path}.{name}", "recovery needs history: set history_size and history_ttl"
            )
    if options.force_recovery_mode not in ("stream", "cache"):
        problems.fail(
            f"{path}.force_recovery_mode",
            f'expected "stream" or "cache", got {_show(options.force_recovery_mode)}',
        )
    if options.publication_data_format not in DATA_FORMATS:
        problems.fail(
            f"{path}.publication_data_format", _data_format(options.publication_data_format)
        )
    if options.channel_regex:
        try:
            re.compile(options.channel_regex)
        except re.error as exc:
            problems.fail(f"{path}.channel_regex", f"invalid regular expression: {exc}")


def _data_format(value: str) -> str:
    return f'expected "json", "json_object", "binary" or "", got {_show(value)}'


def _is_loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False
