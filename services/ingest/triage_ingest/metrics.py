"""Ingest metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

UPLOADS = Counter(
    "triage_ingest_uploads_total",
    "Uploaded files (or refused requests), by outcome: accepted, too_large, unsupported_type, "
    "overloaded (503), rate_limited (429), unavailable (503, a dependency failed), "
    "unauthorized (401), key_busy (429: the key's concurrent uploads), body_timeout (408), "
    "body_too_slow (408: under the minimum body rate), "
    "replayed (an Idempotency-Key's answer again), idempotency_mismatch (422), "
    "idempotency_busy (409).",
    ["outcome"],
)
UPLOAD_BYTES = Histogram(
    "triage_ingest_upload_bytes",
    "Size of accepted uploads in bytes.",
    buckets=(1e3, 1e4, 1e5, 1e6, 5e6, 1e7, 2.5e7, 1e8),
)
DOCUMENTS_ACCEPTED = Counter(
    "triage_ingest_documents_total",
    "Documents accepted and published, by source kind (upload, smtp, imap, folder).",
    ["source_kind"],
)
CONNECTOR_ITEMS = Counter(
    "triage_ingest_connector_items_total",
    "Inbound items (messages, files) handled by connectors, by connector kind and outcome "
    "(IMAP: ingested = made a new document, known = all its documents existed, dead_lettered, "
    "intake_error, post_process_error, mailbox_error, auth_error, connection_error, "
    "dependency_error, uidvalidity_reset).",
    ["kind", "outcome"],
)
IMAP_LAST_SUCCESS = Gauge(
    "triage_ingest_imap_last_success_timestamp_seconds",
    "When an IMAP mailbox was last read through to its end (Unix time; 0: not yet).",
    ["account", "mailbox"],
)
IMAP_LAST_ERROR = Gauge(
    "triage_ingest_imap_last_error_timestamp_seconds",
    "When an IMAP mailbox last had an error (Unix time; 0: none since start).",
    ["account", "mailbox"],
)
IMAP_FAILING = Gauge(
    "triage_ingest_imap_mailbox_failing",
    "1 while an IMAP mailbox's last pass failed (no success since its last error), else 0.",
    ["account", "mailbox"],
)
IMAP_BACKLOG = Gauge(
    "triage_ingest_imap_backlog_messages",
    "Messages above an IMAP mailbox's cursor not yet taken, as of its latest pass.",
    ["account", "mailbox"],
)
