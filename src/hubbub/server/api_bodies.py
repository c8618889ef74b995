"""Decoding the body of a server API request into its method's shape.

Rule: a body that is not valid JSON of the shape is ``BadParams`` (the API
answers HTTP 400); nothing else is raised.
"""

from __future__ import annotations

from typing import Any

import msgspec


class BadParams(Exception):
    """The body does not have the method's shape (HTTP 400)."""


def decode(raw: msgspec.Raw | bytes, shape: type[Any]) -> Any:
    try:
        return msgspec.json.decode(raw, type=shape)
    except msgspec.DecodeError as exc:
        raise BadParams(str(exc)) from exc
    except RecursionError:
        raise BadParams("JSON nested too deep") from None
