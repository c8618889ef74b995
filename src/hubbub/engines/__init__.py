"""Engines: broker, history and presence behind one interface (memory now, Redis next)."""

from hubbub.engines.base import Engine, EventHandler, HistoryOptions, HistoryQuery
from hubbub.engines.memory import MemoryEngine

__all__ = ["Engine", "EventHandler", "HistoryOptions", "HistoryQuery", "MemoryEngine"]
