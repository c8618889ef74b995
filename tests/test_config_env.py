"""The configuration loader's environment variables and overrides: HUBBUB_*
variables override the file, bad values name the key, unknown ones warn, and
overrides win over both, type-checked.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubbub.config import ChannelOptions, Namespace, load_config
from hubbub.errors import ConfigError
from tests.config_helpers import JSON_TEXT, write

# ---------------------------------------------------------------- environment and overrides


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "HUBBUB_HTTP_SERVER_PORT": "9100",
        "HUBBUB_HTTP_API_KEY": "from-env",
        "HUBBUB_CLIENT_TOKEN_HMAC_SECRET_KEY": "env-hmac",
        "HUBBUB_CLIENT_ALLOWED_ORIGINS": "http://x  http://y",
        "HUBBUB_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "false",
        "HUBBUB_CLIENT_PING_INTERVAL": "1m",
        "HUBBUB_CLIENT_PONG_TIMEOUT": "10",
        "HUBBUB_CHANNEL_NAMESPACES": '[{"name": "news", "presence": true}]',
        "PATH": "/bin",
    }
    loaded = load_config(write(tmp_path, "c.json", JSON_TEXT), env=env)
    config = loaded.config
    assert loaded.warnings == ()
    assert config.http_server.port == 9100
    assert config.http_api.key == "from-env"
    assert config.client.token.hmac_secret_key == "env-hmac"
    assert config.client.allowed_origins == ("http://x", "http://y")
    assert config.channel.without_namespace.presence is False
    assert config.client.ping_interval == 60.0
    assert config.client.pong_timeout == 10.0
    assert config.channel.namespaces == (Namespace("news", ChannelOptions(presence=True)),)


@pytest.mark.parametrize(
    ("word", "value"), [("true", True), ("1", True), ("YES", True), ("no", False), ("0", False)]
)
def test_env_bools(word: str, value: bool) -> None:
    loaded = load_config(env={"HUBBUB_CLIENT_INSECURE": word, "HUBBUB_HTTP_API_KEY": "k"})
    assert loaded.config.client.insecure is value


@pytest.mark.parametrize(
    ("var", "text", "key"),
    [
        ("HUBBUB_HTTP_SERVER_PORT", "abc", "http_server.port"),
        ("HUBBUB_HTTP_SERVER_PORT", "70000", "http_server.port"),
        ("HUBBUB_CLIENT_INSECURE", "maybe", "client.insecure"),
        ("HUBBUB_CLIENT_PING_INTERVAL", "soon", "client.ping_interval"),
        ("HUBBUB_CHANNEL_NAMESPACES", "[{", "channel.namespaces"),
        ("HUBBUB_CHANNEL_NAMESPACES", '[{"name": "x!"}]', "channel.namespaces[0].name"),
    ],
)
def test_env_bad_values_name_the_key(var: str, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={var: text})
    assert info.value.key == key


def test_env_port_error_message() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"HUBBUB_HTTP_SERVER_PORT": "abc"})
    assert 'expected an integer 0..65535, got "abc"' in str(info.value)
    assert "HUBBUB_HTTP_SERVER_PORT" in str(info.value)


def test_unknown_and_ignored_env_vars_warn() -> None:
    env = {"HUBBUB_HTTP_API_KEY": "k", "HUBBUB_NOPE": "1", "HUBBUB_SWAGGER_ENABLED": "true"}
    warnings = load_config(env=env).warnings
    assert any("HUBBUB_NOPE" in w and "unknown" in w for w in warnings)
    assert "swagger is a Centrifugo option hubbub ignores (from HUBBUB_SWAGGER_ENABLED)" in warnings


def test_default_env_is_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("HUBBUB_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HUBBUB_HTTP_SERVER_PORT", "9200")
    monkeypatch.setenv("HUBBUB_HTTP_API_KEY", "k")
    assert load_config().config.http_server.port == 9200


def test_overrides_win_over_env_and_file(tmp_path: Path) -> None:
    loaded = load_config(
        write(tmp_path, "c.json", JSON_TEXT),
        env={"HUBBUB_HTTP_SERVER_PORT": "9100"},
        overrides={"http_server.port": 9300, "log.level": "error", "client.insecure": None},
    )
    assert loaded.config.http_server.port == 9300
    assert loaded.config.log.level == "error"
    assert loaded.config.client.insecure is False


def test_override_values_are_type_checked() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={}, overrides={"http_server.port": "abc"})
    assert info.value.key == "http_server.port"
    assert str(info.value) == 'http_server.port: expected an integer 0..65535, got "abc"'
