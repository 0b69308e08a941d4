"""review_item: full-text search over its document's text, email subject, sender and name

``search_text`` is the extracted text, stored by the review UI when it first reads the
document; ``search_vector`` is computed by PostgreSQL from it and the item's email subject,
sender and file name, and has a GIN index.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Kept in step with triage_runtime.db.models.REVIEW_SEARCH_VECTOR (a migration never imports
# the models: it must keep meaning what it meant when written).
VECTOR = (
    "setweight(to_tsvector('english', coalesce(email_subject, '')), 'A')"
    " || setweight(to_tsvector('english', coalesce(email_sender, '')), 'A')"
    " || setweight(to_tsvector('english', coalesce(filename, '')), 'B')"
    " || setweight(to_tsvector('english', coalesce(search_text, '')), 'C')"
)


def upgrade() -> None:
    op.add_column("review_item", sa.Column("search_text", sa.Text(), nullable=True))
    op.add_column(
        "review_item",
        sa.Column("search_vector", TSVECTOR(), sa.Computed(VECTOR, persisted=True)),
    )
    op.create_index(
        "ix_review_item_search", "review_item", ["search_vector"], postgresql_using="gin"
    )
    # The review UI looks for open items still without text every few seconds.
    op.create_index(
        "ix_review_item_unindexed",
        "review_item",
        ["id"],
        postgresql_where="search_text IS NULL AND status IN ('pending', 'claimed')",
    )


def downgrade() -> None:
    op.drop_index("ix_review_item_unindexed", "review_item")
    op.drop_index("ix_review_item_search", "review_item")
    op.drop_column("review_item", "search_vector")
    op.drop_column("review_item", "search_text")
