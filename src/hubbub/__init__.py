"""hubbub: a real-time messaging server for WebSocket clients.

It speaks Centrifugo's client protocol and HTTP API, so the existing SDKs and
``cent`` work unchanged; embed it with ``Hub`` or run it with ``hubbub serve``.
"""
