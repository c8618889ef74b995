"""``hubbub serve --workers N``: N processes share one port (SO_REUSEPORT).

Rule: the parent only supervises: it forks the workers before any event loop
exists, forwards SIGTERM/SIGINT to them, and exits when they have exited. When
one worker exits on its own, the others are stopped too (a server quietly
running with fewer workers than asked is worse than one that stops), and the
parent's exit code is the first non-zero one. The kernel spreads new
connections over the workers; they share channels through the engine, which
must therefore be Redis.

Start-up is not a window: SIGTERM/SIGINT are blocked while the workers are
forked and the forwarding handler is installed before they are unblocked, so
a signal that arrives meanwhile waits and is then forwarded to every worker
(none is orphaned). Each worker restores the default handlers and unblocks
them before anything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import NoReturn

from hubbub.config.model import Config

log = logging.getLogger("hubbub.server")


def workers_error(config: Config, workers: int) -> str | None:
    """Why ``config`` cannot run with ``workers`` processes, or None."""
    if workers < 1:
        return f"--workers must be at least 1, got {workers}"
    if workers == 1:
        return None
    shared = config.engine.type == "redis" or (
        config.broker.enabled and config.broker.type == "nats"
    )
    if not shared:
        return (
            f'--workers {workers} needs engine.type "redis" (got {config.engine.type!r}) '
            'or broker.type "nats": each worker is a node, and only Redis or NATS share '
            "channels between nodes"
        )
    if config.http_server.port == 0:
        return f"--workers {workers} needs a fixed http_server.port, not 0"
    return None


def run_workers(
    config: Config,
    workers: int,
    *,
    ready: Callable[[int], None] | None = None,
) -> int:
    """Fork ``workers`` servers on the same port and supervise them; the exit code.

    ``ready(port)`` is called by the first worker once it listens (the port is
    served from then on), not by each: the served URLs are printed once."""
    from hubbub.server.run import run  # imported before forking, shared by the children

    children: set[int] = set()
    stopping = False

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    try:
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        for index in range(workers):
            pid = os.fork()
            if pid == 0:  # the worker; the first one tells what is served (once)
                _worker(run, config, index, ready if index == 0 else None, mask)
            children.add(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a pending signal is forwarded now
    log.info("supervising %d workers: %s", workers, " ".join(map(str, sorted(children))))
    exit_code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and exit_code == 0:
            exit_code = code if code > 0 else 128 - code
        if not stopping:
            log.warning("worker %d exited (%d): stopping the others", pid, code)
            forward(signal.SIGTERM, None)
    return exit_code


def _worker(
    run: Callable[..., None],
    config: Config,
    index: int,
    ready: Callable[[int], None] | None,
    mask: Iterable[int],
) -> NoReturn:
    """The body of a forked worker: serve until stopped, then leave without cleanup."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        run(config, ready=ready, reuse_port=True, exit_after=True)
    except OSError as exc:
        print(
            f"error: worker {index}: http_server: cannot listen: {exc.strerror or exc}",
            file=sys.stderr,
        )
        code = 1
    except BaseException:
        log.exception("worker %d failed", index)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
