"""The URLs a running node serves, for the start-up lines of ``hubbub serve``.

Rule: a pure function of the configuration; no aiohttp (``hubbub serve`` prints
these before any HTTP request made it load aiohttp).
"""

from __future__ import annotations

from hubbub.config.model import Config


def served_urls(config: Config, port: int) -> list[tuple[str, str]]:
    """(what, URL) of each endpoint ``hubbub serve`` offers, for its start-up lines;
    ``port`` is the bound public port."""
    server = config.http_server
    tls = server.tls.enabled
    # The internal port: its own TLS, else the public one's unless tls_external.
    internal_tls = server.internal_tls.enabled or (tls and not server.tls_external)
    web_scheme, ws_scheme = ("https", "wss") if tls else ("http", "ws")
    public = f"{web_scheme}://{server.address or '0.0.0.0'}:{port}"
    private = public
    if server.internal_port:
        scheme = "https" if internal_tls else "http"
        private = f"{scheme}://{server.internal_address or '0.0.0.0'}:{server.internal_port}"
    urls = []
    if not config.websocket.disabled:
        address = public.removeprefix(f"{web_scheme}://")
        urls.append(("websocket", f"{ws_scheme}://{address}{config.websocket.handler_prefix}"))
    if config.demo.enabled:
        urls.append(("demo page", f"{public}/"))
    if not config.http_api.disabled:
        urls.append(("server API", f"{private}/api"))
    if config.admin.enabled:
        where = public if config.admin.external else private
        urls.append(("admin UI", f"{where}{config.admin.handler_prefix}/admin/"))
    if config.prometheus.enabled:
        urls.append(("metrics", f"{private}{config.prometheus.handler_prefix}"))
    if config.health.enabled:
        urls.append(("health", f"{public}{config.health.handler_prefix}"))
    return urls
