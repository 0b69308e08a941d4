"""review queue and routing decisions

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_item",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.String(36), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predicted_label", sa.String(40)),
        sa.Column("confidence", sa.Float()),
        sa.Column("probabilities", postgresql.JSONB()),
        sa.Column("model_version", sa.String(80)),
        sa.Column("model_role", sa.String(16)),
        sa.Column("extraction_status", sa.String(16), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_name", sa.String(80), nullable=False),
        sa.Column("filename", sa.String(255)),
        sa.Column("media_type", sa.String(127), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trace_id", sa.String(32), nullable=False),
        sa.Column("classified_event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("decided_label", sa.String(40)),
        sa.Column("decided_by", sa.String(80)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("note", sa.Text()),
        sa.CheckConstraint(
            "status IN ('pending', 'claimed', 'decided')", name="ck_review_item_status"
        ),
    )
    op.create_index("ix_review_item_status_due", "review_item", ["status", "due_at"])
    op.create_table(
        "routing_decision",
        sa.Column("document_id", sa.String(36), primary_key=True),
        sa.Column("queue", sa.String(40), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("decided_by", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(80)),
        sa.Column("model_role", sa.String(16)),
        sa.Column("confidence", sa.Float()),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("routing_decision")
    op.drop_index("ix_review_item_status_due", table_name="review_item")
    op.drop_table("review_item")
