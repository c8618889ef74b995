"""The configuration loader reads files: the three formats load the same config,
defaults apply without a file, unreadable files name the file and parser; and
durations parse as Centrifugo writes them.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import ChannelOptions, Config, Namespace, load_config, parse_duration
from hubbub.errors import ConfigError
from tests.config_helpers import API_KEY_WARNING, JSON_TEXT, TOML_TEXT, YAML_TEXT, load, write

# ---------------------------------------------------------------- files and defaults


def test_three_formats_load_the_same_config(tmp_path: Path) -> None:
    configs = [
        load_config(write(tmp_path, "c.json", JSON_TEXT), env={}),
        load_config(write(tmp_path, "c.toml", TOML_TEXT), env={}),
        load_config(write(tmp_path, "c.yaml", YAML_TEXT), env={}),
        load_config(str(write(tmp_path, "c.yml", YAML_TEXT)), env={}),
    ]
    assert all(c == configs[0] for c in configs)
    config = configs[0].config
    assert configs[0].warnings == ()
    assert config.http_server.port == 9000
    assert config.client.allowed_origins == ("http://a", "http://b")
    assert config.client.ping_interval == 20.0
    assert config.client.pong_timeout == 5.0
    assert config.channel.without_namespace.presence is True
    assert config.channel.namespaces == (
        Namespace("chat", ChannelOptions(history_size=10, history_ttl=300.0, force_recovery=True)),
    )
    assert config.log.level == "debug"


def test_unknown_extension_is_read_as_json(tmp_path: Path) -> None:
    loaded = load_config(write(tmp_path, "hubbub.conf", JSON_TEXT), env={})
    assert loaded.config.http_server.port == 9000


def test_defaults_without_a_file() -> None:
    loaded = load_config(env={})
    assert loaded.config == Config()
    assert loaded.config.http_server.address == "127.0.0.1"
    assert loaded.warnings == (API_KEY_WARNING,)


def test_empty_address_is_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '{"http_server": {"address": ""}, "http_api": {"key": "k"}}')
    assert load_config(path, env={}).config.http_server.address == ""


@pytest.mark.parametrize(
    ("name", "text", "parser"),
    [
        ("bad.json", '{"http_server": ', "JSON"),
        ("bad.toml", "[http_server\nport = 1", "TOML"),
        ("bad.yaml", "http_server: [1, 2\n", "YAML"),
        ("bad.cfg", "not json", "JSON"),
    ],
)
def test_unparsable_file_names_the_file_and_parser(
    tmp_path: Path, name: str, text: str, parser: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in info.value.message
    assert f"as {parser}:" in info.value.message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_missing_file_and_non_object_top_level(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json", env={})
    with pytest.raises(ConfigError, match="top level must be an object"):
        load_config(write(tmp_path, "list.json", "[1, 2]"), env={})


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300s", 300.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("2h", 7200.0),
        ("1h2m3.5s", 3723.5),
        ("0", 0.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("250us", 0.00025),
        ("10ns", 1e-08),
        ("-1s", -1.0),
        (30, 30.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "5", "1x", "s", "1.2.3s", "1h 2m", "--1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, key="client.ping_interval")
    assert info.value.key == "client.ping_interval"


@given(st.integers(0, 1000), st.integers(0, 59), st.integers(0, 59))
def test_parse_duration_property(hours: int, minutes: int, seconds: int) -> None:
    assert parse_duration(f"{hours}h{minutes}m{seconds}s") == hours * 3600 + minutes * 60 + seconds


def test_duration_fields_accept_numbers_and_strings() -> None:
    config = load({"client": {"ping_interval": "2m", "pong_timeout": 30}}).config
    assert (config.client.ping_interval, config.client.pong_timeout) == (120.0, 30.0)
