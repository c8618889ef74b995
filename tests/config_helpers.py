"""What the configuration tests share: one config in three formats, and helpers
that write a file, load nested data as dotted overrides, and return the key a
ConfigError names.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import LoadedConfig, load_config
from hubbub.errors import ConfigError

API_KEY_WARNING = "http_api.key is empty: the HTTP API rejects every request until you set it"

JSON_TEXT = """{
  "http_server": {"address": "127.0.0.1", "port": 9000},
  "http_api": {"key": "secret"},
  "client": {
    "token": {"hmac_secret_key": "hmac"},
    "allowed_origins": ["http://a", "http://b"],
    "ping_interval": "20s",
    "pong_timeout": 5
  },
  "channel": {
    "without_namespace": {"presence": true},
    "namespaces": [
      {"name": "chat", "history_size": 10, "history_ttl": "5m", "force_recovery": true}
    ]
  },
  "log": {"level": "debug"}
}
"""

TOML_TEXT = """
[http_server]
address = "127.0.0.1"
port = 9000

[http_api]
key = "secret"

[client]
allowed_origins = ["http://a", "http://b"]
ping_interval = "20s"
pong_timeout = 5

[client.token]
hmac_secret_key = "hmac"

[channel.without_namespace]
presence = true

[[channel.namespaces]]
name = "chat"
history_size = 10
history_ttl = "5m"
force_recovery = true

[log]
level = "debug"
"""

YAML_TEXT = """
http_server:
  address: 127.0.0.1
  port: 9000
http_api:
  key: secret
client:
  token:
    hmac_secret_key: hmac
  allowed_origins: [http://a, http://b]
  ping_interval: 20s
  pong_timeout: 5
channel:
  without_namespace:
    presence: true
  namespaces:
    - name: chat
      history_size: 10
      history_ttl: 5m
      force_recovery: true
log:
  level: debug
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(data: dict[str, Any] | None = None, **env: str) -> LoadedConfig:
    """Load nested ``data`` given as dotted overrides, with ``env`` as the environment."""
    return load_config(env=env, overrides=_flatten(data or {}))


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat


def error_key(tmp_path: Path, data: dict[str, Any]) -> str:
    path = write(tmp_path, "c.json", json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return info.value.key
