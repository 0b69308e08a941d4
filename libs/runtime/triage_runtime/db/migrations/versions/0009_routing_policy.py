"""routing policy: versioned, append-only thresholds and canary/shadow traffic

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "routing_policy",
        sa.Column("version", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("thresholds", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column(
            "canary_partitions",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'"),
        ),
        sa.Column("shadow_sample", sa.Float(), nullable=False, server_default="0"),
        sa.Column("review_sla_hours", sa.Float(), nullable=False, server_default="4"),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.CheckConstraint(
            "shadow_sample >= 0 AND shadow_sample <= 1", name="ck_routing_policy_shadow_sample"
        ),
        sa.CheckConstraint("review_sla_hours > 0", name="ck_routing_policy_review_sla"),
    )
    op.execute(
        """
        CREATE FUNCTION routing_policy_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'routing_policy is append-only (% refused)', TG_OP;
        END;
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER routing_policy_append_only
        BEFORE UPDATE OR DELETE ON routing_policy
        FOR EACH ROW EXECUTE FUNCTION routing_policy_append_only()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS routing_policy_append_only ON routing_policy")
    op.execute("DROP FUNCTION IF EXISTS routing_policy_append_only()")
    op.drop_table("routing_policy")
