"""review item: why the model thinks so (the explanation the classified event carried) and
the threshold its label needed to be routed without review

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Items opened before have neither; the item page says so.
    op.add_column("review_item", sa.Column("explanation", postgresql.JSONB(), nullable=True))
    op.add_column("review_item", sa.Column("threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("review_item", "threshold")
    op.drop_column("review_item", "explanation")
