"""The facts a method's set-up reports, kept with the run: σ per depth position, attention kernel, and the like.

Revision ID: 0003_i8_run_setup
Revises: 0002_run_weights
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from pacebench.store.types import SafeJSON

revision = "0003_i8_run_setup"
down_revision = "0002_run_weights"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("setup", SafeJSON, nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("setup")
