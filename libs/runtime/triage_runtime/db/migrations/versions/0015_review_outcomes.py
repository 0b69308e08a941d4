"""review outcomes beyond the model's labels: what kind of decision a reviewer made, and
documents a reviewer discarded (spam, not a document)

review_item.decision_kind says what a decided item's decision was: ``label`` (one of the
model's labels: a training example), ``queue`` (another routed queue: routed, not training
data), ``spam`` or ``not_document`` (discarded: not routed, not training data, no
decided_label). Decided items before this revision were all ``label``. A discarded document's
outcome is ``discarded``, shown by document_status as ``discarded``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

STATUS_VIEW = """
CREATE OR REPLACE VIEW document_status AS
SELECT
    d.document_id,
    d.received_at,
    CASE
        WHEN o.document_id IS NULL THEN 'received'
        WHEN o.kind = 'dead_letter' THEN 'dead_lettered'
        WHEN o.kind = 'review' THEN 'in_review'
        WHEN o.kind = 'discarded' THEN 'discarded'
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

# 0011's view (restored by the downgrade).
PREVIOUS_STATUS_VIEW = STATUS_VIEW.replace(
    "        WHEN o.kind = 'discarded' THEN 'discarded'\n", ""
)


def upgrade() -> None:
    op.add_column("review_item", sa.Column("decision_kind", sa.String(16)))
    op.execute("UPDATE review_item SET decision_kind = 'label' WHERE status = 'decided'")
    op.create_check_constraint(
        "ck_review_item_decision_kind",
        "review_item",
        "decision_kind IS NULL OR decision_kind IN ('label', 'queue', 'spam', 'not_document')",
    )
    op.drop_constraint("ck_document_outcome_kind", "document_outcome")
    op.create_check_constraint(
        "ck_document_outcome_kind",
        "document_outcome",
        "kind IN ('routed', 'review', 'dead_letter', 'discarded')",
    )
    op.execute(STATUS_VIEW)


def downgrade() -> None:
    op.execute(PREVIOUS_STATUS_VIEW)
    # A discarded document goes back to review: the previous release has no such outcome.
    op.execute("UPDATE document_outcome SET kind = 'review' WHERE kind = 'discarded'")
    op.execute(
        "UPDATE review_item SET status = 'pending', decided_by = NULL, decided_at = NULL"
        " WHERE decision_kind IN ('spam', 'not_document')"
    )
    op.drop_constraint("ck_document_outcome_kind", "document_outcome")
    op.create_check_constraint(
        "ck_document_outcome_kind",
        "document_outcome",
        "kind IN ('routed', 'review', 'dead_letter')",
    )
    op.drop_constraint("ck_review_item_decision_kind", "review_item")
    op.drop_column("review_item", "decision_kind")
