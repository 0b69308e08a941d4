"""Transient failures go to the retry topic with backoff; the partition flows on meanwhile."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers import SlowBlobs, received
from tests.kafkatools import collect, produce_on_one_partition
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_contracts import topics
from triage_runtime.blobstore import LocalBlobStore


class FlakyBlobs(LocalBlobStore):
    """A real blob store whose reads of some blobs fail a number of times (None: always)."""

    def __init__(self, root: Path, failures: dict[str, int | None]) -> None:
        super().__init__(root)
        self.failures = failures
        self.reads: Counter[str] = Counter()

    def get(self, sha256: str) -> bytes:
        """Fail like an unreachable store until this blob's failures are used up."""
        self.reads[sha256] += 1
        left = self.failures.get(sha256, 0)
        if left is None or self.reads[sha256] <= left:
            raise ConnectionError("blob store did not answer")
        return super().get(sha256)


def test_transient_failures_are_retried_with_backoff_without_blocking_the_partition(
    isolated: Stack, tmp_path: Path, small_model: Path
) -> None:
    root = tmp_path / "blobs"
    plain = LocalBlobStore(root)
    flaky_doc = received(plain.put(b"invoice refund overdue, attempt me again"))
    broken_doc = received(plain.put(b"contract clause breach, never readable"))
    fine_doc = received(plain.put(b"server outage login error timeout"))
    blobs = FlakyBlobs(
        root,
        {flaky_doc.document.blob.sha256: 2, broken_doc.document.blob.sha256: None},
    )
    settings = Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": root,
            "model_path": small_model,
            "group_id": "it-retries",
            "extraction_workers": 1,
            "retry_max_attempts": 3,
            "retry_backoff_seconds": 0.3,
            "batch_max_records": 1,
        }
    )

    wanted = {flaky_doc.document_id, fine_doc.document_id}
    with TestClient(create_app(settings, blobs=blobs)) as client:
        before = _first_retries(client.get("/metrics").text)
        asyncio.run(  # one partition, in this order
            produce_on_one_partition(
                isolated.kafka_bootstrap,
                isolated.topic(topics.DOCUMENTS),
                (flaky_doc, broken_doc, fine_doc),
            )
        )
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [
                    isolated.topic(t)
                    for t in (topics.CLASSIFIED, topics.DOCUMENTS_RETRY, topics.DEADLETTER)
                ],
                until=lambda ms: (
                    wanted <= {m["key"] for m in ms if m["topic"].endswith("classified.v1")}
                    and any(m["topic"].endswith("deadletter.v1") for m in ms)
                ),
            )
        )
        metrics = client.get("/metrics").text

    # The reading consumer may see a record twice after a metadata refresh: one per offset.
    out = list({(m["topic"], m["partition"], m["offset"]): m for m in out}.values())
    scored_at = {m["key"]: m["value"]["occurred_at"] for m in out if "classified" in m["topic"]}
    # The document behind the failing ones on the same partition was not held up by them.
    assert scored_at[fine_doc.document_id] < scored_at[flaky_doc.document_id]
    assert broken_doc.document_id not in scored_at
    attempts: dict[str, list[str]] = {}
    for m in out:
        if m["topic"].endswith("documents.retry.v1"):
            attempts.setdefault(m["key"], []).append(m["headers"]["triage-attempt"])
            assert m["headers"]["triage-source-partition"] == "0"
            assert int(m["headers"]["triage-retry-at"]) > 0
    assert attempts == {flaky_doc.document_id: ["1", "2"], broken_doc.document_id: ["1", "2", "3"]}
    [letter] = [m["value"] for m in out if m["topic"].endswith("deadletter.v1")]
    assert letter["document_id"] == broken_doc.document_id
    assert letter["error_class"] == "storage_error"
    assert letter["reason"].startswith("gave up after 3 attempt(s)")
    assert blobs.reads[flaky_doc.document.blob.sha256] == 3
    # Two documents set aside once each (the counter is the process's: count the change).
    assert _first_retries(metrics) == before + 2


def _first_retries(metrics: str) -> float:
    found = re.search(
        r'^triage_classifier_retries_total\{attempt="1"\} (\S+)$', metrics, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_a_micro_batch_fetches_its_blobs_at_once_and_each_failure_goes_its_own_way(
    isolated: Stack, tmp_path: Path, small_model: Path
) -> None:
    root = tmp_path / "blobs"
    blobs = SlowBlobs(root, pause=0.3)
    readable = [
        received(blobs.put(text))
        for text in (b"invoice refund overdue", b"server outage login error", b"contract clause")
    ]
    missing = received("cd" * 32)  # never stored: a dead letter, not a retry
    in_order = [readable[0], missing, readable[1], readable[2]]

    # Everything is on one partition before the classifier starts: its first poll gets all
    # four, in this order.
    asyncio.run(
        produce_on_one_partition(
            isolated.kafka_bootstrap, isolated.topic(topics.DOCUMENTS), in_order
        )
    )
    settings = Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": root,
            "model_path": small_model,
            "group_id": "it-fetch-at-once",
            "extraction_workers": 1,
        }
    )
    wanted = {event.document_id for event in readable}
    with TestClient(create_app(settings, blobs=blobs)):
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(t) for t in (topics.CLASSIFIED, topics.DEADLETTER)],
                until=lambda ms: (
                    wanted <= {m["key"] for m in ms if m["topic"].endswith("classified.v1")}
                    and any(m["topic"].endswith("deadletter.v1") for m in ms)
                ),
            )
        )

    classified = [m for m in out if m["topic"].endswith("classified.v1")]
    # Each published once, all with a prediction. (Keyed by document id, they land on
    # different partitions of the classified topic, so their order there says nothing.)
    assert sorted(m["key"] for m in classified) == sorted(wanted)
    assert all(m["value"]["prediction"] is not None for m in classified)
    [letter] = [m["value"] for m in out if m["topic"].endswith("deadletter.v1")]
    assert (letter["document_id"], letter["error_class"]) == (missing.document_id, "blob_missing")
    # The four reads (the missing blob's too) overlapped; one after another, one at a time.
    assert blobs.most_at_once == len(in_order)
