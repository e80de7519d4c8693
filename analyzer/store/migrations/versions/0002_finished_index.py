"""Index finished rollouts by time: retention and `--since` selections scan it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_rollouts_finished", "rollouts", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_finished", table_name="rollouts")
