"""replay corrections: withdrawn routings, closed review items, the correction outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("routing_decision", sa.Column("withdrawn_at", sa.DateTime(timezone=True)))
    op.drop_constraint("ck_review_item_status", "review_item", type_="check")
    op.create_check_constraint(
        "ck_review_item_status",
        "review_item",
        "status IN ('pending', 'claimed', 'decided', 'closed')",
    )
    op.create_table(
        "routing_correction",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("replay_id", sa.String(40), nullable=False),
        sa.Column("document_id", sa.String(36), nullable=False),
        sa.Column("from_queue", sa.String(40)),
        sa.Column("to_queue", sa.String(40)),
        sa.Column("from_model_version", sa.String(80)),
        sa.Column("to_model_version", sa.String(80), nullable=False),
        sa.Column("confidence", sa.Float),
        sa.Column("withdrawn_event_id", UUID(as_uuid=True)),
        sa.Column("routed_event_id", UUID(as_uuid=True)),
        sa.Column("events", JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_routing_correction_unpublished",
        "routing_correction",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_index("ix_routing_correction_replay", "routing_correction", ["replay_id"])


def downgrade() -> None:
    op.drop_index("ix_routing_correction_replay", table_name="routing_correction")
    op.drop_index("ix_routing_correction_unpublished", table_name="routing_correction")
    op.drop_table("routing_correction")
    op.execute("DELETE FROM review_item WHERE status = 'closed'")
    op.drop_constraint("ck_review_item_status", "review_item", type_="check")
    op.create_check_constraint(
        "ck_review_item_status", "review_item", "status IN ('pending', 'claimed', 'decided')"
    )
    op.drop_column("routing_decision", "withdrawn_at")
