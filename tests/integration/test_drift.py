"""Drift on the real broker: the report tells an in-distribution stream from a shifted one,
and a running classifier exports the drift gauges for what it scored.

The model is trained on the shipped synthetic training set. "In distribution" is new
documents from the same generator (another seed); "shifted" is long allotment-club
newsletters, a kind of mail the model never saw, mixed with legal letters only.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from scripts.make_sample_data import generate_split
from tests.helpers import REPO_ROOT, received
from tests.kafkatools import collect, produce_many
from tests.stack import Stack
from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_cli.main import app as cli
from triage_contracts import DocumentReceivedV1, topics
from triage_ml import drift
from triage_ml import model as model_lib
from triage_ml.dataset import iter_folder_dataset, load_examples
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.kafka import encode_event

GARDEN = [
    "allotment",
    "compost",
    "seedlings",
    "tomatoes",
    "courgettes",
    "pruning",
    "greenhouse",
    "mulch",
    "perennials",
    "bulbs",
    "hedges",
    "orchard",
    "beekeeping",
    "honey",
    "harvest",
]
CHORES = ["planted", "watered", "harvested", "pruned", "sowed", "repotted", "mulched", "weeded"]


@pytest.fixture(scope="module")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the synthetic training set, with its drift baseline."""
    examples = [
        example
        for path, label in iter_folder_dataset(REPO_ROOT / "data" / "sample" / "train")
        for example in load_examples(path, label)
    ]
    pipeline, metadata, *_ = model_lib.train(examples, seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("drift-models"))


def _in_distribution() -> list[bytes]:
    """200 new documents written the way the training set was (its generator, another seed)."""
    return list(generate_split(8, "train", 50).values())


def _newsletter(rng: random.Random, number: int) -> bytes:
    """A long allotment-club newsletter: words, length and kind the model never saw."""
    sentences = []
    for _ in range(rng.randint(25, 60)):
        crop, place, other = rng.sample(GARDEN, 3)
        sentences.append(
            f"This week we {rng.choice(CHORES)} the {crop} near the {place}, "
            f"and the {other} looks promising"
        )
    body = ". ".join(sentences)
    signature = f"Happy growing, the committee (newsletter {number})"
    return f"Hi gardeners,\n\n{body}.\n\n{signature}".encode()


def _shifted() -> list[bytes]:
    """150 documents: 90 long newsletters the model never saw, 60 legal letters."""
    rng = random.Random(5)
    legal = [body for name, body in generate_split(9, "train", 60).items() if "/legal/" in name]
    docs = [_newsletter(rng, i) for i in range(90)] + legal
    rng.shuffle(docs)
    return docs


def _publish(stack: Stack, blobs: LocalBlobStore, bodies: list[bytes]) -> list[DocumentReceivedV1]:
    """Store each body and publish its DocumentReceived on the documents topic."""
    events = [received(blobs.put(body)) for body in bodies]
    asyncio.run(
        produce_many(
            stack.kafka_bootstrap,
            stack.topic(topics.DOCUMENTS),
            [(e.document_id.encode(), encode_event(e)) for e in events],
        )
    )
    return events


def _env(stack: Stack, database_url: str, blob_dir: Path) -> dict[str, str]:
    """The environment the CLI needs to find the broker, database and blobs."""
    return {
        "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": database_url,
        "TRIAGE_TOPIC_PREFIX": stack.topic_prefix,
        "TRIAGE_BLOB_DIR": str(blob_dir),
    }


def _report(env: dict[str, str], *args: str) -> str:
    """Run `triage drift report` and return what it printed; it must exit 0."""
    result = CliRunner().invoke(cli, ["drift", "report", *args], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def _row(output: str, signal: str) -> tuple[float, str]:
    """The value and status of a signal's row in the printed table."""
    match = re.search(rf"^{signal}\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\w+)$", output, re.MULTILINE)
    assert match, f"no row for {signal} in:\n{output}"
    return float(match.group(1)), match.group(4)


def test_report_says_ok_for_an_in_distribution_stream_and_drift_for_a_shifted_one(
    isolated: Stack, clean_db: str, tmp_path: Path, sample_model: Path
) -> None:
    blob_dir = tmp_path / "blobs"
    blobs = LocalBlobStore(blob_dir)
    start = datetime.now(UTC) - timedelta(seconds=1)
    calm = _publish(isolated, blobs, _in_distribution())
    time.sleep(0.05)  # record timestamps are milliseconds: keep the two streams apart
    middle = datetime.now(UTC)
    time.sleep(0.05)
    shifted = _publish(isolated, blobs, _shifted())
    env = _env(isolated, clean_db, blob_dir)
    model = ("--model", str(sample_model))

    ok = _report(
        env,
        "--since",
        start.isoformat(),
        "--until",
        middle.isoformat(),
        *model,
        "--plots",
        str(tmp_path / "calm"),
    )
    assert f"{len(calm)} re-scored" in ok
    assert "status: ok" in ok
    for signal in drift.SIGNALS:
        assert _row(ok, signal)[1] == "ok", ok

    shift = _report(env, "--since", middle.isoformat(), *model, "--plots", str(tmp_path / "shift"))
    assert f"{len(shifted)} re-scored" in shift
    assert "status: drift — confidence, label, length, centroid" in shift
    for signal in drift.PSI_SIGNALS:
        value, status = _row(shift, signal)
        assert status == "drift" and value > 0.5, shift
    assert _row(shift, drift.CENTROID)[1] == "drift"
    pictures = sorted(p.name for p in (tmp_path / "shift").iterdir())
    assert pictures == sorted(drift.PNG_FILES.values())
    assert all((tmp_path / "shift" / name).stat().st_size > 10_000 for name in pictures)

    # A sample of the shifted window: at most --sample documents, and still drift.
    sampled = _report(
        env, "--since", middle.isoformat(), *model, "--sample", "100", "--min-documents", "40"
    )
    counted = int(re.search(r"(\d+) re-scored", sampled).group(1))  # type: ignore[union-attr]
    assert 40 <= counted <= 100
    assert "status: drift" in sampled


def _gauges(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every drift sample in /metrics, by name and labels."""
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name.startswith("triage_drift_"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_classifier_exports_drift_gauges_for_a_shifted_stream(
    isolated: Stack, clean_db: str, tmp_path: Path, sample_model: Path
) -> None:
    version = sample_model.name
    settings = Settings.model_validate(
        {
            "kafka_bootstrap": isolated.kafka_bootstrap,
            "database_url": clean_db,
            "topic_prefix": isolated.topic_prefix,
            "blob_dir": tmp_path / "blobs",
            "model_path": sample_model,
            "group_id": "it-drift",
            "extraction_workers": 1,
            "drift_interval_seconds": 0.2,
        }
    )
    blobs = LocalBlobStore(settings.blob_dir)
    start = datetime.now(UTC) - timedelta(seconds=1)
    labels = (("model_role", "champion"), ("model_version", version))
    window_key = ("triage_drift_window_documents", labels)
    with TestClient(create_app(settings)) as client:
        events = _publish(isolated, blobs, _shifted())
        asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED)],
                until=lambda ms: len(ms) >= len(events),
            )
        )
        deadline = time.monotonic() + 30
        while _gauges(client).get(window_key) != len(events):
            assert time.monotonic() < deadline, f"drift gauges never counted: {_gauges(client)}"
            time.sleep(0.2)
        gauges = _gauges(client)

    psi = {
        signal: gauges[("triage_drift_psi", tuple(sorted((*labels, ("signal", signal)))))]
        for signal in drift.PSI_SIGNALS
    }
    distance = gauges[("triage_drift_centroid_distance", labels)]
    assert all(value > 0.5 for value in psi.values()), psi
    assert distance > 0.3

    # The service and the report see the same window the same way.
    env = _env(isolated, clean_db, settings.blob_dir)
    report = _report(env, "--since", start.isoformat(), "--model", str(sample_model))
    for signal, value in psi.items():
        assert _row(report, signal)[0] == pytest.approx(value, abs=0.0005)
    assert _row(report, drift.CENTROID)[0] == pytest.approx(distance, abs=0.0005)
