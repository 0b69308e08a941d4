"""api keys: one live key per name, so a key can be rotated under the same name

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("api_key_name_key", "api_key", type_="unique")
    op.create_index(
        "ux_api_key_live_name",
        "api_key",
        ["name"],
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_api_key_live_name", table_name="api_key")
    op.create_unique_constraint("api_key_name_key", "api_key", ["name"])
