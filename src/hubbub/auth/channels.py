"""Channel names: which namespace a channel belongs to and what its name implies.

Rule: a channel name is resolved once into a ``Channel`` (namespace options,
private or not, the users a ``#`` channel is limited to); every check that
depends only on the name happens here.

    $ns:room#42,43
    | |  |   +-- users allowed (user-limited channel, boundary "#", separator ",")
    | |  +------ the rest of the name
    | +--------- namespace (before the first ":")
    +----------- private prefix: a subscription token is required
"""

from __future__ import annotations

import re

import msgspec

from hubbub.codes import Error
from hubbub.config.model import ChannelConfig, ChannelOptions
from hubbub.errors import ClientError

#: Resolved channels kept; beyond this the cache starts again (names are client input).
_CACHE_LIMIT = 65536


class Channel(msgspec.Struct, frozen=True):
    name: str
    namespace: str
    options: ChannelOptions
    private: bool
    allowed_users: tuple[str, ...] | None  # None: not a user-limited channel


class ChannelRules:
    """Resolves channel names against ``channel.*`` configuration."""

    def __init__(self, config: ChannelConfig) -> None:
        self._config = config
        self._namespaces = {ns.name: ns.options for ns in config.namespaces}
        self._regex = {
            name: re.compile(opts.channel_regex)
            for name, opts in [("", config.without_namespace), *self._namespaces.items()]
            if opts.channel_regex
        }
        self._cache: dict[str, Channel] = {}

    def resolve(self, name: str) -> Channel:
        """The channel ``name`` names; ClientError 107 (bad name) or 102 (unknown namespace)."""
        channel = self._cache.get(name)
        if channel is None:
            channel = self._resolve(name)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[name] = channel
        return channel

    def personal_channel(self, user: str, namespace: str = "") -> str:
        """The name of ``user``'s personal channel: ``ns:#user``, or ``#user``."""
        cfg = self._config
        prefix = f"{namespace}{cfg.namespace_boundary}" if namespace else ""
        return f"{prefix}{cfg.user_boundary}{user}"

    def _resolve(self, name: str) -> Channel:
        cfg = self._config
        if not name or len(name) > cfg.max_length:
            raise ClientError(Error.BAD_REQUEST, "invalid channel name")
        private = bool(cfg.private_prefix) and name.startswith(cfg.private_prefix)
        bare = name[len(cfg.private_prefix) :] if private else name
        namespace = ""
        if cfg.namespace_boundary and cfg.namespace_boundary in bare:
            namespace = bare.split(cfg.namespace_boundary, 1)[0]
        if namespace:
            options = self._namespaces.get(namespace)
            if options is None:
                raise ClientError(Error.UNKNOWN_CHANNEL)
        else:
            options = cfg.without_namespace
        regex = self._regex.get(namespace)
        if regex is not None:
            rest = bare[len(namespace) + len(cfg.namespace_boundary) :] if namespace else bare
            if not regex.fullmatch(rest):
                raise ClientError(Error.UNKNOWN_CHANNEL)
        allowed_users = None
        if cfg.user_boundary and cfg.user_boundary in bare:
            users = bare.rsplit(cfg.user_boundary, 1)[1]
            allowed_users = tuple(u for u in users.split(cfg.user_separator) if u)
        return Channel(name, namespace, options, private, allowed_users)
