"""Centrifugo's event proxy: hubbub asks the application backend over HTTP or gRPC.

    router.py          which proxy answers which event (per namespace, precomputed)
    client.py          one proxy for one event: request, call, answer -> result or error
    messages.py        requests and results (proxy.proto as JSON-shaped Structs)
    http_transport.py  POST JSON over a kept-alive connection pool (aiohttp)
    grpc_transport.py  the CentrifugoProxy gRPC service (grpc.aio), grpcproto/ its schema
    tls.py             TLS for both

Rule: this package knows the backend's protocol and nothing of sessions or
channels; ``hubbub.hub.decisions`` builds the requests and applies the results.
It imports only config, protocol, codes and errors.
"""

from __future__ import annotations

from hubbub.proxy.client import ProxyClient, ProxyUnavailable
from hubbub.proxy.router import ChannelProxies, ProxyRouter

__all__ = ["ChannelProxies", "ProxyClient", "ProxyRouter", "ProxyUnavailable"]
