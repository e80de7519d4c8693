"""Terminal output that survives odd environments: an ASCII-only locale and a terminal a few columns wide."""

from __future__ import annotations

import sys

from rich.console import Console

# Below this many columns a table has no room for its cells; render as if the terminal were this wide.
MIN_WIDTH = 80


def tolerant_streams() -> None:
    """Characters the output encoding cannot hold (e.g. "–" with PYTHONIOENCODING=ascii) become '?', not a crash."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and (getattr(stream, "errors", None) or "strict") == "strict":
            reconfigure(errors="replace")


def console(*, stderr: bool = False) -> Console:
    """A rich console at least MIN_WIDTH wide (COLUMNS=5 would otherwise draw empty tables)."""
    con = Console(stderr=stderr, soft_wrap=True, highlight=False)
    if con.width < MIN_WIDTH:
        con.width = MIN_WIDTH
    return con
