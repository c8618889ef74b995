"""Configuration files parsed as their suffix says (JSON, TOML, YAML; JSON otherwise).

Rule: standard library only (PyYAML is imported for a YAML file only): ``hubbub
serve`` reads where to listen with it before the model is loaded
(server/early.py), and the loader reads the whole file with it. Every parse
error is a ValueError.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

_FORMATS = {".json": "JSON", ".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}


def file_format(path: Path) -> str:
    """``"JSON"``, ``"TOML"`` or ``"YAML"``, from ``path``'s suffix."""
    return _FORMATS.get(path.suffix.lower(), "JSON")


def parse(text: str, fmt: str) -> object:
    """``text`` parsed as ``fmt`` (an empty file is an empty object); ValueError."""
    if fmt == "TOML":
        return tomllib.loads(text)
    if not text.strip():
        return {}
    if fmt == "YAML":
        return _yaml(text)
    return json.loads(text)


def _yaml(text: str) -> object:
    import yaml  # type: ignore[import-untyped, unused-ignore]  # costs start-up time

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
