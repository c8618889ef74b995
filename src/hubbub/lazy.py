"""Package attributes imported on first use (PEP 562).

Rule: a package whose ``__init__`` re-exports names from heavy modules lists
them as ``{module: (name, ...)}`` and gets its ``__getattr__`` and ``__dir__``
from ``exports``; the modules are imported when a name is first read, not with
the package (``hubbub serve`` imports packages before it binds its port, and
the whole stack costs more start-up time than the server needs before then).
Standard library only.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def exports(
    package: str, sources: Mapping[str, tuple[str, ...]], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` (its ``globals()``: ``namespace``)."""
    module_of = {name: module for module, names in sources.items() for name in names}

    def getattr_(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # the next access is a plain attribute
        return value

    def dir_() -> list[str]:
        return sorted(namespace.get("__all__", module_of))

    return getattr_, dir_
