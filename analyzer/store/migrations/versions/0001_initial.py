"""The schema as `metadata.create_all` wrote it before migrations: stores from then are stamped here.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rollouts",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("baseline_subset", sa.String(253), nullable=False),
        sa.Column("canary_subset", sa.String(253), nullable=False),
        sa.Column("spec_text", sa.Text, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("meta", sa.JSON, nullable=False),
        sa.Column("initial_state", sa.JSON, nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("interval_seconds", sa.Double, nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32)),
        sa.Column("finished_at", Time),
    )
    op.create_index("ix_rollouts_name_created", "rollouts", ["name", "created_at"])
    op.create_index("ix_rollouts_phase", "rollouts", ["phase"])
    op.create_table(
        "ticks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(200), sa.ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tick", sa.Integer, nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("recorded_at", Time, nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("weights", sa.JSON, nullable=False),
        sa.Column("canary_weight", sa.Integer),
        sa.Column("header_route", sa.Boolean, nullable=False),
        sa.Column("decision", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
        sa.Column("obs_start", Time),
        sa.Column("obs_end", Time),
        sa.Column("baseline_requests", sa.BigInteger),
        sa.Column("baseline_errors", sa.BigInteger),
        sa.Column("baseline_le", sa.JSON),
        sa.Column("canary_requests", sa.BigInteger),
        sa.Column("canary_errors", sa.BigInteger),
        sa.Column("canary_le", sa.JSON),
        sa.Column("stale_series", sa.JSON),
        sa.Column("observation", sa.JSON),
    )
    op.create_index("ix_ticks_rollout_tick", "ticks", ["rollout_id", "tick"])
    op.create_table(
        "verdicts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("tick_id", Id, sa.ForeignKey("ticks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("gate", sa.Boolean, nullable=False),
        sa.Column("e_value", sa.Double),
        sa.Column("threshold", sa.Double),
        sa.Column("promotion_e_value", sa.Double),
        sa.Column("ratio", sa.Double),
        sa.Column("ci_lo", sa.Double),
        sa.Column("ci_hi", sa.Double),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_verdicts_tick", "verdicts", ["tick_id"])
    op.create_table(
        "actions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("tick_id", Id, sa.ForeignKey("ticks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("action", sa.JSON, nullable=False),
        sa.Column("ok", sa.Boolean),
        sa.Column("error", sa.Text),
        sa.Column("done_at", Time),
        sa.UniqueConstraint("tick_id", "seq", name="uq_actions_tick_seq"),
    )
    op.create_table(
        "events",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("rollout_id", sa.String(200), sa.ForeignKey("rollouts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tick", sa.Integer, nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_events_rollout", "events", ["rollout_id", "id"])


def downgrade() -> None:
    for table in ("events", "actions", "verdicts", "ticks", "rollouts"):
        op.drop_table(table)
