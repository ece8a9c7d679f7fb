"""The ``bridge`` command: serve, worker, sandbox, resync, check. The top layer."""

from bridge.cli.commands import main

__all__ = ["main"]
