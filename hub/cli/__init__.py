"""The ``cohub`` command: `main` parses the arguments and runs one command module's handler."""

from hub.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
