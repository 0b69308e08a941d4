"""With auto-create off (the local broker's setting), ``triage topics apply`` is what makes the
pipeline work: before it a service is not ready and says a topic is missing, after it that
service becomes ready, a document goes through ingest, classifier and router, and ``triage
topics plan`` shows no difference."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tests.faults.harness import Services
from tests.helpers import TOPIC_WORDS, new_api_key
from tests.stack import Stack
from triage_cli.main import app as cli
from triage_contracts import topics
from triage_runtime.kafka_start import missing_topics


def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def test_topics_apply_makes_the_pipeline_work_and_plan_then_shows_no_difference(
    no_topics: Stack, clean_db: str, small_model: Path, triage_bin: str, tmp_path: Path
) -> None:
    labels = json.loads((small_model / "metadata.json").read_text())["labels"]
    queues = [arg for label in labels for arg in ("--queue", label)]
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": no_topics.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": no_topics.topic_prefix,
        "TRIAGE_TOPICS_REPLICATION_FACTOR": "1",
        "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "TRIAGE_CLASSIFIER_MODEL_PATH": str(small_model),
        "TRIAGE_CLASSIFIER_GROUP_ID": "topics-classifier",
        "TRIAGE_ROUTER_GROUP_ID": "topics-router",
        "TRIAGE_INGEST_UPLOADS_PER_MINUTE_PER_KEY": "0",
        "TRIAGE_LOG_LEVEL": "INFO",
    }
    for unset in ("TRIAGE_BLOB_URL", "TRIAGE_CLASSIFIER_MODEL_ALIAS", "TRIAGE_METRICS_TOKEN"):
        env.pop(unset, None)
    services = Services(triage=triage_bin, env=env, work=tmp_path)
    try:
        # Before: the plan lists every topic as missing, and the router, which reads the
        # classified and dead-letter topics, serves but is not ready and names them.
        code, out = _cli(env, "topics", "plan", "--check", "--no-registry", *queues)
        assert code == 1, out
        assert out.count("+ create ") == len(topics.ALL_FIXED) + len(labels), out
        router = services.start("router")
        reads = sorted(no_topics.topic(t) for t in (topics.CLASSIFIED, topics.DEADLETTER))
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, router.log.read_text()
            try:
                ready = httpx.get(f"http://127.0.0.1:{router.port}/readyz", timeout=5)
            except httpx.HTTPError:
                time.sleep(0.2)  # not serving yet
                continue
            assert ready.status_code == 503, ready.text
            if ready.json().get("reasons", {}).get("kafka") == missing_topics(reads):
                break
            time.sleep(0.2)
        assert missing_topics(reads).encode() in router.log.read_bytes()  # said once, too

        code, out = _cli(env, "topics", "apply", "--no-registry", *queues)
        assert code == 0, out
        code, out = _cli(env, "topics", "plan", "--check", "--no-registry", *queues)
        assert code == 0 and "no difference" in out, out

        # After: the router becomes ready without a restart, and a document uploaded
        # through the real CLI is classified and routed (the toy
        # model's own threshold sends everything to review; the policy lowers it).
        threshold = f"{small_model.name}:billing=0.9"
        code, out = _cli(env, "policy", "set", "--threshold", threshold, "--reason", "test")
        assert code == 0, out
        for kind in ("ingest", "classifier"):
            services.start(kind)
        for kind in ("ingest", "classifier", "router"):
            asyncio.run(services.wait_ready(kind))
        letter = tmp_path / "letter.txt"
        letter.write_text(f"dear team, {TOPIC_WORDS['billing']}, regards")
        url = f"http://127.0.0.1:{services.running['ingest'].port}"
        key = new_api_key(clean_db, "topics")
        code, out = _cli(
            {**env, "TRIAGE_API_KEY": key}, "upload", str(letter), "--url", url, "--wait", "60"
        )
        assert code == 0, out
        assert "queue: billing" in out, out
    finally:
        services.stop_all()
