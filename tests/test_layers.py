"""The import rule of the architecture: a layer imports only from layers below it.

codes, errors < config < protocol, websocket < engines, auth < proxy, webhooks < hub
< consumers < server, asgi < cli, tools
"""

from __future__ import annotations

import ast
from pathlib import Path

import hubbub

ROOT = Path(hubbub.__file__).parent

LAYER = {
    "codes": 0,
    "errors": 0,
    "version": 0,
    "tasks": 0,
    "lazy": 0,
    "config": 1,
    "protocol": 2,
    "websocket": 2,
    "engines": 3,
    "auth": 3,
    # Calls to the application backend: above engines and auth (they may use the
    # engines' Redis settings), below the hub that asks them.
    "proxy": 3.5,
    "webhooks": 3.5,
    "hub": 4,
    # Run the API's commands read from queues: above the hub, handed the API's
    # dispatch by the server that starts them.
    "consumers": 4.5,
    "server": 5,
    "cli": 6,
    "tools": 6,
    "asgi": 5,
}


def layer_of(module: str) -> float | None:
    parts = module.split(".")
    if parts[0] != "hubbub" or len(parts) < 2 or parts[1] == "__init__":
        return None
    return LAYER[parts[1]]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_every_package_has_a_layer() -> None:
    packages = {p.stem for p in ROOT.glob("*.py")} | {
        p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()
    }
    packages.discard("__init__")
    assert packages <= set(LAYER), packages - set(LAYER)


def test_imports_point_down() -> None:
    violations = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT.parent).with_suffix("")
        own = layer_of(".".join(relative.parts))
        if own is None:  # hubbub/__init__.py: the public facade may import anything
            continue
        for module in imports_of(path):
            other = layer_of(module)
            if other is not None and other > own:
                violations.append(f"{relative} imports {module}")
    assert not violations, violations
