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
import difflib
import functools
import json
import os
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from hubbub.config.backend import StrPairs
from hubbub.config.combinations import LOG_LEVELS, Problems, validate
from hubbub.config.durations import parse_duration
from hubbub.config.durations import show as _show
from hubbub.config.engine_checks import ACCEPTED_CONSUMERS
from hubbub.config.files import file_format, parse
from hubbub.config.model import (
    ChannelOptions,
    Config,
    Namespace,
)
from hubbub.config.parity import ignored as _ignored
from hubbub.config.parity import ignored_warning, refuse_unimplemented
from hubbub.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "LOG_LEVELS",
    "LoadedConfig",
    "connect_warnings",
    "env_var_name",
    "load_config",
    "parse_duration",
]

ENV_PREFIX = "HUBBUB_"

_INT_RANGES: dict[str, tuple[int, int]] = {
    "http_server.port": (0, 65535),
    "engine.redis.db": (0, 15),
    "map_broker.redis.db": (0, 15),
    "websocket.compression_level": (-2, 9),  # zlib's levels, -2: Huffman only
}
_STR_LIST = tuple[str, ...]
_NAMESPACES = tuple[Namespace, ...]
_T = typing.TypeVar("_T", bound=msgspec.Struct)


class LoadedConfig(msgspec.Struct, frozen=True):
    """The validated configuration and the warnings found while loading it.

    Two are equal when their configuration and warnings are: which keys set
    them (``implemented``, ``ignored``) does not count.
    """

    config: Config
    warnings: tuple[str, ...] = ()
    # The keys the file, environment and overrides set: the options hubbub
    # implements, and the Centrifugo options it accepts without implementing.
    implemented: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, LoadedConfig)
        return (self.config, self.warnings) == (other.config, other.warnings)

    def __hash__(self) -> int:
        return hash((self.config, self.warnings))


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
    problems = Problems()
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
    seen = _Seen()
    _scan(Config, raw, "", unknown, seen)
    if unknown:
        unknown.sort()
        problems.fail(unknown[0], _unknown_message(unknown))
    try:
        refuse_unimplemented(raw)
    except ConfigError as exc:
        problems.add(exc)
    config = _build(Config, raw, "", problems)
    # An enabled consumer of a type hubbub does not run gets check_consumers' warning
    # instead of the usual one for its section: one warning per key.
    said = {
        f"consumers[{i}].{c.type}"
        for i, c in enumerate(config.consumers)
        if c.enabled and c.type in ACCEPTED_CONSUMERS
    }
    warnings.extend(ignored_warning(key) for key in seen.ignored if key not in said)
    warnings.extend(validate(config, problems))
    if problems:
        raise ConfigError.combine(problems.errors)
    return LoadedConfig(
        config, tuple(dict.fromkeys(warnings)), tuple(seen.implemented), tuple(seen.ignored)
    )


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


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("", f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError("", f"can not read config file {path}: {exc.strerror}") from None
    fmt = file_format(path)
    try:
        parsed = parse(data.decode("utf-8"), fmt)
    except ValueError as exc:  # JSON, TOML, YAML and Unicode errors
        raise ConfigError("", f"can not parse config file {path} as {fmt}: {exc}") from None
    if not isinstance(parsed, dict):
        raise ConfigError("", f"config file {path}: the top level must be an object")
    return parsed


# ---------------------------------------------------------------- schema


_FIELD_TYPES: dict[type, dict[str, Any]] = {}


def _field_types(cls: type[msgspec.Struct]) -> dict[str, Any]:
    """Field name -> resolved type of a model class (cached)."""
    types = _FIELD_TYPES.get(cls)
    if types is None:
        hints = typing.get_type_hints(cls)
        types = _FIELD_TYPES[cls] = {f.name: hints[f.name] for f in msgspec.structs.fields(cls)}
    return types


def _is_section(tp: Any) -> typing.TypeGuard[type[msgspec.Struct]]:
    return isinstance(tp, type) and issubclass(tp, msgspec.Struct)


def _section_list(tp: Any) -> type[msgspec.Struct] | None:
    """The item class of a ``tuple[Section, ...]`` field (a list of objects), else None."""
    if typing.get_origin(tp) is tuple and tp != _NAMESPACES:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis and _is_section(args[0]):
            item: type[msgspec.Struct] = args[0]
            return item
    return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _sections(
    cls: type[msgspec.Struct] = Config, path: str = ""
) -> Iterator[tuple[str, type[msgspec.Struct]]]:
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
    raw: dict[str, Any], env: Mapping[str, str], warnings: list[str], problems: Problems
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


class _Seen(msgspec.Struct):
    """The keys a configuration sets, as ``_scan`` finds them."""

    implemented: list[str] = msgspec.field(default_factory=list)
    ignored: list[str] = msgspec.field(default_factory=list)


def _scan(
    cls: type[msgspec.Struct], raw: object, path: str, unknown: list[str], seen: _Seen
) -> None:
    """Sort the keys into implemented, ignored and unknown; types are checked later."""
    if not isinstance(raw, dict):
        return
    types = _field_types(cls)
    for name, value in raw.items():
        key = _join(path, str(name))
        tp = types.get(name)
        if tp is None:
            if name in _ignored(cls):
                seen.ignored.append(key)
            elif cls is ChannelOptions and name == "name" and path.endswith("]"):
                seen.implemented.append(key)
            else:
                unknown.append(key)
        elif _is_section(tp):
            _scan(tp, value, key, unknown, seen)
        elif value == [] or not isinstance(value, list):
            seen.implemented.append(key)
        elif tp == _NAMESPACES:
            for i, item in enumerate(value):
                _scan(ChannelOptions, item, f"{key}[{i}]", unknown, seen)
        elif (item_cls := _section_list(tp)) is not None:
            for i, item in enumerate(value):
                _scan(item_cls, item, f"{key}[{i}]", unknown, seen)
        else:
            seen.implemented.append(key)


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


def _build(cls: type[_T], raw: object, path: str, problems: Problems) -> _T:
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


def _convert(tp: Any, value: object, key: str, problems: Problems) -> object:
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
        if seconds == -1 and key.endswith(".cleanup_interval"):
            return 0.0  # Centrifugo's "-1": no cleanup worker
        if seconds < 0:
            raise ConfigError(key, f"expected a duration >= 0, got {_show(value)}")
        return seconds
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {_show(value)}")
        if not value and key.endswith((".subscription_type", ".force_recovery_mode")):
            return "stream"  # Centrifugo's empty default
        if key == "log.level":
            return value.lower()  # Centrifugo accepts any case
        return value
    if tp == _STR_LIST:
        one_address = key in (
            "engine.redis.address",
            "engine.redis.cluster_address",
            "map_broker.redis.address",
            "engine.redis.sentinel_address",
        ) or re.fullmatch(r"consumers\[\d+\]\.redis_stream\.(address|sentinel_address)", key)
        if one_address and isinstance(value, str):
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


def _namespaces(value: object, key: str, problems: Problems) -> tuple[Namespace, ...]:
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
