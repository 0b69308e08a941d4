"""One scoring pipeline: the same failing inputs get the same outcome in the classifier,
``triage replay`` and ``triage batch score`` (real Kafka, PostgreSQL and blob store)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf_pages
from tests.helpers import received, small_examples
from tests.kafkatools import collect, produce_many
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_cli.exit_codes import SKIPPED
from triage_cli.main import app as cli
from triage_contracts import Explanation, topics
from triage_ml import model as model_lib
from triage_ml.explain import terms_text
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.kafka import encode_event

# Short enough that a 40-page PDF never makes it, long enough for a worker to take it.
TIMEOUT_SECONDS = "0.05"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("model"))


def _cli(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def test_the_four_failures_get_the_same_outcome_in_classifier_replay_and_batch_scoring(
    isolated: Stack, clean_db: str, tmp_path: Path, artifact: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    readable = received(blobs.put(b"dear team, the invoice refund is overdue, regards"))
    corrupt_sha = blobs.put(b"dear team, these bytes will rot on disk")
    corrupt = received(corrupt_sha)
    rotten = next((tmp_path / "blobs").rglob(corrupt_sha))
    rotten.write_bytes(b"other bytes than the hash says")
    missing = received("0f" * 32)
    slow = received(
        blobs.put(make_pdf_pages([f"page {n}: " + "words " * 300 for n in range(40)])),
        media_type="application/pdf",
    )
    since = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    asyncio.run(
        produce_many(
            isolated.kafka_bootstrap,
            isolated.topic(topics.DOCUMENTS),
            [(e.document_id.encode(), encode_event(e)) for e in (readable, corrupt, missing, slow)]
            + [(b"garbage", b"{not json")],
        )
    )

    # The classifier: three dead letters, two classified events.
    settings = Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "database_url": clean_db,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": tmp_path / "blobs",
            "model_path": artifact,
            "group_id": "it-pipeline",
            "extraction_workers": 1,
            "extraction_timeout_seconds": float(TIMEOUT_SECONDS),
        }
    )
    with TestClient(create_app(settings)):
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED), isolated.topic(topics.DEADLETTER)],
                until=lambda ms: len(ms) >= 5,
            )
        )
    classified = {m["key"]: m["value"] for m in out if m["topic"].endswith("classified.v1")}
    dead = sorted(m["value"]["error_class"] for m in out if m["topic"].endswith("deadletter.v1"))
    assert dead == ["blob_missing", "storage_error", "undecodable"]
    assert set(classified) == {readable.document_id, slow.document_id}
    assert classified[slow.document_id]["extraction"]["status"] == "timeout"
    assert classified[slow.document_id]["prediction"] is None
    assert classified[readable.document_id]["prediction"]["label"] == "billing"

    env = {
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "TRIAGE_CLASSIFIER_EXTRACTION_TIMEOUT_SECONDS": TIMEOUT_SECONDS,
        "TRIAGE_CLASSIFIER_EXTRACTION_WORKERS": "1",
    }

    # Batch scoring of the same window: the same three skipped, by the same classes, and the
    # same two scored, the PDF as an extraction timeout; the skips make it exit 4.
    scores = tmp_path / "scores.jsonl"
    output = _cli(
        env,
        *("batch", "score", "--topic-range", f"{since}..", "--model", str(artifact)),
        *("--output", str(scores)),
        exit_code=SKIPPED,
    )
    skipped = {
        reason: int(count)
        for count, reason in re.findall(r"skipped (\d+) record\(s\): (\w+)", output)
    }
    assert skipped == {"blob_missing": 1, "storage_error": 1, "undecodable": 1}
    rows: dict[str, Any] = {
        row["document_id"]: row for row in map(json.loads, scores.read_text().splitlines())
    }
    assert set(rows) == set(classified)
    assert (rows[slow.document_id]["extraction"], rows[slow.document_id]["action"]) == (
        "timeout",
        "review",
    )
    assert rows[readable.document_id]["label"] == "billing"
    # The classifier's explanation, as batch scoring writes it: one scoring path.
    explained = Explanation.model_validate(classified[readable.document_id]["explanation"])
    assert rows[readable.document_id]["terms"] == terms_text(explained)
    assert rows[slow.document_id]["terms"] is None
    for event in (readable, slow):  # each row says where its document came from, and when
        document = event.document
        assert rows[event.document_id]["path"] == document.filename
        assert rows[event.document_id]["source"] == f"{document.source.kind}:{document.source.name}"
        assert datetime.fromisoformat(rows[event.document_id]["time"]) == document.received_at

    # Replay of the same window (a dry run: nothing was routed yet): the same skips, and it
    # re-scores the two documents instead of stopping at the corrupt blob; exit 4 again.
    output = _cli(
        env,
        *("replay", "--since", since, "--model", str(artifact), "--dry-run"),
        *("--report", str(tmp_path / "replay.csv")),
        exit_code=SKIPPED,
    )
    table = " ".join(output.split())
    for reason in ("blob_missing", "storage_error", "undecodable"):
        assert f"skipped: {reason} │ 1" in table, output
    assert "5 record(s) read, 2 re-scored" in table, output
