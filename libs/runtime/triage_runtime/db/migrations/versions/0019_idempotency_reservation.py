"""idempotency record: a key is reserved (owner, until when) before its request is accepted;
the response is written when the request has its answer

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("idempotency_record", "response", nullable=True)
    # Rows from before were written with their answer: nobody owns them, nothing expires.
    op.add_column("idempotency_record", sa.Column("owner_token", postgresql.UUID(), nullable=True))
    op.add_column(
        "idempotency_record",
        sa.Column("reserved_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_check_constraint(
        "ck_idempotency_record_answered_or_reserved",
        "idempotency_record",
        "response IS NOT NULL OR (owner_token IS NOT NULL AND reserved_until IS NOT NULL)",
    )


def downgrade() -> None:
    op.execute("DELETE FROM idempotency_record WHERE response IS NULL")
    op.drop_constraint("ck_idempotency_record_answered_or_reserved", "idempotency_record")
    op.drop_column("idempotency_record", "reserved_until")
    op.drop_column("idempotency_record", "owner_token")
    op.alter_column("idempotency_record", "response", nullable=False)
