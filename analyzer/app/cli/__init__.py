"""The `canary-analyzer` command line: one module per command group, the Typer app in `main`."""

from analyzer.app.cli.main import main

__all__ = ["main"]
