"""``hubbub audit`` against real servers (which must pass) and broken ones (which must not).

* The echo servers of ``websockets``, aiohttp and Node ``ws`` (their published
  Autobahn results are clean) get the whole echo-mode audit, the three at once,
  and no case of Autobahn's groups may be FAILED; each run must stay under 2
  minutes. The security checks find one real fault: aiohttp answers unmasked
  client frames (RFC 6455 5.1 says it MUST close the connection).
* hubbub's own audit, on every door (``hubbub serve``, an aiohttp app, TLS), is
  in test_audit_doors.py.
* Each deliberately broken server (tests/broken_ws.py) breaks one rule of one
  group, and the audit reports the case that checks that rule as FAILED.
* The reports: JSON with the documented keys, an HTML page with every case.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubbub.tools.audit.case import AuditOptions
from hubbub.tools.audit.html import render
from hubbub.tools.audit.report import document
from hubbub.tools.audit.runner import AuditError, run_audit
from hubbub.tools.audit.verdicts import FAILED, summarise
from tests.broken_ws import BrokenServer, FakeCentrifugo
from tests.conftest import ServerFactory
from tests.redis_fixtures import free_port
from tests.tls_fixtures import TlsFiles

TESTS = Path(__file__).parent
ECHO_GROUPS = "1,2,3,4,5,6,7,9,10,12,13"


def wait_port(port: int, process: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited with {process.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def start(
    command: list[str], port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        wait_port(port, process)
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture
def echo_servers() -> Iterator[dict[str, str]]:
    ports = {name: free_port() for name in ("websockets", "aiohttp", "ws")}
    commands = {
        "websockets": [sys.executable, str(TESTS / "echo_servers.py"), "websockets"],
        "aiohttp": [sys.executable, str(TESTS / "echo_servers.py"), "aiohttp"],
        "ws": ["node", str(TESTS / "js" / "echo.mjs")],
    }
    processes = []
    try:
        for name, port in ports.items():
            processes.append(start([*commands[name], str(port)], port))
        yield {name: f"ws://127.0.0.1:{port}/" for name, port in ports.items()}
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


@pytest.mark.timeout(300)
async def test_real_echo_servers_pass_the_whole_echo_audit(echo_servers: dict[str, str]) -> None:
    async def audit(url: str) -> tuple[list, float]:  # type: ignore[type-arg]
        started = time.monotonic()
        results = await run_audit(AuditOptions(url=url, cases=ECHO_GROUPS + ",S", flood=100,
                                               slow_seconds=6, concurrency=8))  # fmt: skip
        return results, time.monotonic() - started

    runs = await asyncio.gather(*(audit(url) for url in echo_servers.values()))
    for name, (results, seconds) in zip(echo_servers, runs, strict=True):
        summary = summarise(results)
        failed = {r.id: r.observations for r in results if r.verdict == FAILED}
        # Beyond Autobahn's groups, one real finding: aiohttp's reader does not check the
        # mask bit, so it answers an unmasked client frame (RFC 6455 5.1: MUST close).
        known = {"S5.1"} if name == "aiohttp" else set()
        # Clean Autobahn results include permessage-deflate: all three negotiate it.
        assert all(r.verdict != "UNIMPLEMENTED" for r in results), name
        assert set(failed) == known, f"{name}: {failed}"
        assert summary["cases"] >= 300, summary
        assert summary["verdicts"]["OK"] > 250, (name, summary["verdicts"])
        print(f"{name}: {summary['cases']} cases in {seconds:.1f} s: {summary['verdicts']}")
        assert seconds < 120, f"{name}: the echo run took {seconds:.0f} s"


BROKEN = [
    ("corrupt_big", "1.1", {"1.1.6", "1.1.7"}),
    ("no_pong", "2.1,2.4", {"2.1", "2.4"}),
    ("lenient", "3.1,4.1.1,4.2.2,6.3.1,6.20.1,7.9.1,S5", {"3.1", "4.1.1", "4.2.2", "6.3.1",
                                                         "6.20.1", "7.9.1", "S5.1"}),
    ("no_reassembly", "5.3,5.19", {"5.3", "5.19"}),
    ("no_close_reply", "7.3.3,7.7.1", {"7.3.3", "7.7.1"}),
    ("masked_replies", "1.1.2,2.2", {"1.1.2", "2.2"}),
    ("drop_big", "9.1.2", {"9.1.2"}),
    ("truncate_big", "10", {"10.1.1"}),
    ("bad_deflate_answer", "12.1.1,13.1.1", {"12.1.1", "13.1.1"}),
    ("deflate_not_inflated", "12.1.1,12.2.1,S3", {"12.1.1", "12.2.1"}),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "cases", "expected"), BROKEN, ids=[b[0] for b in BROKEN])
async def test_each_broken_server_is_caught(fault: str, cases: str, expected: set[str]) -> None:
    async with BrokenServer(fault) as server:
        results = await run_audit(AuditOptions(url=server.url, cases=cases))
    failed = {r.id for r in results if r.verdict == FAILED}
    assert expected <= failed, [(r.id, r.observations) for r in results]


async def test_a_correct_server_of_the_same_kind_passes_those_cases() -> None:
    """The control: the broken server without a fault passes every case the faults fail."""
    async with BrokenServer() as server:
        cases = ",".join(c for _, c, _ in BROKEN)
        results = await run_audit(AuditOptions(url=server.url, cases=cases))
    assert not [(r.id, r.observations) for r in results if r.verdict == FAILED]


async def test_a_fake_centrifugo_server_fails_the_protocol_groups() -> None:
    async with FakeCentrifugo() as server:
        results = await run_audit(
            AuditOptions(url=server.url, mode="centrifugo", cases="C1,C2,C3,C4,C6.1,C6.3")
        )
    verdicts = {r.id: r.verdict for r in results}
    for case_id in ("C1.2", "C1.3", "C1.4", "C2.1", "C2.2", "C3.1", "C4.1", "C6.1"):
        assert verdicts[case_id] == FAILED, (case_id, verdicts)
    assert verdicts["C1.1"] == "OK"


async def test_reports_have_the_documented_shape() -> None:
    async with BrokenServer("no_pong") as server:
        options = AuditOptions(url=server.url, cases="1.1.2,2.1")
        results = await run_audit(options)
    report = document(results, options, 1.0)
    case = report["cases"][0]
    for key in ("id", "group", "description", "behavior", "close", "duration_ms",
                "expectation", "observation", "wire", "remote_close_code"):  # fmt: skip
        assert key in case
    assert report["summary"]["verdicts"][FAILED] == 1 and not report["summary"]["passed"]
    assert any("ping" in entry[2] for entry in report["cases"][1]["wire"])
    page = render(report)
    assert "2.1" in page and "FAILED" in page and "<script" not in page and "http" not in page


async def test_refuses_remote_hosts_and_unreachable_servers() -> None:
    with pytest.raises(AuditError, match="loopback"):
        await run_audit(AuditOptions(url="ws://192.0.2.1:80/"))
    with pytest.raises(AuditError, match="cannot connect"):
        await run_audit(AuditOptions(url=f"ws://127.0.0.1:{free_port()}/"))


def test_cli_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hubbub.cli.main", "audit", f"ws://127.0.0.1:{free_port()}/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "cannot connect" in done.stderr
    assert "Traceback" not in done.stderr


async def test_wss_targets_are_verified_against_the_given_ca(
    start_server: ServerFactory, tls_files: TlsFiles
) -> None:
    server = await start_server(tls=True)
    url = server.ws_url
    assert url.startswith("wss://")
    with pytest.raises(AuditError, match="certificate verify failed"):
        await run_audit(AuditOptions(url=url, mode="centrifugo", cases="1.1.2"))
    results = await run_audit(
        AuditOptions(url=url, mode="centrifugo", cases="1.1.2,6.4.3", ca=str(tls_files.ca))
    )
    assert [(r.id, r.verdict) for r in results] == [("1.1.2", "OK"), ("6.4.3", "OK")]
    for options, message in [
        (AuditOptions(url=url, ca="/nonexistent/ca.pem"), "--ca /nonexistent/ca.pem"),
        (AuditOptions(url=url.replace("wss:", "ws:"), ca=str(tls_files.ca)), "for wss://"),
    ]:
        with pytest.raises(AuditError, match=message):
            await run_audit(options)
