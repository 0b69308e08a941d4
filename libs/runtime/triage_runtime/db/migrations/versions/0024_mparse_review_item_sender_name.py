"""review items keep the email sender's display name ("Müller, Anna") beside the address

Items opened before this revision have no name; the review page shows the address alone.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_item", sa.Column("email_sender_name", sa.String(320)))


def downgrade() -> None:
    op.drop_column("review_item", "email_sender_name")
