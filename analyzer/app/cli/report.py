"""`canary-analyzer report ID --out report.html`: one rollout as a self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from analyzer.errors import UserError


def command(
    rollout_id: Annotated[str, typer.Argument(help="Rollout id from `history list`")],
    out: Annotated[Path, typer.Option(help="Where to write the page")] = Path("report.html"),
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = "sqlite:///canary-analyzer.db",
) -> None:
    """Write a self-contained HTML report of one rollout (opens offline, fetches nothing)."""
    from analyzer.app.web.report import render_report  # pandas and SQLAlchemy load only for this command

    try:
        page = render_report(db, rollout_id)
    except FileNotFoundError:
        raise UserError(f"--db: no history store at {db!r}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out} ({len(page) // 1024} KiB)")
