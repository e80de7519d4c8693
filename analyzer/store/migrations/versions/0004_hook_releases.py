"""Flagger webhook releases: the evidence per (namespace, name, checksum) moves from process memory to the store,
so every replica (and a restarted one) continues the same release.

A store written by `create_all` after this table came but before migrations holds it already (it is stamped
at 0001), so it is created only where it is missing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("hook_releases"):
        return
    op.create_table(
        "hook_releases",
        sa.Column("namespace", sa.String(63), primary_key=True),
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("checksum", sa.String(256), primary_key=True),
        sa.Column("spec_name", sa.String(253), nullable=False),
        sa.Column("spec_text", sa.Text, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("last_end", Time),
        sa.Column("intervals", sa.Integer, nullable=False),
        sa.Column("verdicts", sa.JSON, nullable=False),
        sa.Column("failed", sa.JSON),
        sa.Column("scenario", sa.String(100)),
        sa.Column("seed", sa.BigInteger),
        sa.Column("canary_weight", sa.Integer),
        sa.Column("sim_state", sa.JSON),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
    )
    op.create_index("ix_hook_releases_updated", "hook_releases", ["updated_at"])


def downgrade() -> None:
    op.drop_table("hook_releases")
