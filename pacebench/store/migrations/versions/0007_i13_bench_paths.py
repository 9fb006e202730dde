"""Which training fast paths a speed measurement ran with (`pacebench bench --paths`); earlier rows ran all of them.

Revision ID: 0007_i13_bench_paths
Revises: 0006_i12_diagnostics
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_i13_bench_paths"
down_revision = "0006_i12_diagnostics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("speed") as batch:
        batch.add_column(sa.Column("paths", sa.String(16), nullable=False, server_default="fast"))


def downgrade() -> None:
    with op.batch_alter_table("speed") as batch:
        batch.drop_column("paths")
