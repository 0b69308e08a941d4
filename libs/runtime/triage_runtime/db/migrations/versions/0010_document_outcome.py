"""one outcome per document, kept unique by PostgreSQL; status derived from it

A document's outcome (routed, in review, or dead-lettered) is one row of document_outcome;
routing_decision and review_item hold its details and need that row. document.status,
queue and model_version are dropped: the view document_status derives them. Retention's
purge mark moves to document_purge, so document has one writer (ingest).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

STATUS_VIEW = """
CREATE VIEW document_status AS
SELECT
    d.document_id,
    d.received_at,
    d.published_at,
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


def upgrade() -> None:
    op.create_table(
        "document_outcome",
        sa.Column("document_id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(40)),
        sa.Column("decided_by", sa.String(16)),
        sa.Column("model_version", sa.String(80)),
        sa.Column("policy_version", sa.BigInteger()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.CheckConstraint(
            "kind IN ('routed', 'review', 'dead_letter')", name="ck_document_outcome_kind"
        ),
        sa.CheckConstraint(
            "(kind = 'routed') = (queue IS NOT NULL)", name="ck_document_outcome_queue"
        ),
    )
    # Backfill: a live routing (the router's, a replay's or a human's) is the outcome; else an
    # open, decided or closed review item. A document with a withdrawn routing and a review
    # item is in review.
    op.execute(
        """
        INSERT INTO document_outcome (document_id, kind, queue, decided_by, model_version,
                                      created_at, updated_at)
        SELECT r.document_id, 'routed', r.queue, r.decided_by, r.model_version,
               r.created_at, r.created_at
        FROM routing_decision r
        WHERE r.withdrawn_at IS NULL
        """
    )
    op.execute(
        """
        INSERT INTO document_outcome (document_id, kind, model_version, created_at, updated_at)
        SELECT i.document_id, 'review', i.model_version, i.created_at, i.created_at
        FROM review_item i
        ON CONFLICT (document_id) DO NOTHING
        """
    )
    # A withdrawn routing whose document has no review item (cannot happen, but the FK must
    # hold): the document is in review.
    op.execute(
        """
        INSERT INTO document_outcome (document_id, kind, model_version, created_at, updated_at)
        SELECT r.document_id, 'review', r.model_version, r.created_at, r.created_at
        FROM routing_decision r
        ON CONFLICT (document_id) DO NOTHING
        """
    )
    op.create_foreign_key(
        "fk_routing_decision_outcome",
        "routing_decision",
        "document_outcome",
        ["document_id"],
        ["document_id"],
    )
    op.create_foreign_key(
        "fk_review_item_outcome",
        "review_item",
        "document_outcome",
        ["document_id"],
        ["document_id"],
    )
    op.create_table(
        "document_purge",
        sa.Column("document_id", sa.String(36), primary_key=True),
        sa.Column("purged_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO document_purge (document_id, purged_at)"
        " SELECT document_id, purged_at FROM document WHERE purged_at IS NOT NULL"
    )
    for column in ("status", "queue", "model_version", "updated_at", "purged_at"):
        op.drop_column("document", column)
    op.execute(STATUS_VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW document_status")
    op.add_column(
        "document",
        sa.Column("status", sa.String(16), nullable=False, server_default="received"),
    )
    op.add_column("document", sa.Column("queue", sa.String(40)))
    op.add_column("document", sa.Column("model_version", sa.String(80)))
    op.add_column(
        "document",
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.add_column("document", sa.Column("purged_at", sa.DateTime(timezone=True)))
    op.execute(
        """
        UPDATE document d SET
            status = CASE
                WHEN o.kind = 'review' THEN 'in_review'
                WHEN o.kind = 'routed' AND o.decided_by = 'human' THEN 'decided'
                WHEN o.kind = 'routed' THEN 'routed'
                ELSE 'received'
            END,
            queue = o.queue, model_version = o.model_version, updated_at = o.updated_at
        FROM document_outcome o WHERE o.document_id = d.document_id
        """
    )
    op.execute(
        "UPDATE document d SET purged_at = p.purged_at FROM document_purge p"
        " WHERE p.document_id = d.document_id"
    )
    op.drop_table("document_purge")
    op.drop_constraint("fk_review_item_outcome", "review_item", type_="foreignkey")
    op.drop_constraint("fk_routing_decision_outcome", "routing_decision", type_="foreignkey")
    op.drop_table("document_outcome")
