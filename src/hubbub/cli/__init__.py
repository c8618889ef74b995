"""Command-line interface of hubbub."""
