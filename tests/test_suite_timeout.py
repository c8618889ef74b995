"""The suite's own guard: a test that waits for ever ends the run, it does not hang CI.

Rule: pytest-timeout runs with ``timeout_method = "thread"`` (pyproject.toml): a
test waiting in uvloop's epoll with nothing to wake it is past the reach of the
signal method (the loop swallows its exception, or never runs its handler). Checked
by running pytest on such a test in a child process, bounded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HUNG_TEST = """
import asyncio

import pytest
import uvloop


async def wait_for_ever() -> None:
    await asyncio.get_running_loop().create_future()


@pytest.mark.timeout(2)
def test_waits_for_ever() -> None:
    uvloop.run(wait_for_ever())  # the tests' loop, idle in epoll: nothing wakes it
"""


def test_a_test_that_waits_for_ever_ends_the_run_with_its_stacks(tmp_path: Path) -> None:
    (tmp_path / "test_hung.py").write_text(HUNG_TEST)
    # The project's own pytest settings (pyproject.toml), the hung test elsewhere.
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
         "-c", str(ROOT / "pyproject.toml"), str(tmp_path / "test_hung.py")],
        capture_output=True,
        text=True,
        timeout=60,  # a hang fails this test here instead of holding the run
        cwd=ROOT,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Timeout" in output
    assert "wait_for_ever" in output  # the stacks of every thread, the test's included
