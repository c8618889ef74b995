"""The ``checkconfig`` and ``genconfig`` commands.

Rule: each returns an exit status (0 or 1) and reports in one line per problem
on stderr (every problem of a config file, not only the first); an expected
failure (bad value, missing file, existing output) never shows a traceback.
Results go to stdout.
"""

from __future__ import annotations

import os
import sys

from hubbub.config.generate import FORMATS, generate_config
from hubbub.config.loader import connect_warnings, load_config
from hubbub.errors import ConfigError

__all__ = ["checkconfig", "genconfig"]


def checkconfig(path: str) -> int:
    """Load ``path`` (with the ``HUBBUB_*`` environment); print OK and which of the
    options it sets hubbub implements, or every problem.

    Warnings (ignored Centrifugo options, a configuration no client could
    connect with) do not fail the check.
    """
    if not os.path.isfile(path):
        what = "is not a file" if os.path.exists(path) else "does not exist"
        print(f"error: config file {path} {what}", file=sys.stderr)
        return 1
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    print(f"config OK: {path}")
    ignored = len(loaded.ignored)
    total = len(loaded.implemented) + ignored
    print(
        f"{total} option{'' if total == 1 else 's'} set: {len(loaded.implemented)} "
        f"implemented, {ignored} accepted but not implemented"
        + (f" ({', '.join(loaded.ignored)})" if ignored else "")
    )
    for warning in (*loaded.warnings, *connect_warnings(loaded.config)):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def genconfig(fmt: str, output: str | None) -> int:
    """Write a starter config in ``fmt`` to ``output`` (stdout if None); never overwrite."""
    try:
        text = generate_config(fmt)
    except ValueError:
        print(f"error: unknown format {fmt!r}: use one of {', '.join(FORMATS)}", file=sys.stderr)
        return 1
    if output is None or output == "-":
        sys.stdout.write(text)
        return 0
    try:
        # "x": fail if the file exists; 0o600: the file holds secrets.
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"error: {output} already exists: not overwriting it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: can not create {output}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    print(f"wrote {output}", file=sys.stderr)
    return 0
