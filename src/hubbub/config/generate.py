"""Write a starter configuration file as JSON, TOML or YAML.

Rule: the output loads with ``load_config`` without a warning; its secrets are
fresh random values (``secrets=False`` leaves them empty for reproducible
output, and ``load_config`` then warns about the empty ``http_api.key``).
TOML is written here by hand: nested tables and arrays of tables of scalars.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from secrets import token_urlsafe
from typing import Any

__all__ = ["FORMATS", "demo_config", "generate_config", "starter_config"]

FORMATS = ("json", "toml", "yaml")


def chat_namespace(*, anonymous: bool) -> dict[str, Any]:
    """The example ``chat`` namespace: presence, join/leave, history with recovery,
    subscribers may publish and read; ``anonymous`` opens it to connections
    without a user too (the demo)."""
    namespace: dict[str, Any] = {
        "name": "chat",
        "presence": True,
        "join_leave": True,
        "force_push_join_leave": True,
        "history_size": 100,
        "history_ttl": "300s",
        "force_recovery": True,
        "allow_subscribe_for_client": True,
        "allow_publish_for_subscriber": True,
        "allow_history_for_subscriber": True,
        "allow_presence_for_subscriber": True,
    }
    if anonymous:
        for action in ("subscribe", "publish", "history", "presence"):
            namespace[f"allow_{action}_for_anonymous"] = True
    return namespace


def starter_config(*, secrets: bool = True) -> dict[str, Any]:
    """The starter configuration as plain data (Centrifugo v6 key names)."""
    return {
        "http_server": {"address": "127.0.0.1", "port": 8000},
        "log": {"level": "info"},
        "client": {
            "token": {"hmac_secret_key": token_urlsafe(32) if secrets else ""},
            "allowed_origins": ["http://localhost:8000", "http://127.0.0.1:8000"],
        },
        "http_api": {"key": token_urlsafe(32) if secrets else ""},
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_publish_for_client": True,
            },
            "namespaces": [chat_namespace(anonymous=False)],
        },
    }


def demo_config() -> dict[str, Any]:
    """What ``hubbub serve`` runs without a config file: the demo chat, on loopback.

    The demo page is on (``demo.enabled``; off in any config file unless set),
    and ``/health`` answers. Anonymous visitors may connect and use the ``chat``
    namespace (presence, join/leave, history with recovery). There is no API key, so the HTTP API
    refuses every call until one is configured.
    """
    return {
        "http_server": {"address": "127.0.0.1", "port": 8000},
        "demo": {"enabled": True},
        "health": {"enabled": True},
        "client": {"allow_anonymous_connect_without_token": True},
        "channel": {
            "namespaces": [chat_namespace(anonymous=True)],
        },
    }


def generate_config(fmt: str = "json", *, secrets: bool = True) -> str:
    """The starter configuration in ``fmt`` ("json", "toml", "yaml" or "yml")."""
    data = starter_config(secrets=secrets)
    fmt = fmt.lower()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "toml":
        return to_toml(data)
    if fmt in ("yaml", "yml"):
        import yaml  # type: ignore[import-untyped, unused-ignore]  # (start-up time)

        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        return text
    raise ValueError(f"unknown config format {fmt!r}: use one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- TOML

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def to_toml(data: Mapping[str, Any]) -> str:
    """TOML for nested mappings whose leaves are scalars, lists of scalars or lists of tables."""
    lines: list[str] = []
    _table(data, [], lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_table_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _table(table: Mapping[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {
        k: v for k, v in table.items() if not isinstance(v, Mapping) and not _is_table_list(v)
    }
    if path and (scalars or not table):
        lines += ["", f"[{'.'.join(path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in scalars.items()]
    for name, value in table.items():
        if isinstance(value, Mapping):
            _table(value, [*path, _key(name)], lines)
        elif _is_table_list(value):
            for item in value:
                lines += ["", f"[[{'.'.join([*path, _key(name)])}]]"]
                if any(isinstance(v, Mapping) or _is_table_list(v) for v in item.values()):
                    raise ValueError(f"to_toml: {name} items must hold scalars only")
                lines += [f"{_key(k)} = {_value(v)}" for k, v in item.items()]


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return json.dumps(value, allow_nan=False)  # JSON strings and numbers are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"to_toml: can not write {value!r}")
