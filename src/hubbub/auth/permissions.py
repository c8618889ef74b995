"""Who may do what in a channel: pure functions of the channel and the actor.

Rule: the order of checks is the same for every action and is written once,
in ``decide``:
  1. the private prefix (``$``): only a valid subscription token grants access
     (checked by the caller; here a private channel without a token is denied);
  2. a token (already verified by the caller) grants subscribe;
  3. a user-limited channel (``#``, when the namespace allows user-limited
     channels) admits to subscribe exactly the users it lists, and no one else;
  4. the event's decider, if there is one, decides: the proxy configured for the
     namespace or the application hook (the caller, ``hub.decisions``, asks it);
  5. otherwise the ``allow_*`` options of the namespace decide.
``client.insecure`` allows everything (development only).
"""

from __future__ import annotations

import enum

import msgspec

from hubbub.auth.channels import Channel


class Action(enum.Enum):
    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"
    HISTORY = "history"
    PRESENCE = "presence"
    MAP_PUBLISH = "map_publish"  # a client writes a key of a map channel
    MAP_REMOVE = "map_remove"  # a client removes a key of a map channel


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    ASK_HOOK = "ask_hook"  # an application hook must decide


class Actor(msgspec.Struct, frozen=True):
    user: str  # "" for anonymous
    subscribed: bool = False  # to the channel in question
    has_token: bool = False  # a verified subscription token for the channel
    insecure: bool = False


def decide(action: Action, channel: Channel, actor: Actor, *, hook: bool) -> Verdict:
    """The permission verdict for ``actor`` doing ``action`` in ``channel``."""
    if actor.insecure:
        return Verdict.ALLOW
    if action is Action.SUBSCRIBE:
        if actor.has_token:
            return Verdict.ALLOW
        if channel.private:
            return Verdict.DENY
    if (
        action is Action.SUBSCRIBE
        and channel.allowed_users is not None
        and channel.options.allow_user_limited_channels
    ):
        # A user-limited channel admits exactly its users; without the option
        # a "#" in the name has no meaning and the channel is an ordinary one.
        allowed = bool(actor.user) and actor.user in channel.allowed_users
        return Verdict.ALLOW if allowed else Verdict.DENY
    if hook:
        return Verdict.ASK_HOOK
    return _by_options(action, channel, actor)


def _by_options(action: Action, channel: Channel, actor: Actor) -> Verdict:
    """The ``allow_*`` options, read as Centrifugo reads them: ``*_for_anonymous``
    widens the client and subscriber rules to connections without a user, it
    grants nothing by itself."""
    opts = channel.options
    if action is Action.SUBSCRIBE:
        for_client, for_subscriber, for_anonymous = (
            opts.allow_subscribe_for_client,
            False,
            opts.allow_subscribe_for_anonymous,
        )
    elif action is Action.PUBLISH:
        for_client, for_subscriber, for_anonymous = (
            opts.allow_publish_for_client,
            opts.allow_publish_for_subscriber,
            opts.allow_publish_for_anonymous,
        )
    elif action is Action.MAP_PUBLISH:
        for_client, for_subscriber, for_anonymous = (
            opts.map.allow_publish_for_client,
            opts.map.allow_publish_for_subscriber,
            opts.map.allow_publish_for_anonymous,
        )
    elif action is Action.MAP_REMOVE:
        for_client, for_subscriber, for_anonymous = (
            opts.map.allow_remove_for_client,
            opts.map.allow_remove_for_subscriber,
            opts.map.allow_remove_for_anonymous,
        )
    elif action is Action.HISTORY:
        for_client, for_subscriber, for_anonymous = (
            opts.allow_history_for_client,
            opts.allow_history_for_subscriber,
            opts.allow_history_for_anonymous,
        )
    else:
        for_client, for_subscriber, for_anonymous = (
            opts.allow_presence_for_client,
            opts.allow_presence_for_subscriber,
            opts.allow_presence_for_anonymous,
        )
    granted = for_client or (for_subscriber and actor.subscribed)
    allowed = granted and (bool(actor.user) or for_anonymous)
    return Verdict.ALLOW if allowed else Verdict.DENY
