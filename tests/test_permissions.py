"""``hubbub.auth.permissions.decide``: the truth table, and properties that must always hold."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub.auth.channels import Channel
from hubbub.auth.permissions import Action, Actor, Verdict, decide
from hubbub.config.model import ChannelOptions, MapOptions

ALLOW, DENY, ASK_HOOK = Verdict.ALLOW, Verdict.DENY, Verdict.ASK_HOOK

#: The option names for each action: (for_client, for_subscriber, for_anonymous).
OPTION_NAMES: dict[Action, tuple[str, str | None, str]] = {
    Action.SUBSCRIBE: ("allow_subscribe_for_client", None, "allow_subscribe_for_anonymous"),
    Action.PUBLISH: (
        "allow_publish_for_client",
        "allow_publish_for_subscriber",
        "allow_publish_for_anonymous",
    ),
    Action.HISTORY: (
        "allow_history_for_client",
        "allow_history_for_subscriber",
        "allow_history_for_anonymous",
    ),
    Action.PRESENCE: (
        "allow_presence_for_client",
        "allow_presence_for_subscriber",
        "allow_presence_for_anonymous",
    ),
    Action.MAP_PUBLISH: (
        "map.allow_publish_for_client",
        "map.allow_publish_for_subscriber",
        "map.allow_publish_for_anonymous",
    ),
    Action.MAP_REMOVE: (
        "map.allow_remove_for_client",
        "map.allow_remove_for_subscriber",
        "map.allow_remove_for_anonymous",
    ),
}
ALL_ALLOW_OPTIONS = sorted(
    {name for names in OPTION_NAMES.values() for name in names if name is not None}
)


def channel(
    name: str = "ns:room",
    *,
    private: bool = False,
    users: tuple[str, ...] | None = None,
    **options: bool,
) -> Channel:
    """A channel with these options; ``map.*`` names go to the namespace's MapOptions."""
    nested = {k.removeprefix("map."): v for k, v in options.items() if k.startswith("map.")}
    flat = {k: v for k, v in options.items() if not k.startswith("map.")}
    return Channel(name, "ns", ChannelOptions(**flat, map=MapOptions(**nested)), private, users)


def option_value(options: ChannelOptions, name: str) -> bool:
    """An option by its dotted name (``map.allow_publish_for_client``)."""
    if name.startswith("map."):
        return bool(getattr(options.map, name.removeprefix("map.")))
    return bool(getattr(options, name))


def with_option(options: ChannelOptions, name: str) -> ChannelOptions:
    """``options`` with the option named (dotted) turned on."""
    if name.startswith("map."):
        nested = msgspec.structs.replace(options.map, **{name.removeprefix("map."): True})
        return msgspec.structs.replace(options, map=nested)
    return msgspec.structs.replace(options, **{name: True})


def everything_allowed(**extra: bool) -> dict[str, bool]:
    return {name: True for name in ALL_ALLOW_OPTIONS} | extra


USER = Actor(user="alice")
ANON = Actor(user="")


# --- insecure, token, private --------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("hook", [False, True])
@pytest.mark.parametrize(
    "target",
    [
        channel(),
        channel("$ns:secret", private=True),
        channel("ns:dialog#bob", users=("bob",)),
        channel("ns:dialog#alice", users=("alice",)),
    ],
    ids=["plain", "private", "limited-to-another", "limited-to-them"],
)
@pytest.mark.parametrize("user", ["alice", ""])
def test_insecure_allows_everything(action: Action, hook: bool, target: Channel, user: str) -> None:
    assert decide(action, target, Actor(user=user, insecure=True), hook=hook) is ALLOW


@pytest.mark.parametrize("hook", [False, True])
@pytest.mark.parametrize("user", ["alice", ""])
@pytest.mark.parametrize("private", [False, True])
def test_a_token_grants_subscribe_without_options_or_hook(
    hook: bool, user: str, private: bool
) -> None:
    target = channel("$ns:x" if private else "ns:x", private=private)
    assert decide(Action.SUBSCRIBE, target, Actor(user=user, has_token=True), hook=hook) is ALLOW


@pytest.mark.parametrize("action", [Action.PUBLISH, Action.HISTORY, Action.PRESENCE])
def test_a_token_grants_only_subscribe(action: Action) -> None:
    actor = Actor(user="alice", has_token=True, subscribed=True)
    assert decide(action, channel(), actor, hook=False) is DENY


@pytest.mark.parametrize("hook", [False, True])
@pytest.mark.parametrize("user", ["alice", ""])
def test_private_channel_without_token_is_denied_even_when_options_allow(
    hook: bool, user: str
) -> None:
    target = channel("$ns:x", private=True, **everything_allowed())
    assert decide(Action.SUBSCRIBE, target, Actor(user=user), hook=hook) is DENY


@pytest.mark.parametrize("action", [Action.PUBLISH, Action.HISTORY, Action.PRESENCE])
def test_private_prefix_only_concerns_subscribe(action: Action) -> None:
    target = channel("$ns:x", private=True, **everything_allowed())
    assert decide(action, target, USER, hook=False) is ALLOW
    assert decide(action, channel("$ns:x", private=True), USER, hook=False) is DENY


# --- user-limited channels -----------------------------------------------------------


@pytest.mark.parametrize("hook", [False, True])
def test_user_limited_subscribe_admits_exactly_its_users(hook: bool) -> None:
    target = channel(
        "ns:dialog#alice,bob", users=("alice", "bob"), allow_user_limited_channels=True
    )
    # Listed: allowed without any allow_* option, and no hook is asked.
    assert decide(Action.SUBSCRIBE, target, Actor("alice"), hook=hook) is ALLOW
    assert decide(Action.SUBSCRIBE, target, Actor("bob"), hook=hook) is ALLOW
    # Not listed, or anonymous: denied, even when the namespace is public.
    public = channel(
        "ns:dialog#alice,bob",
        users=("alice", "bob"),
        **everything_allowed(allow_user_limited_channels=True),
    )
    for actor in (Actor("carol"), Actor(""), Actor("carol", subscribed=True)):
        assert decide(Action.SUBSCRIBE, target, actor, hook=hook) is DENY
        assert decide(Action.SUBSCRIBE, public, actor, hook=hook) is DENY


@pytest.mark.parametrize("action", [Action.PUBLISH, Action.HISTORY, Action.PRESENCE])
def test_user_limit_concerns_subscribe_only(action: Action) -> None:
    """As in Centrifugo: publish, history and presence ignore the user list."""
    users = ("alice",)
    closed = channel("ns:d#alice", users=users, allow_user_limited_channels=True)
    open_ = channel(
        "ns:d#alice", users=users, **everything_allowed(allow_user_limited_channels=True)
    )
    assert decide(action, closed, USER, hook=False) is DENY
    assert decide(action, open_, USER, hook=False) is ALLOW
    assert decide(action, open_, Actor("bob"), hook=False) is ALLOW
    assert decide(action, open_, USER, hook=True) is ASK_HOOK


@pytest.mark.parametrize("action", list(Action))
def test_user_limited_channel_listing_the_user_is_denied_when_the_namespace_disallows_it(
    action: Action,
) -> None:
    """Without allow_user_limited_channels, listing the user grants nothing."""
    target = channel("ns:d#alice", users=("alice",))
    assert decide(action, target, USER, hook=False) is DENY


@pytest.mark.parametrize("hook", [False, True])
def test_without_the_option_a_hash_channel_is_an_ordinary_channel(hook: bool) -> None:
    target = channel("ns:d#bob", users=("bob",), allow_subscribe_for_client=True)
    assert decide(Action.SUBSCRIBE, target, USER, hook=hook) is (ASK_HOOK if hook else ALLOW)


# --- the hook ------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("options", [{}, everything_allowed()], ids=["closed", "open"])
@pytest.mark.parametrize("user", ["alice", ""])
def test_a_hook_decides_for_ordinary_channels(
    action: Action, options: dict[str, bool], user: str
) -> None:
    assert decide(action, channel(**options), Actor(user), hook=True) is ASK_HOOK


# --- allow_* options -----------------------------------------------------------------


def options_table() -> list[Any]:
    """(action, for_client, for_subscriber, for_anonymous, user, subscribed, expected)."""
    rows = []
    for action in Action:
        has_subscriber = OPTION_NAMES[action][1] is not None
        for for_client in (False, True):
            for for_subscriber in (False, True) if has_subscriber else (False,):
                for for_anonymous in (False, True):
                    for user in ("alice", ""):
                        for subscribed in (False, True):
                            granted = for_client or (for_subscriber and subscribed)
                            expected = granted and (bool(user) or for_anonymous)
                            rows.append(
                                pytest.param(
                                    action,
                                    for_client,
                                    for_subscriber,
                                    for_anonymous,
                                    user,
                                    subscribed,
                                    ALLOW if expected else DENY,
                                    id=f"{action.value}-c{for_client:d}-s{for_subscriber:d}"
                                    f"-a{for_anonymous:d}-{user or 'anon'}-sub{subscribed:d}",
                                )
                            )
    return rows


@pytest.mark.parametrize(
    ("action", "for_client", "for_subscriber", "for_anonymous", "user", "subscribed", "expected"),
    options_table(),
)
def test_allow_options(
    action: Action,
    for_client: bool,
    for_subscriber: bool,
    for_anonymous: bool,
    user: str,
    subscribed: bool,
    expected: Verdict,
) -> None:
    client_name, subscriber_name, anonymous_name = OPTION_NAMES[action]
    options = {client_name: for_client, anonymous_name: for_anonymous}
    if subscriber_name is not None:
        options[subscriber_name] = for_subscriber
    actor = Actor(user=user, subscribed=subscribed)
    assert decide(action, channel(**options), actor, hook=False) is expected


@pytest.mark.parametrize("action", list(Action))
def test_options_of_other_actions_grant_nothing(action: Action) -> None:
    own = {name for name in OPTION_NAMES[action] if name}
    others = {name: True for name in ALL_ALLOW_OPTIONS if name not in own}
    actor = Actor(user="alice", subscribed=True)
    assert decide(action, channel(**others), actor, hook=False) is DENY


def test_nothing_is_allowed_by_default() -> None:
    for action in Action:
        for actor in (USER, ANON, Actor("alice", subscribed=True)):
            assert decide(action, channel(), actor, hook=False) is DENY


# --- properties ----------------------------------------------------------------------

option_flags = st.fixed_dictionaries(
    {name: st.booleans() for name in [*ALL_ALLOW_OPTIONS, "allow_user_limited_channels"]}
)
users = st.sampled_from(["", "alice", "bob"])


@st.composite
def cases(draw: st.DrawFn) -> tuple[Action, Channel, Actor, bool]:
    private = draw(st.booleans())
    limited = draw(st.none() | st.lists(users, max_size=3).map(tuple))
    name = ("$" if private else "") + "ns:room" + ("#" + ",".join(limited) if limited else "")
    target = channel(name, private=private, users=limited, **draw(option_flags))
    actor = Actor(
        user=draw(users),
        subscribed=draw(st.booleans()),
        has_token=draw(st.booleans()),
        insecure=draw(st.booleans()),
    )
    return draw(st.sampled_from(list(Action))), target, actor, draw(st.booleans())


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


@PROPERTY_SETTINGS
@given(cases())
def test_private_channel_without_token_is_never_allowed_unless_insecure(
    case: tuple[Action, Channel, Actor, bool],
) -> None:
    action, target, actor, hook = case
    verdict = decide(action, target, actor, hook=hook)
    if action is Action.SUBSCRIBE and target.private and not actor.has_token:
        if actor.insecure:
            assert verdict is ALLOW
        else:
            assert verdict is DENY  # not even the hook is asked


@PROPERTY_SETTINGS
@given(cases())
def test_anonymous_is_never_allowed_without_an_anonymous_option_or_insecure(
    case: tuple[Action, Channel, Actor, bool],
) -> None:
    action, target, actor, hook = case
    if actor.user or actor.insecure or (action is Action.SUBSCRIBE and actor.has_token):
        return  # a verified subscription token is the one grant that needs no user
    anonymous_option = OPTION_NAMES[action][2]
    if decide(action, target, actor, hook=hook) is ALLOW:
        assert option_value(target.options, anonymous_option)


@PROPERTY_SETTINGS
@given(cases())
def test_verdict_invariants(case: tuple[Action, Channel, Actor, bool]) -> None:
    action, target, actor, hook = case
    verdict = decide(action, target, actor, hook=hook)
    assert isinstance(verdict, Verdict)
    if actor.insecure:
        assert verdict is ALLOW
    if verdict is ASK_HOOK:
        assert hook
    if not hook:
        assert verdict is not ASK_HOOK
    if (
        action is Action.SUBSCRIBE
        and target.allowed_users is not None
        and target.options.allow_user_limited_channels
        and not actor.insecure
        and verdict is not DENY
    ):
        # A user-limited channel: only a token or being listed lets one subscribe.
        assert actor.has_token or actor.user in target.allowed_users


@PROPERTY_SETTINGS
@given(cases(), st.sampled_from(ALL_ALLOW_OPTIONS))
def test_turning_an_option_on_never_takes_a_permission_away(
    case: tuple[Action, Channel, Actor, bool], option: str
) -> None:
    action, target, actor, _ = case
    before = decide(action, target, actor, hook=False)
    wider = msgspec.structs.replace(target, options=with_option(target.options, option))
    after = decide(action, wider, actor, hook=False)
    if before is ALLOW:
        assert after is ALLOW
