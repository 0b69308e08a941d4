"""one outbox table for every event a database change implies, with one relay

Until now four mechanisms did this: document.published_at (ingest), routing_decision
.published_at (router and human decisions) and routing_correction.events / published_at
(replay). They are replaced by the table outbox, written in the writer's transaction and
published by triage_runtime.outbox. A replay's events not yet published move into it; a
document or routing not yet published cannot be rebuilt here, so the upgrade refuses while
there are any (start the previous release once so it publishes them, then upgrade).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUS_VIEW = """
CREATE VIEW document_status AS
SELECT
    d.document_id,
    d.received_at,
    CASE
        WHEN o.document_id IS NULL THEN 'received'
        WHEN o.kind = 'dead_letter' THEN 'dead_lettered'
        WHEN o.kind = 'review' THEN 'in_review'
        WHEN o.decided_by = 'human' THEN 'decided'
        ELSE 'routed'
    END AS status,
    o.queue,
    o.model_version,
    o.policy_version,
    o.created_at AS outcome_at,
    o.updated_at AS outcome_updated_at,
    p.purged_at
FROM document d
LEFT JOIN document_outcome o USING (document_id)
LEFT JOIN document_purge p USING (document_id)
"""


# 0010's view, which showed document.published_at (restored by the downgrade).
PREVIOUS_STATUS_VIEW = STATUS_VIEW.replace(
    "    d.received_at,\n", "    d.received_at,\n    d.published_at,\n"
)


def _refuse_unpublished(what: str, sql: str) -> None:
    count = op.get_bind().execute(sa.text(sql)).scalar_one()
    if count:
        raise RuntimeError(
            f"{count} {what} not yet published by the previous release; start it once so it "
            "publishes them (nothing else is needed), then run this upgrade again"
        )


def upgrade() -> None:
    _refuse_unpublished(
        "document event(s)", "SELECT count(*) FROM document WHERE published_at IS NULL"
    )
    _refuse_unpublished(
        "routing event(s)",
        "SELECT count(*) FROM routing_decision WHERE published_at IS NULL AND withdrawn_at IS NULL",
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(249), nullable=False),
        sa.Column("schema", sa.String(80), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("document_id", sa.String(36)),
        # The event's JSON as text: jsonb cannot hold U+0000, which a file name or a mail
        # header may carry (escaped) and the event must keep.
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    op.create_index(
        "ix_outbox_pending", "outbox", ["id"], postgresql_where=sa.text("published_at IS NULL")
    )
    op.create_index("ix_outbox_document", "outbox", ["document_id"])
    op.create_index(
        "ix_outbox_published",
        "outbox",
        ["published_at"],
        postgresql_where=sa.text("published_at IS NOT NULL"),
    )
    # A replay's unpublished events keep their order (correction id, then place in the row).
    # Their topics were chosen at publish time from the queue; the prefix is not known here,
    # so they are stored under the unprefixed name (a prefixed deployment has none pending
    # if it ran a replay to its end).
    op.execute(
        """
        INSERT INTO outbox (topic, schema, event_id, document_id, payload, created_at)
        SELECT 'triage.routed.' || (e.entry ->> 'queue') || '.v1',
               e.entry ->> 'schema',
               (e.entry -> 'value' ->> 'event_id')::uuid,
               c.document_id,
               (e.entry -> 'value')::text,
               c.created_at
        FROM routing_correction c,
             LATERAL jsonb_array_elements(c.events) WITH ORDINALITY AS e(entry, n)
        WHERE c.published_at IS NULL
        ORDER BY c.id, e.n
        """
    )
    op.execute("DROP VIEW document_status")
    op.drop_column("document", "published_at")
    op.drop_column("routing_decision", "published_at")
    op.drop_index("ix_routing_correction_unpublished", table_name="routing_correction")
    op.drop_column("routing_correction", "events")
    op.drop_column("routing_correction", "published_at")
    op.execute(STATUS_VIEW)


def downgrade() -> None:
    _refuse_unpublished("outbox event(s)", "SELECT count(*) FROM outbox WHERE published_at IS NULL")
    op.execute("DROP VIEW document_status")
    op.add_column(
        "routing_correction",
        sa.Column("events", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'")),
    )
    op.add_column(
        "routing_correction",
        sa.Column(
            "published_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp()
        ),
    )
    op.create_index(
        "ix_routing_correction_unpublished",
        "routing_correction",
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.add_column(
        "routing_decision",
        sa.Column(
            "published_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp()
        ),
    )
    op.add_column(
        "document",
        sa.Column(
            "published_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp()
        ),
    )
    for table in ("routing_correction", "routing_decision", "document"):
        op.alter_column(table, "published_at", server_default=None)
    op.alter_column("routing_correction", "events", server_default=None)
    op.drop_table("outbox")
    op.execute(PREVIOUS_STATUS_VIEW)
