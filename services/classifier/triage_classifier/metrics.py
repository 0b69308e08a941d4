"""Classifier metrics, declared once. Model version is a label: a handful of values at a time."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SERVICE = "classifier"
"""The ``service`` label of the shared metrics (``triage_runtime.metrics``)."""

BATCH_SIZE = Histogram(
    "triage_classifier_batch_documents",
    "Documents per micro-batch.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
EXTRACT_SECONDS = Histogram(
    "triage_classifier_extract_seconds",
    "Time to fetch and extract one micro-batch's text.",
)
SCORE_SECONDS = Histogram(
    "triage_classifier_score_seconds",
    "Time for one model call on a micro-batch.",
    ["model_version"],
)
CONFIDENCE = Histogram(
    "triage_classifier_confidence",
    "Confidence of predictions.",
    ["model_version", "model_role"],
    buckets=(0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0),
)
PREDICTIONS = Counter(
    "triage_classifier_predictions_total",
    "Predictions by label, action, model version and role.",
    ["model_version", "model_role", "label", "action"],
)
EXTRACTION_FAILURES = Counter(
    "triage_classifier_extraction_failures_total",
    "Documents whose text could not be extracted, by reason.",
    ["reason"],
)
MODEL_INFO = Gauge(
    "triage_classifier_model_info",
    "1 for the model version and role this instance serves.",
    ["model_version", "model_role"],
)
MODEL_LOAD_SECONDS = Gauge(
    "triage_classifier_model_load_seconds",
    "How long the last model load took.",
)
MODEL_LOADS = Counter(
    "triage_classifier_model_loads_total",
    "Model loads, by outcome (loaded, failed).",
    ["outcome"],
)
CLASSIFY_REQUESTS = Counter(
    "triage_classifier_http_requests_total",
    "POST /v1/classify requests, by status code.",
    ["status"],
)
CLASSIFY_SECONDS = Histogram(
    "triage_classifier_http_seconds",
    "Time to answer POST /v1/classify, including extraction of the text given.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
SHADOW_FAILURES = Counter(
    "triage_classifier_shadow_failures_total",
    "Micro-batches whose shadow scoring failed (routing went on without it).",
)
RETRIES = Counter(
    "triage_classifier_retries_total",
    "Documents set aside on the retry topic after a transient failure, by attempt number.",
    ["attempt"],
)
DRIFT_PSI = Gauge(
    "triage_drift_psi",
    "Population stability index of the live window against the model's training baseline, "
    "by signal (confidence, label, length); NaN with too few documents in the window.",
    ["model_version", "model_role", "signal"],
)
DRIFT_CENTROID_DISTANCE = Gauge(
    "triage_drift_centroid_distance",
    "Cosine distance of the live window's feature centroid to the training baseline's; "
    "NaN with too few documents in the window.",
    ["model_version", "model_role"],
)
DRIFT_WINDOW_DOCUMENTS = Gauge(
    "triage_drift_window_documents",
    "Documents in the rolling drift window of a serving model.",
    ["model_version", "model_role"],
)
POLICY_VERSION = Gauge(
    "triage_classifier_policy_version",
    "The routing policy version this instance scores under (0: the default, none stored).",
)
CANARY_PARTITION = Gauge(
    "triage_classifier_canary_partition",
    "1 for each documents-topic partition the canary scores on this instance.",
    ["partition"],
)
SHADOW_SAMPLE_RATIO = Gauge(
    "triage_classifier_shadow_sample_ratio",
    "Share of documents the shadow model also scores on this instance (0: none).",
)
