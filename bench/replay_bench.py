"""Replay benchmark: `triage replay` over a filled documents topic, against the model alone.

Publishes N documents (the golden set's texts, each made unique) to a fresh documents topic,
seeds the routing tables as if a bad model had sent every tenth routed document to a wrong
queue, then runs `triage replay` twice with the champion: the first run corrects those
documents, the second must change nothing. Prints one table with docs/s (from the first
record on; "wall s" counts start-up) next to the model alone (extraction excluded, as in
bench/throughput_bench.py) on the same documents.

    uv run python -m bench.replay_bench [--documents 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import ROOT, scratch_database, stack_env
from bench.throughput_bench import golden, model_alone

SAMPLE = ROOT / "data" / "sample"


async def _fill(env: dict[str, str], docs: list[bytes], artifact: Path) -> int:
    """Publish the documents and seed the router's tables; return how many were misrouted."""
    from aiokafka import AIOKafkaProducer
    from sqlalchemy import text

    from triage_contracts import (
        BlobRef,
        DecidedBy,
        DocumentReceivedV1,
        DocumentRef,
        ModelRef,
        ModelRole,
        Producer,
        Source,
        SourceKind,
        derive_document_id,
        topics,
        utcnow,
    )
    from triage_ml import model as model_lib
    from triage_ml import scoring
    from triage_runtime import routing as router_domain
    from triage_runtime.blobstore import LocalBlobStore
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.kafka import encode_event
    from triage_runtime.outcomes.store import OutcomeStore
    from triage_text.extract import extract_text

    producer = Producer(service="bench", version="0")
    blobs = LocalBlobStore(Path(env["TRIAGE_BLOB_DIR"]))
    events = []
    for data in docs:
        sha = blobs.put(data)
        events.append(
            DocumentReceivedV1(
                producer=producer,
                document_id=derive_document_id("upload", "bench", sha),
                document=DocumentRef(
                    source=Source(kind=SourceKind.UPLOAD, name="bench"),
                    blob=BlobRef(sha256=sha, size_bytes=len(data), media_type="text/plain"),
                    filename="bench.txt",
                    received_at=utcnow(),
                ),
            )
        )
    kafka = AIOKafkaProducer(bootstrap_servers=env["TRIAGE_KAFKA_BOOTSTRAP"], linger_ms=20)
    await kafka.start()
    try:
        topic = env["TRIAGE_TOPIC_PREFIX"] + topics.DOCUMENTS
        sent = [
            await kafka.send(topic, encode_event(e), key=e.document_id.encode()) for e in events
        ]
        for future in sent:
            await future
    finally:
        await kafka.stop()

    model = model_lib.load(artifact)
    ref = ModelRef(version="bad-model-1", role=ModelRole.CANARY)
    scored = scoring.classify(
        [
            scoring.Extracted(e, extract_text(d, "text/plain"))
            for e, d in zip(events, docs, strict=True)
        ],
        model=model,
        model_ref=ref,
        producer=producer,
        policy=router_domain.DEFAULT_POLICY,
    )
    engine = make_async_engine(env["TRIAGE_DATABASE_URL"])
    store = OutcomeStore(engine)
    labels = sorted(model.labels)
    misrouted = 0
    for i, event in enumerate(scored):
        decision = router_domain.decide(event, router_domain.DEFAULT_POLICY)
        if isinstance(decision, router_domain.RouteTo):
            queue = decision.queue
            if i % 10 == 0:  # what the bad model did
                queue = labels[(labels.index(queue) + 1) % len(labels)]
                misrouted += 1
            wrong = router_domain.RouteTo(queue, DecidedBy.MODEL, decision.confidence)
            routed = router_domain.routed_event(event, wrong, producer=producer)
            await store.record_route(event, wrong, routed=(topics.routed_topic(queue), routed))
        else:
            await store.open_review(event, decision)
    # The bad model's routings went out long ago: nothing is left for the replay to relay.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox SET published_at = now()"))
    await engine.dispose()
    return misrouted


def _replay(triage: str, env: dict[str, str], artifact: Path, report: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [triage, "replay", "--since", "1d", "--model", str(artifact), "--report", str(report)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - started, done.stdout


def main() -> None:
    """Fill the topic, replay twice, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=2000)
    args = parser.parse_args()

    stack = stack_env()
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        work = Path(tempfile.mkdtemp(prefix="triage-replay-bench-"))
        env = {
            **os.environ,
            **stack,
            "TRIAGE_DATABASE_URL": database_url,
            "TRIAGE_TOPIC_PREFIX": f"bench-{secrets.token_hex(3)}.",
            "TRIAGE_BLOB_DIR": str(work / "blobs"),
            "TRIAGE_LOG_LEVEL": "WARNING",
        }
        triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
        try:
            subprocess.run([triage, "db", "upgrade"], env=env, check=True, capture_output=True)
            trained = subprocess.run(
                [triage, "model", "train", "--data", str(SAMPLE / "train"), "--out", str(work)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            artifact = Path(trained.stdout.strip().splitlines()[-1])
            texts = [data for *_, data in golden()]
            docs = [texts[i % len(texts)] + f"\nref {i}\n".encode() for i in range(args.documents)]
            alone = model_alone(artifact, docs)
            misrouted = asyncio.run(_fill(env, docs, artifact))
            first_s, first = _replay(triage, env, artifact, work / "first.csv")
            second_s, second = _replay(triage, env, artifact, work / "second.csv")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def rate(output: str) -> float:
        """The rate from the first record on (as `triage replay` prints it)."""
        found = re.search(r"then ([\d.]+) docs/s", output)
        return float(found.group(1)) if found else float("nan")

    def changed(output: str) -> str:
        found = re.search(r"│ changed\s+│\s+(\d+)", output)
        return found.group(1) if found else "?"

    ceiling = alone["docs_per_s"]
    print(f"{args.documents} documents, {misrouted} seeded as misrouted, {os.cpu_count()} CPUs")
    header = f"{'run':<40} {'docs/s':>8} {'ratio':>6} {'wall s':>7} {'changed':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'model alone, in process (no extraction)':<40} {ceiling:>8.0f} {1.0:>6.2f}")
    for name, seconds, output in (
        ("triage replay, first run", first_s, first),
        ("triage replay, same replay again", second_s, second),
    ):
        docs_per_s = rate(output)
        print(
            f"{name:<40} {docs_per_s:>8.1f} {docs_per_s / ceiling:>6.3f} "
            f"{seconds:>7.1f} {changed(output):>8}"
        )


if __name__ == "__main__":
    main()
