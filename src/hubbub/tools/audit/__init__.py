"""``hubbub audit``: conformance (RFC 6455/7692, Centrifugo's client protocol) and
security checks of any WebSocket server, with JSON and HTML reports.

Rule: the audit talks to a server only through the network, with the one
WebSocket codec (``hubbub.websocket``); modules by concern: ``connection``
(one logged connection), ``case`` (a case and the shared expectations),
the groups (``framing``, ``fragments``, ``utf8``, ``closing``, ``limits``,
``deflate``, ``centrifugo``, ``security``), ``catalog`` (all cases),
``runner`` (selection, bounds, concurrency), ``verdicts``, ``report`` (JSON,
text) and ``html``.
"""
