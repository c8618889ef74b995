"""Generated configurations (``generate_config``) round-trip in every format with
fresh secrets, and the ``checkconfig``/``genconfig`` commands report and write them.

Rule: every test passes ``env=`` explicitly (or clears HUBBUB_* variables), so the
machine's environment never changes a result.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubbub.cli.config_cmd import checkconfig, genconfig
from hubbub.config import generate_config, load_config
from tests.config_helpers import API_KEY_WARNING, write

# ---------------------------------------------------------------- generate_config


@pytest.mark.parametrize("fmt", ["json", "toml", "yaml"])
def test_generated_config_round_trips(tmp_path: Path, fmt: str) -> None:
    text = generate_config(fmt)
    loaded = load_config(write(tmp_path, f"c.{fmt}", text), env={})
    assert loaded.warnings == ()
    config = loaded.config
    assert len(config.client.token.hmac_secret_key) >= 40
    assert len(config.http_api.key) >= 40
    assert config.client.allowed_origins == ("http://localhost:8000", "http://127.0.0.1:8000")
    assert (config.http_server.address, config.http_server.port) == ("127.0.0.1", 8000)
    default = config.channel.without_namespace
    assert default.allow_subscribe_for_client and default.allow_publish_for_client
    (chat,) = config.channel.namespaces
    assert chat.name == "chat"
    assert chat.options.history_size == 100 and chat.options.history_ttl == 300.0
    assert chat.options.force_recovery and chat.options.presence and chat.options.join_leave


def test_generated_secrets_are_fresh_or_absent() -> None:
    assert generate_config("json") != generate_config("json")
    assert generate_config("toml", secrets=False) == generate_config("toml", secrets=False)
    with pytest.raises(ValueError):
        generate_config("ini")


# ---------------------------------------------------------------- commands


def test_checkconfig_ok_with_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("HUBBUB_"):
            monkeypatch.delenv(name)
    path = write(tmp_path, "c.json", '{"swagger": {"enabled": true}}')
    assert checkconfig(str(path)) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"config OK: {path}\n"
        "1 option set: 0 implemented, 1 accepted but not implemented (swagger)\n"
    )
    assert "warning: swagger is a Centrifugo option hubbub ignores\n" in err
    assert f"warning: {API_KEY_WARNING}\n" in err


def test_checkconfig_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "c.json", '{"http_server": {"port": "abc"}}')
    assert checkconfig(str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == 'error: http_server.port: expected an integer 0..65535, got "abc"\n'

    assert checkconfig(str(tmp_path / "missing.json")) == 1
    assert "does not exist" in capsys.readouterr().err

    assert checkconfig(str(write(tmp_path, "bad.yaml", "a: [\n"))) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: can not parse config file") and "Traceback" not in err


def test_genconfig_stdout_and_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert genconfig("yaml", None) == 0
    assert "hmac_secret_key" in capsys.readouterr().out

    target = tmp_path / "hubbub.toml"
    assert genconfig("toml", str(target)) == 0
    assert load_config(target, env={}).warnings == ()
    first = target.read_text()

    assert genconfig("toml", str(target)) == 1
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == first

    assert genconfig("ini", str(tmp_path / "x.ini")) == 1
    assert "unknown format" in capsys.readouterr().err
