"""routing policy: the quality sample (a share of confidently routed documents also sent to
blind review) and the target precision its live measurement is held to

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "routing_policy",
        sa.Column("quality_sample", sa.Float(), nullable=False, server_default="0"),
    )
    op.add_column(
        "routing_policy",
        sa.Column("target_precision", sa.Float(), nullable=False, server_default="0.95"),
    )
    op.create_check_constraint(
        "ck_routing_policy_quality_sample",
        "routing_policy",
        "quality_sample >= 0 AND quality_sample <= 1",
    )
    op.create_check_constraint(
        "ck_routing_policy_target_precision",
        "routing_policy",
        "target_precision > 0 AND target_precision <= 1",
    )


def downgrade() -> None:
    op.drop_constraint("ck_routing_policy_target_precision", "routing_policy")
    op.drop_constraint("ck_routing_policy_quality_sample", "routing_policy")
    op.drop_column("routing_policy", "target_precision")
    op.drop_column("routing_policy", "quality_sample")
