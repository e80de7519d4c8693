"""The daemon's tables: operator commands, idempotency keys, leader leases and the routes rollouts own.

A store written by `create_all` after these tables came but before migrations holds them already (it is
stamped at 0001), so each is created only where it is missing.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade() -> None:
    if _missing("commands"):
        op.create_table(
            "commands",
            sa.Column("id", Id, primary_key=True, autoincrement=True),
            sa.Column("rollout_id", sa.String(200), sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("command", sa.String(16), nullable=False),
            sa.Column("created_at", Time, nullable=False),
            sa.Column("tick", sa.Integer),
        )
        op.create_index("ix_commands_rollout", "commands", ["rollout_id", "id"])
    if _missing("idempotency_keys"):
        op.create_table(
            "idempotency_keys",
            sa.Column("key", sa.String(200), primary_key=True),
            sa.Column("rollout_id", sa.String(200), sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("created_at", Time, nullable=False),
        )
    if _missing("leases"):
        op.create_table(
            "leases",
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("holder", sa.String(253)),
            sa.Column("expires_at", Time, nullable=False),
            sa.Column("transitions", sa.Integer, nullable=False),
        )
    if _missing("rollout_routes"):
        op.create_table(
            "rollout_routes",
            sa.Column("rollout_id", sa.String(200), sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
                      primary_key=True),
            sa.Column("namespace", sa.String(253), nullable=False),
            sa.Column("virtual_service", sa.String(253), nullable=False),
        )
        op.create_index("ix_rollout_routes_vs", "rollout_routes", ["namespace", "virtual_service"])


def downgrade() -> None:
    for table in ("rollout_routes", "leases", "idempotency_keys", "commands"):
        op.drop_table(table)
