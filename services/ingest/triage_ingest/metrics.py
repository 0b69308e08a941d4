"""Ingest metrics, declared once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
    "Inbound items (messages, files) handled by connectors, by connector kind and outcome.",
    ["kind", "outcome"],
)
