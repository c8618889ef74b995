"""hubbub behind a real nginx, configured as the README shows, seen by a browser.

A browser sends ``Origin`` and the ``Host`` it connected to (nginx's address);
nginx must pass that ``Host`` on (``proxy_set_header Host $http_host``), or
every browser is refused by the origin check. The client's address reaches
the logs through ``X-Forwarded-For`` because nginx is a trusted proxy.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster_fixtures import NGINX_CONF, Nginx
from tests.conftest import RunningServer, ServerFactory
from tests.wsclient import connected_client, open_client

README = Path(__file__).parent.parent / "README.md"


@pytest.fixture
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hubbub-nginx-") as directory:
        path = Path(directory)
        path.chmod(0o755)
        yield path


@pytest.fixture
async def proxied(
    start_server: ServerFactory, workdir: Path
) -> AsyncIterator[tuple[RunningServer, Nginx]]:
    server = await start_server({"http_server": {"trusted_proxies": ["127.0.0.1"]}})
    nginx = Nginx(workdir, [server.port])
    await nginx.start()
    try:
        yield server, nginx
    finally:
        nginx.stop()


def fields(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(record, "fields", {})
    return found


async def test_a_browser_through_nginx_passes_the_origin_check(
    proxied: tuple[RunningServer, Nginx], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hubbub")
    server, nginx = proxied
    page = f"http://127.0.0.1:{nginx.port}"  # the page came from where the socket goes
    async with connected_client(
        nginx.ws_url, server.token("alice"), channels=("chat:proxy",), origin=page
    ) as client:
        await client.result("publish", {"channel": "chat:proxy", "data": {"n": 1}})
        assert (await client.push("chat:proxy", "pub"))["data"] == {"n": 1}
    (connected,) = [r for r in caplog.records if r.getMessage() == "client connected"]
    # nginx appended the address it got the request from; it is a trusted proxy.
    assert fields(connected)["addr"] == "127.0.0.1"
    assert fields(connected)["user"] == "alice"


async def test_another_site_is_refused_through_nginx_and_the_log_says_why(
    proxied: tuple[RunningServer, Nginx], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hubbub")
    _, nginx = proxied
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        async with open_client(nginx.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.status == 403
    (record,) = [r for r in caplog.records if "origin not allowed" in r.getMessage()]
    detail = fields(record)["detail"]
    # The Host hubbub compared with is the browser's (nginx's address), not "hubbub".
    assert f"is not the request's Host '127.0.0.1:{nginx.port}'" in detail


def location_lines(text: str) -> list[str]:
    """The directives of the ``location / {...}`` block of an nginx config."""
    block = re.search(r"location / \{\{?\n(.*?)\n\s*\}\}?", text, re.S)
    assert block is not None, text
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_shows_the_tested_nginx_config() -> None:
    readme = README.read_text()
    assert location_lines(readme) == location_lines(NGINX_CONF)
    assert "proxy_set_header Host $http_host;" in location_lines(readme)
