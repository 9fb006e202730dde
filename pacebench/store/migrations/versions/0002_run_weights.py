"""Trained adapter and head weights of finished runs.

Revision ID: 0002_run_weights
Revises: 0001_v0_1_0
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_run_weights"
down_revision = "0001_v0_1_0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_weights",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_weights")
