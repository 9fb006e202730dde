"""issue 13: the `speed` table written by `pacebench bench`.

Revision ID: 0005_i13_speed
Revises: 0004_i10_workers
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from pacebench.store.types import SafeFloat, SafeJSON

revision = "0005_i13_speed"
down_revision = "0004_i10_workers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "speed",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("device", sa.String(32), nullable=False),
        sa.Column("device_name", sa.String(128), nullable=False),
        sa.Column("versions", SafeJSON, nullable=False),
        sa.Column("backbone", sa.String(128), nullable=False),
        sa.Column("adapter", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("batch", sa.Integer, nullable=False),
        sa.Column("image_size", sa.Integer, nullable=False),
        sa.Column("patch_size", sa.Integer, nullable=True),
        sa.Column("classes", sa.Integer, nullable=False),
        sa.Column("precision", sa.String(8), nullable=False),
        sa.Column("compile", sa.Boolean, nullable=False),
        sa.Column("threads", sa.Integer, nullable=False),
        sa.Column("warmup", sa.Integer, nullable=False),
        sa.Column("steps", sa.Integer, nullable=False),
        sa.Column("method", sa.String(64), nullable=False, index=True),
        sa.Column("ms_per_step", SafeFloat, nullable=False),
        sa.Column("images_per_s", SafeFloat, nullable=False),
        sa.Column("gflop_per_step", SafeFloat, nullable=False),
        sa.Column("time_ratio", SafeFloat, nullable=False),
        sa.Column("flop_ratio", SafeFloat, nullable=False),
        sa.Column("peak_mib", SafeFloat, nullable=True),
        sa.Column("mfu", SafeFloat, nullable=True),
        sa.Column("times_ms", SafeJSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("speed")
