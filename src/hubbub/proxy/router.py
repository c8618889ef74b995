"""Which proxy answers which event: resolved once from the configuration.

Rule: every lookup a command needs is a dictionary read prepared at startup
(per channel namespace, per RPC namespace), never a walk of the config per
command. A named proxy used by several namespaces is one ``ProxyClient``;
every HTTP proxy shares one connection pool and every ``grpc://`` endpoint
one channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.config.backend import DEFAULT_PROXY_NAME, ProxyGrpcOptions, ProxyOptions
from hubbub.config.model import ChannelOptions, Config
from hubbub.proxy import messages as m
from hubbub.proxy.client import CallRecorder, ProxyClient
from hubbub.proxy.http_transport import HttpPool

if TYPE_CHECKING:
    from hubbub.proxy.grpc_transport import GrpcTransport


class ChannelProxies(msgspec.Struct, frozen=True):
    """The proxies of one channel namespace (None: that event is not proxied)."""

    subscribe: ProxyClient[m.SubscribeResult] | None = None
    publish: ProxyClient[m.PublishResult] | None = None
    sub_refresh: ProxyClient[m.SubRefreshResult] | None = None


NO_CHANNEL_PROXIES = ChannelProxies()


class ProxyRouter:
    """The proxies a configuration switches on."""

    def __init__(self, config: Config, *, recorder: CallRecorder | None = None) -> None:
        self.pool = HttpPool()
        self._recorder = recorder  # counts every call (hub.counters)
        self._grpc: dict[tuple[str, ProxyGrpcOptions], GrpcTransport] = {}
        self._clients: dict[tuple[str, str], ProxyClient[Any]] = {}
        self._named = {p.name: (p, f"proxies[{i}]") for i, p in enumerate(config.proxies)}
        client = config.client
        self.connect: ProxyClient[m.ConnectResult] | None = self._client_event(
            "connect", client.proxy.connect, client.connect_proxy_name
        )
        self.refresh: ProxyClient[m.RefreshResult] | None = self._client_event(
            "refresh", client.proxy.refresh, client.refresh_proxy_name
        )
        channel = config.channel
        self._channels = {"": self._channel_proxies(config, channel.without_namespace)}
        for ns in channel.namespaces:
            self._channels[ns.name] = self._channel_proxies(config, ns.options)
        rpc = config.rpc
        self.rpc_boundary = rpc.namespace_boundary
        self._rpc_default = self._rpc_client(
            config, rpc.without_namespace.proxy_enabled, rpc.without_namespace.proxy_name
        )
        self._rpc = {
            ns.name: self._rpc_client(config, ns.proxy_enabled, ns.proxy_name)
            for ns in rpc.namespaces
        }

    @property
    def any(self) -> bool:
        """Whether any event is proxied."""
        return bool(self._clients)

    def channel(self, namespace: str) -> ChannelProxies:
        """The proxies of a channel namespace ("" for channels without namespace)."""
        return self._channels.get(namespace, NO_CHANNEL_PROXIES)

    def rpc(self, method: str) -> ProxyClient[m.RPCResult] | None:
        """The RPC proxy for ``method``: its namespace's (``ns:method``) if ``ns`` is an
        RPC namespace, else the one of methods without namespace."""
        if self._rpc and self.rpc_boundary in method:
            namespace = method.split(self.rpc_boundary, 1)[0]
            if namespace in self._rpc:
                return self._rpc[namespace]
        return self._rpc_default

    def shared_poll(self, config: Config, options: ChannelOptions) -> ProxyClient[Any]:
        """The refresh proxy of a shared poll namespace (checked at load to exist)."""
        name = options.shared_poll.proxy_name or DEFAULT_PROXY_NAME
        if name == DEFAULT_PROXY_NAME:
            proxy = config.channel.proxy.shared_poll_refresh
            return self._client(
                "shared_poll_refresh", name, proxy, "channel.proxy.shared_poll_refresh"
            )
        named, key = self._named[name]
        return self._client("shared_poll_refresh", name, named, key)

    async def close(self) -> None:
        for transport in self._grpc.values():
            await transport.close()
        await self.pool.close()

    # --- building --------------------------------------------------------------------

    def _client_event(self, event: str, proxy: Any, by_name: str) -> ProxyClient[Any] | None:
        if proxy.enabled:
            return self._client(event, DEFAULT_PROXY_NAME, proxy, f"client.proxy.{event}")
        if by_name:
            named, key = self._named[by_name]
            return self._client(event, by_name, named, key)
        return None

    def _channel_proxies(self, config: Config, options: ChannelOptions) -> ChannelProxies:
        found: dict[str, ProxyClient[Any] | None] = {}
        for event in ("subscribe", "publish", "sub_refresh"):
            found[event] = None
            if getattr(options, f"{event}_proxy_enabled"):
                name = getattr(options, f"{event}_proxy_name")
                if name == DEFAULT_PROXY_NAME:
                    proxy = getattr(config.channel.proxy, event)
                    found[event] = self._client(event, name, proxy, f"channel.proxy.{event}")
                else:
                    named, key = self._named[name]
                    found[event] = self._client(event, name, named, key)
        if not any(found.values()):
            return NO_CHANNEL_PROXIES
        return ChannelProxies(**found)

    def _rpc_client(self, config: Config, enabled: bool, name: str) -> ProxyClient[Any] | None:
        if not enabled:
            return None
        if name == DEFAULT_PROXY_NAME:
            return self._client("rpc", name, config.rpc.proxy, "rpc.proxy")
        named, key = self._named[name]
        return self._client("rpc", name, named, key)

    def _client(self, event: str, name: str, options: ProxyOptions, key: str) -> ProxyClient[Any]:
        found = self._clients.get((event, key))
        if found is None:
            grpc = None
            if options.endpoint.startswith("grpc://"):
                transport_key = (options.endpoint, options.grpc)
                grpc = self._grpc.get(transport_key)
                if grpc is None:
                    # gRPC and protobuf are loaded only by a config that proxies over gRPC.
                    from hubbub.proxy.grpc_transport import GrpcTransport

                    grpc = self._grpc[transport_key] = GrpcTransport(options, key)
            found = ProxyClient(
                event, name, options, key=key, pool=self.pool, grpc=grpc, recorder=self._recorder
            )
            self._clients[(event, key)] = found
        return found
