"""Map presence: the map entries a subscription keeps while it lives.

Rule 1: a subscription to channel C of a namespace with
``map_clients_presence_channel_prefix`` P keeps the entry (key = client id,
data = its ClientInfo) in the map channel P+C; with
``map_users_presence_channel_prefix`` U, the entry (key = user id) in U+C.
A subscription to a map channel with ``map.remove_client_on_unsubscribe``
owns the channel's entry keyed by its client id.
Rule 2: entries are written once live, renewed on each presence refresh
(each ping) without a change when present (``if_new`` that renews the key's
TTL), and on teardown the client entry (and the owned key) is removed; a user
entry is never removed by one connection (the user may have others): it
expires ``key_ttl`` after the user's last connection stopped renewing it.
Rule 3: the lifecycle calls ``added``, ``refresh`` and ``gone`` (each may
fail on its own: a broker outage); nothing here keeps state across awaits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from hubbub.engines.maps import MapWrite
from hubbub.protocol.messages import Publication

if TYPE_CHECKING:
    from hubbub.hub.maps import Maps
    from hubbub.hub.session import Subscription

#: A write that adds a missing entry and only renews the TTL of a present one.
_RENEW = MapWrite(key_mode="if_new", refresh_ttl_on_suppress=True)
_USER_DATA = msgspec.Raw(b"{}")


class MapMembership:
    """The map entries of one subscription (Rule 1)."""

    __slots__ = ("clients_channel", "maps", "owned_channel", "subscription", "users_channel")

    def __init__(
        self,
        maps: Maps,
        subscription: Subscription,
        *,
        clients_channel: str = "",
        users_channel: str = "",
        owned_channel: str = "",
    ) -> None:
        self.maps = maps
        self.subscription = subscription
        self.clients_channel = clients_channel
        self.users_channel = users_channel
        self.owned_channel = owned_channel

    async def added(self) -> None:
        await self.refresh()

    async def refresh(self) -> None:
        session = self.subscription.session
        if self.clients_channel:
            info = session.client_info(self.subscription.chan_info)
            entry = Publication(
                data=msgspec.Raw(msgspec.json.encode(info)), info=info, key=session.client_id
            )
            await self.maps.write(self.clients_channel, entry, _RENEW)
        if self.users_channel and session.user:
            entry = Publication(data=_USER_DATA, key=session.user)
            await self.maps.write(self.users_channel, entry, _RENEW)

    async def gone(self) -> None:
        client_id = self.subscription.session.client_id
        for channel in (self.clients_channel, self.owned_channel):
            if channel:
                await self.maps.write(channel, Publication(key=client_id, removed=True), MapWrite())
