"""The admin web UI and its API, shaped as Centrifugo's (``admin.*``).

Routes, under ``admin.handler_prefix``:
    GET  /admin/              the UI (static files shipped in the package)
    GET  /                    the UI too, when this application serves no demo page
    GET  /admin/init          {"insecure", "authenticated", "edition"}
    POST /admin/auth          form field ``password`` -> {"token": T}; 400 if wrong
    POST /admin/api           {"method", "params"} -> the server API's reply; 401 without
                              ``Authorization: token T`` (or ``?token=T``)
    GET  /admin/trace         a live trace (Server-Sent Events) of ?channel= or ?user=

Rule 1: nothing but the UI's files and ``init``/``auth`` answers without a
valid token, unless ``admin.insecure`` (loopback only, checked by the config
loader). Passwords and tokens are compared in constant time, and a peer that
keeps guessing is slowed down (HTTP 429 after ``LOGIN_FAILURES`` wrong
passwords in ``LOGIN_WINDOW`` seconds).
Rule 2: the admin API runs the server API's own methods (``HttpApi.execute``):
one implementation of each action, whichever door it comes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from importlib import resources

import msgspec
from aiohttp import web

from hubbub.auth.admin_tokens import admin_token_valid, make_admin_token
from hubbub.hub.hub import Hub
from hubbub.server.api import BadParams, HttpApi

log = logging.getLogger("hubbub.admin")

#: The UI's files, as served: name -> content type.
ASSETS = {
    "index.html": "text/html",
    "admin.js": "text/javascript",
    "admin.css": "text/css",
}
LOGIN_FAILURES = 10
LOGIN_WINDOW = 60.0
#: Seconds between keep-alive comments on a quiet trace stream.
TRACE_KEEPALIVE = 15.0
#: Seconds between checks that a trace's page is still there (aiohttp does not
#: cancel a handler whose client left).
TRACE_CHECK = 0.5
MAX_BODY = 1024 * 1024


class AdminRequest(msgspec.Struct):
    method: str
    params: msgspec.Raw = msgspec.Raw(b"{}")


class Admin:
    """The admin endpoints of one hub."""

    def __init__(self, hub: Hub, api: HttpApi) -> None:
        self.hub = hub
        self.api = api
        self.config = hub.config.admin
        self.tracer = hub.tracer  # one per hub, whatever number of apps serve it
        self._failures: dict[str, list[float]] = {}  # peer -> times of wrong passwords
        self._base = "/admin"

    def add_routes(self, app: web.Application, *, prefix: str = "", root: bool) -> None:
        """Add the routes to ``app`` under ``prefix`` (then ``admin.handler_prefix``);
        ``root``: serve the UI at the prefix's ``/`` too."""
        prefix += self.config.handler_prefix
        self._base = base = f"{prefix}/admin"
        app.router.add_get(f"{base}/", self.page)
        app.router.add_get(base, self.redirect)
        for name in ASSETS:
            if name != "index.html":
                app.router.add_get(f"{base}/{name}", self.asset)
        app.router.add_get(f"{base}/init", self.init)
        app.router.add_post(f"{base}/auth", self.auth)
        app.router.add_post(f"{base}/api", self.call)
        app.router.add_get(f"{base}/trace", self.trace)
        if root:
            app.router.add_get(f"{prefix}/", self.root_page)

        async def close_traces(_: web.Application) -> None:
            self.tracer.close()

        app.on_shutdown.append(close_traces)

    # --- the UI ----------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def root_page(self, request: web.Request) -> web.Response:
        # The UI's links are relative to /admin/: at / a <base> points them there.
        response = self._file("index.html")
        text = response.text or ""
        response.text = text.replace("<!--base-->", '<base href="admin/">', 1)
        return response

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{self._base}/")

    async def asset(self, request: web.Request) -> web.Response:
        return self._file(request.path.rsplit("/", 1)[-1])

    @staticmethod
    def _file(name: str) -> web.Response:
        text = resources.files("hubbub.server").joinpath("static", "admin", name).read_text()
        response = web.Response(text=text, content_type=ASSETS[name])
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Frame-Options"] = "DENY"  # no clickjacking of admin actions
        return response

    # --- authentication --------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if self.config.insecure:
            return True
        token = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if header and scheme.lower() == "token":
            token = value.strip()
        return bool(token) and admin_token_valid(self.config.secret, token)

    async def init(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "insecure": self.config.insecure,
                "authenticated": self._authorized(request),
                "edition": "hubbub",
            }
        )

    async def auth(self, request: web.Request) -> web.Response:
        peer = request.remote or ""
        now = time.monotonic()
        recent = [t for t in self._failures.get(peer, ()) if now - t < LOGIN_WINDOW]
        if len(recent) >= LOGIN_FAILURES:
            raise web.HTTPTooManyRequests(text="too many wrong passwords: wait a minute\n")
        form = await request.post()
        given = form.get("password", "")
        password, secret = self.config.password, self.config.secret
        if (
            isinstance(given, str)
            and password
            and secret
            and hmac.compare_digest(given.encode(), password.encode())
        ):
            self._failures.pop(peer, None)
            return web.json_response({"token": make_admin_token(secret)})
        recent.append(now)
        if len(self._failures) > 10_000:  # bounded: forget the oldest guessers
            self._failures.clear()
        self._failures[peer] = recent
        log.info("admin login refused: wrong password", extra={"fields": {"addr": peer}})
        raise web.HTTPBadRequest(text="Bad Request\n")

    # --- the API ---------------------------------------------------------------------

    async def call(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="admin token required\n")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(
                max_size=MAX_BODY, actual_size=request.content_length
            )
        try:
            command = msgspec.json.decode(await request.read(), type=AdminRequest)
            reply = await self.api.execute(command.method, command.params)
        except (msgspec.DecodeError, BadParams) as exc:
            raise web.HTTPBadRequest(text=f"bad request: {exc}\n") from exc
        if reply is None:
            raise web.HTTPNotFound(text="unknown api method\n")
        return web.Response(body=msgspec.json.encode(reply), content_type="application/json")

    async def trace(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: one ``data:`` line per event, until the page goes away."""
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="admin token required\n")
        channel = request.query.get("channel", "")
        user = request.query.get("user", "")
        if bool(channel) == bool(user):
            raise web.HTTPBadRequest(text="trace exactly one of ?channel= or ?user=\n")
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # nginx: pass events on at once
            }
        )
        await response.prepare(request)
        try:
            watch = await self.tracer.watch(channel=channel, user=user)
        except Exception as exc:  # the engine could not subscribe the channel
            await response.write(b"event: error\ndata: " + msgspec.json.encode(str(exc)) + b"\n\n")
            return response
        try:
            quiet = 0.0
            while request.transport is not None and not request.transport.is_closing():
                try:
                    event = await asyncio.wait_for(watch.queue.get(), TRACE_CHECK)
                except TimeoutError:
                    quiet += TRACE_CHECK
                    if quiet >= TRACE_KEEPALIVE:
                        quiet = 0.0
                        await response.write(b": keep-alive\n\n")
                    continue
                if event is None:
                    break
                quiet = 0.0
                await response.write(b"data: " + event + b"\n\n")
        except ConnectionError:
            pass  # the page went away
        finally:
            with contextlib.suppress(Exception):
                await self.tracer.unwatch(watch)
        return response
