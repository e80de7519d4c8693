"""`db upgrade`, `db prune` and `history export`: looking after the history store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from analyzer.errors import UserError

DEFAULT_DB = "sqlite:///canary-analyzer.db"
db_app = typer.Typer(no_args_is_help=True, help="The history store's schema and retention.")
out = Console(soft_wrap=True, highlight=False)


@db_app.command("upgrade")
def upgrade(db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB) -> None:
    """Create or migrate the store to the newest schema (keeps every row)."""
    from analyzer.store.migrate import current, head, migrate
    from analyzer.store.sql import make_engine

    migrate(db)
    engine = make_engine(db)
    try:
        with engine.connect() as conn:
            out.print(f"{db}: schema at revision {current(conn)} (head {head()})", markup=False)
    finally:
        engine.dispose()


@db_app.command("prune")
def prune(
    older_than: Annotated[str, typer.Option(help="Delete rollouts finished longer ago than this, e.g. 90d")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted")] = False,
) -> None:
    """Retention, when asked: delete finished rollouts older than a limit, and Flagger webhook releases not called
    for as long. Running rollouts are kept."""
    from analyzer.app.cli.backtest import parse_age
    from analyzer.store.retention import prune_all

    age = parse_age(older_than)
    if age is None:
        raise UserError(f"--older-than: {older_than!r} is not an age such as 90d, 12h or 30m")
    try:
        pruned = prune_all(db, age, dry_run=dry_run)
    except FileNotFoundError:
        raise UserError(f"--db: no history store at {db!r}") from None
    verb = "would delete" if dry_run else "deleted"
    ids = pruned.rollouts
    out.print(f"{verb} {len(ids)} rollouts finished before {older_than} ago" + (": " + ", ".join(ids) if ids else ""),
              markup=False)
    if pruned.hook_releases:
        out.print(f"{verb} {len(pruned.hook_releases)} Flagger webhook releases not called for {older_than}",
                  markup=False)


def export(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the Parquet files")],
    db: Annotated[str, typer.Option(help="SQLAlchemy URL of the history store")] = DEFAULT_DB,
) -> None:
    """Write the history frames (rollouts, ticks, verdicts, events, actions) as Parquet, one file each."""
    from analyzer.store.export import export_parquet

    try:
        paths = export_parquet(db, out_dir)
    except FileNotFoundError:
        raise UserError(f"--db: no history store at {db!r}") from None
    for p in paths:
        out.print(str(p), markup=False)
