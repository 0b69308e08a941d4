"""sign-in back-off without lockout: known browsers (known_device) and the browser an attempt
came with (login_attempt.device_sha256)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("login_attempt", sa.Column("device_sha256", sa.String(64), nullable=True))
    op.create_index(
        "ix_login_attempt_device_at",
        "login_attempt",
        ["device_sha256", "at"],
        postgresql_where="device_sha256 IS NOT NULL",
    )
    op.create_table(
        "known_device",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column(
            "user_id",
            sa.BigInteger(),
            sa.ForeignKey("app_user.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "last_used_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("token_sha256", "user_id"),
    )


def downgrade() -> None:
    op.drop_table("known_device")
    op.drop_index("ix_login_attempt_device_at", table_name="login_attempt")
    op.drop_column("login_attempt", "device_sha256")
