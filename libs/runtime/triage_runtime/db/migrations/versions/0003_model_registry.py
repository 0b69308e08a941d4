"""model registry: versions, aliases and the append-only alias history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ALIASES = "'champion', 'canary', 'shadow'"
ACTIONS = "'promote', 'rollback', 'clear'"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "model_version",
        sa.Column("version", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("labels", postgresql.JSONB(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        sa.Column("eval", postgresql.JSONB()),
        sa.Column("training_data_sha256", sa.String(64), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("artifact_metadata", postgresql.JSONB(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("registered_by", sa.String(80), nullable=False),
    )
    op.create_table(
        "model_alias",
        sa.Column("alias", sa.String(16), primary_key=True),
        # NULL once the alias is cleared; the row stays so it can be locked.
        sa.Column("version", sa.String(80), sa.ForeignKey("model_version.version")),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_now()),
        sa.Column("updated_by", sa.String(80), nullable=False),
        sa.CheckConstraint(f"alias IN ({ALIASES})", name="ck_model_alias_alias"),
    )
    op.create_table(
        "model_alias_history",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("alias", sa.String(16), nullable=False),
        sa.Column("from_version", sa.String(80), sa.ForeignKey("model_version.version")),
        sa.Column("to_version", sa.String(80), sa.ForeignKey("model_version.version")),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("gate_report", postgresql.JSONB()),
        # clock_timestamp(): the time of the move, not of a transaction that waited for a lock.
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.CheckConstraint(f"alias IN ({ALIASES})", name="ck_model_alias_history_alias"),
        sa.CheckConstraint(f"action IN ({ACTIONS})", name="ck_model_alias_history_action"),
    )
    op.create_index("ix_model_alias_history_alias_id", "model_alias_history", ["alias", "id"])
    # The history is an audit trail: rows are only ever inserted.
    op.execute(
        """
        CREATE FUNCTION model_alias_history_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'model_alias_history is append-only (% refused)', TG_OP;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER model_alias_history_append_only
        BEFORE UPDATE OR DELETE ON model_alias_history
        FOR EACH ROW EXECUTE FUNCTION model_alias_history_append_only()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS model_alias_history_append_only ON model_alias_history")
    op.execute("DROP FUNCTION IF EXISTS model_alias_history_append_only()")
    op.drop_index("ix_model_alias_history_alias_id", table_name="model_alias_history")
    op.drop_table("model_alias_history")
    op.drop_table("model_alias")
    op.drop_table("model_version")
