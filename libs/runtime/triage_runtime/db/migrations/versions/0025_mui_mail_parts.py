"""mail parts in the review UI: the MIME part a review item's document is, and an index to
find a mail's parts (the documents whose parent is its body)

Items opened before have no part; the item page then shows none.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_item", sa.Column("email_part", sa.String(100), nullable=True))
    op.create_index(
        "ix_document_parent_document_id",
        "document",
        ["parent_document_id"],
        postgresql_where=sa.text("parent_document_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_document_parent_document_id", table_name="document")
    op.drop_column("review_item", "email_part")
