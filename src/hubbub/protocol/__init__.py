"""The client protocol, sans I/O: wire types, codec and the per-connection state machine."""

from hubbub.protocol.connection import ClientProtocol, ProtocolViolation, Received, State

__all__ = ["ClientProtocol", "ProtocolViolation", "Received", "State"]
