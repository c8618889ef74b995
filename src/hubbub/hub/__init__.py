"""The hub: sessions, subscriptions, fan-out, hooks and the application API."""

from hubbub.hub.hub import Hub
from hubbub.hub.session import Session

__all__ = ["Hub", "Session"]
