"""Fig. 2's readings per epoch: the task-loss gradient norm on train and held-out, the FP-distance on held-out.

Revision ID: 0006_i12_diagnostics
Revises: 0005_i13_speed
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

from pacebench.store.types import SafeFloat

revision = "0006_i12_diagnostics"
down_revision = "0005_i13_speed"
branch_labels = None
depends_on = None

COLUMNS = ("grad_norm_task_train", "grad_norm_task_heldout", "fp_distance_heldout")


def upgrade() -> None:
    with op.batch_alter_table("epochs") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, SafeFloat, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("epochs") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
