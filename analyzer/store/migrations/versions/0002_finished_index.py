"""Index finished rollouts by time: retention and `--since` selections scan it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    indexes = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("rollouts")}
    if "ix_rollouts_finished" not in indexes:
        op.create_index("ix_rollouts_finished", "rollouts", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_finished", table_name="rollouts")
