"""review_item: a partial index on the quality samples, so live precision (read every few
seconds by the review UI) never scans every review item ever made

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_review_item_quality_sample",
        "review_item",
        ["created_at"],
        postgresql_where="reason = 'quality_sample'",
    )


def downgrade() -> None:
    op.drop_index("ix_review_item_quality_sample", "review_item")
