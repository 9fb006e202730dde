"""Each finished run's per-example predictions (one row per run and evaluation set, arrays as .npy bytes; each list
of example ids stored once), and the fingerprint of the data a run trained on (runs from before have "").

Revision ID: 0008_predictions
Revises: 0007_i13_bench_paths
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_predictions"
down_revision = "0007_i13_bench_paths"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "example_ids",
        sa.Column("digest", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("ids", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("eval_set", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("ids_digest", sa.String(32), sa.ForeignKey("example_ids.digest"), nullable=False),
        sa.Column("predicted", sa.LargeBinary, nullable=False),
        sa.Column("target", sa.LargeBinary, nullable=False),
        sa.Column("correct", sa.LargeBinary, nullable=True),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("data_fingerprint", sa.String(32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("data_fingerprint")
    op.drop_table("predictions")
    op.drop_table("example_ids")
