"""Work queue: claim tokens, attempts and leases on runs; in-run checkpoints; worker heartbeats.

Revision ID: 0004_i10_workers
Revises: 0003_i8_run_setup
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from pacebench.store.types import SafeJSON

revision = "0004_i10_workers"
down_revision = "0003_i8_run_setup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("claim", sa.String(32), nullable=True))
        batch.add_column(sa.Column("host", sa.String(128), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer, nullable=True))
        batch.add_column(sa.Column("lease_s", sa.Float, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "checkpoints",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "workers",
        sa.Column("name", sa.String(160), primary_key=True),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=True),
        sa.Column("epoch", sa.Integer, nullable=True),
        sa.Column("info", SafeJSON, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("checkpoints")
    with op.batch_alter_table("runs") as batch:
        for column in ("attempts", "lease_s", "pid", "host", "claim"):
            batch.drop_column(column)
