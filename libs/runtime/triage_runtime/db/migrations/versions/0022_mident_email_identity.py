"""email identity by Message-ID: a copy of a known mail (same Message-ID, same parts) takes the
documents of its first arrival (email_identity); the (Message-ID, size) of every raw email
whose documents are recorded, so a UIDVALIDITY reset skips known mail unread (email_raw_seen);
and each document's Message-ID, to look documents up by it.

Message-IDs are keyed by their SHA-256 (a Message-ID may be 998 characters, over a btree
entry's limit); the document's own column is searched through a hash index.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "email_identity",
        sa.Column("message_key", sa.String(64), primary_key=True),
        sa.Column("parts_sha256", sa.String(64), primary_key=True),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("source_name", sa.String(80), nullable=False),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "email_raw_seen",
        sa.Column("message_key", sa.String(64), primary_key=True),
        sa.Column("raw_size", sa.BigInteger, primary_key=True),
    )
    op.add_column("document", sa.Column("message_id", sa.Text))
    op.create_index("ix_document_message_id", "document", ["message_id"], postgresql_using="hash")


def downgrade() -> None:
    op.drop_index("ix_document_message_id", "document")
    op.drop_column("document", "message_id")
    op.drop_table("email_raw_seen")
    op.drop_table("email_identity")
