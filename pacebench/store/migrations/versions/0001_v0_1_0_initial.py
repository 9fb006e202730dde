"""pacebench 0.1.0: runs and epochs.

Revision ID: 0001_v0_1_0
Revises:
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

from pacebench.store.types import SafeFloat, SafeJSON

revision = "0001_v0_1_0"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("suite", sa.String(64), nullable=False, index=True),
        sa.Column("dataset", sa.String(128), nullable=False, index=True),
        sa.Column("data_options", SafeJSON, nullable=False),
        sa.Column("backbone", sa.String(128), nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("adapter", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("method", sa.String(64), nullable=False, index=True),
        sa.Column("method_config", SafeJSON, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("hparams", SafeJSON, nullable=False),
        sa.Column("phase", sa.String(16), nullable=False, index=True),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, index=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("device", sa.String(64), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("versions", SafeJSON, nullable=False),
        sa.Column("git_commit", sa.String(64), nullable=True),
        sa.Column("trainable_params", sa.Integer, nullable=True),
        sa.Column("adapter_params", sa.Integer, nullable=True),
        sa.Column("head_params", sa.Integer, nullable=True),
        sa.Column("metrics", SafeJSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=True),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
    )
    op.create_table(
        "epochs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("epoch", sa.Integer, nullable=False),
        sa.Column("lr", SafeFloat, nullable=True),
        sa.Column("loss", SafeFloat, nullable=True),
        sa.Column("parts", SafeJSON, nullable=False),
        sa.Column("train_acc", SafeFloat, nullable=True),
        sa.Column("val_acc", SafeFloat, nullable=True),
        sa.Column("test_acc", SafeFloat, nullable=True),
        sa.Column("evals", SafeJSON, nullable=False),
        sa.Column("grad_norm_mean", SafeFloat, nullable=True),
        sa.Column("grad_norm_max", SafeFloat, nullable=True),
        sa.Column("fp_distance", SafeFloat, nullable=True),
        sa.Column("wall_time", SafeFloat, nullable=True),
        sa.UniqueConstraint("run_id", "epoch", name="uq_epochs_run_epoch"),
    )
    op.create_index("ix_epochs_run", "epochs", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_epochs_run", "epochs")
    op.drop_table("epochs")
    op.drop_table("runs")
