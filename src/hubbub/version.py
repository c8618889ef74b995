"""The version of hubbub, in one place (reported in connect replies and the info API)."""

__version__ = "0.1.0"
