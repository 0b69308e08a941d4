"""review_item: the standing decision's event id (for retracting it on undo or reopen),
escalation, and an index for a reviewer's last decision; review_comment: comments and
decision notes, removed with their item

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_item", sa.Column("decision_event_id", UUID(as_uuid=True)))
    op.add_column("review_item", sa.Column("escalated_at", sa.DateTime(timezone=True)))
    op.add_column("review_item", sa.Column("escalated_by", sa.String(80)))
    op.add_column("review_item", sa.Column("escalation_reason", sa.String(500)))
    op.create_index(
        "ix_review_item_escalated",
        "review_item",
        ["due_at"],
        postgresql_where="escalated_at IS NOT NULL AND status IN ('pending', 'claimed')",
    )
    op.create_index(
        "ix_review_item_decided_by_at",
        "review_item",
        ["decided_by", "decided_at"],
        postgresql_where="status = 'decided'",
    )
    op.create_table(
        "review_comment",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "review_item_id",
            sa.BigInteger,
            sa.ForeignKey("review_item.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("author", sa.String(80), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.CheckConstraint("kind IN ('comment', 'note')", name="ck_review_comment_kind"),
    )
    op.create_index("ix_review_comment_review_item_id", "review_comment", ["review_item_id"])


def downgrade() -> None:
    op.drop_table("review_comment")
    op.drop_index("ix_review_item_escalated", "review_item")
    op.drop_index("ix_review_item_decided_by_at", "review_item")
    for column in ("escalation_reason", "escalated_by", "escalated_at", "decision_event_id"):
        op.drop_column("review_item", column)
