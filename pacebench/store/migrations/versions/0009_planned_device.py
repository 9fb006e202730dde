"""The kind of device a run was planned for (cpu, cuda): a worker is handed only runs planned for its own kind, so
runs planned in bf16 for CUDA are never trained on a CPU. Rows from before have none and any worker may train them.

Revision ID: 0009_planned_device
Revises: 0008_predictions
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_planned_device"
down_revision = "0008_predictions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("planned_device", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("planned_device")
