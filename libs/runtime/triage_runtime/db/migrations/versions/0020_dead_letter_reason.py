"""dead-letter reason: why a document was dead-lettered (stage, error class, reason), shown
by document_status while the dead letter is the document's outcome

Outcomes dead-lettered before this revision have no reason; the status API shows null.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# 0015's view (restored by the downgrade).
PREVIOUS_STATUS_VIEW = """
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

# New columns go last: CREATE OR REPLACE VIEW may only append columns.
STATUS_VIEW = PREVIOUS_STATUS_VIEW.replace(
    "    p.purged_at\n",
    "    p.purged_at,\n"
    "    CASE WHEN o.kind = 'dead_letter' THEN o.dead_letter_stage END AS dead_letter_stage,\n"
    "    CASE WHEN o.kind = 'dead_letter' THEN o.dead_letter_error_class END\n"
    "        AS dead_letter_error_class,\n"
    "    CASE WHEN o.kind = 'dead_letter' THEN o.dead_letter_reason END AS dead_letter_reason\n",
)


def upgrade() -> None:
    op.add_column("document_outcome", sa.Column("dead_letter_stage", sa.String(40)))
    op.add_column("document_outcome", sa.Column("dead_letter_error_class", sa.String(40)))
    op.add_column("document_outcome", sa.Column("dead_letter_reason", sa.String(500)))
    op.execute(STATUS_VIEW)


def downgrade() -> None:
    # A view cannot drop columns with CREATE OR REPLACE.
    op.execute("DROP VIEW document_status")
    op.execute(PREVIOUS_STATUS_VIEW)
    op.drop_column("document_outcome", "dead_letter_reason")
    op.drop_column("document_outcome", "dead_letter_error_class")
    op.drop_column("document_outcome", "dead_letter_stage")
