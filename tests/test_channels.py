"""Channel name resolution: namespaces, private prefix, user-limited channels, regex."""

from __future__ import annotations

import pytest

from hubbub.auth.channels import ChannelRules
from hubbub.codes import Error
from hubbub.config import ChannelConfig, ChannelOptions, Namespace
from hubbub.errors import ClientError


def _rules(**kwargs: object) -> ChannelRules:
    chat = ChannelOptions(presence=True)
    return ChannelRules(
        ChannelConfig(
            without_namespace=ChannelOptions(join_leave=True),
            namespaces=(
                Namespace("chat", chat),
                Namespace("num", ChannelOptions(channel_regex=r"\d+")),
            ),
            **kwargs,  # type: ignore[arg-type]
        )
    )


def test_namespaces_are_resolved() -> None:
    rules = _rules()
    assert rules.resolve("chat:index").namespace == "chat"
    assert rules.resolve("chat:index").options.presence
    assert rules.resolve("chat:a:b").namespace == "chat"
    assert rules.resolve("news").namespace == ""
    assert rules.resolve("news").options.join_leave
    assert rules.resolve(":x").namespace == ""  # empty namespace part: without_namespace


def test_private_prefix_is_stripped_before_the_namespace() -> None:
    rules = _rules()
    channel = rules.resolve("$chat:secret")
    assert channel.private and channel.namespace == "chat"
    assert not rules.resolve("chat:open").private


def test_unknown_namespace_is_102() -> None:
    with pytest.raises(ClientError) as info:
        _rules().resolve("news:1")
    assert info.value.error == Error.UNKNOWN_CHANNEL


@pytest.mark.parametrize("name", ["", "x" * 256])
def test_bad_names_are_107(name: str) -> None:
    with pytest.raises(ClientError) as info:
        _rules().resolve(name)
    assert info.value.error.code == Error.BAD_REQUEST.code


def test_user_limited_channels_list_their_users() -> None:
    rules = _rules()
    assert rules.resolve("dialog#42,43").allowed_users == ("42", "43")
    assert rules.resolve("dialog").allowed_users is None


def test_channel_regex_applies_to_the_name_after_the_namespace() -> None:
    rules = _rules()
    assert rules.resolve("num:123").namespace == "num"
    with pytest.raises(ClientError) as info:
        rules.resolve("num:abc")
    assert info.value.error == Error.UNKNOWN_CHANNEL


def test_custom_boundary() -> None:
    rules = _rules(namespace_boundary="/")
    assert rules.resolve("chat/1").namespace == "chat"
    assert rules.resolve("chat:1").namespace == ""
