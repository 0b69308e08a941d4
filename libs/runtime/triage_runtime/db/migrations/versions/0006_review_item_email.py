"""review items keep the email sender, subject and mailbox for reviewers

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("review_item", sa.Column("email_sender", sa.String(320)))
    op.add_column("review_item", sa.Column("email_subject", sa.String(998)))
    op.add_column("review_item", sa.Column("email_mailbox", sa.String(200)))


def downgrade() -> None:
    op.drop_column("review_item", "email_mailbox")
    op.drop_column("review_item", "email_subject")
    op.drop_column("review_item", "email_sender")
