"""imap attempts: how often the IMAP connector has started taking a message, and its last
error, so a message that keeps failing (or crashing the process) is dead-lettered after
``max_attempts`` and the mailbox moves on

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imap_attempt",
        sa.Column("account", sa.String(80), primary_key=True),
        sa.Column("mailbox", sa.String(200), primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, primary_key=True),
        sa.Column("uid", sa.BigInteger, primary_key=True),
        sa.Column("attempts", sa.SmallInteger, nullable=False),
        sa.Column("last_error", sa.String(500)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    )


def downgrade() -> None:
    op.drop_table("imap_attempt")
