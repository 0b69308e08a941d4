"""blob references: the raw email each document came out of (document_raw), the raw input of
each ingest dead letter (dead_letter_blob), and bytes being stored but not yet recorded
(pending_blob), so that retention removes raw emails and the orphan sweep keeps what is owned

Blobs written before this revision were stored when nothing recorded a raw email's or a dead
letter's ownership: blob_sweep_floor keeps the sweep off them (it sweeps only what was
written since).

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "document_raw",
        sa.Column("document_id", sa.String(36), primary_key=True),
        sa.Column("raw_sha256", sa.String(64), nullable=False),
    )
    op.create_index("ix_document_raw_raw_sha256", "document_raw", ["raw_sha256"])
    op.create_table(
        "dead_letter_blob",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "pending_blob",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column(
            "held_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "blob_sweep_floor",
        sa.Column("since", sa.DateTime(timezone=True), primary_key=True),
    )
    op.execute("INSERT INTO blob_sweep_floor (since) VALUES (now())")
    # The orphan sweep looks blobs up among documents by hash.
    op.create_index("ix_document_blob_sha256", "document", ["blob_sha256"])


def downgrade() -> None:
    op.drop_index("ix_document_blob_sha256", "document")
    op.drop_table("blob_sweep_floor")
    op.drop_table("pending_blob")
    op.drop_table("dead_letter_blob")
    op.drop_index("ix_document_raw_raw_sha256", "document_raw")
    op.drop_table("document_raw")
