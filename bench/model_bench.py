"""Model benchmark: the model alone (the limit), the Kafka path end to end, and POST /v1/classify.

Trains (or reuses) a model on data/sample/train, scores the golden set's documents on three
paths on this machine, and prints one table with docs/s and p50/p95 latency, as ratios to
the model alone.

    uv run python -m bench.model_bench [--kind tfidf-lr|embed-lr] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from bench._common import ROOT, free_port, scratch_database, stack_env, wait_ready

SAMPLE = ROOT / "data" / "sample"
SERVICES = ("ingest", "classifier", "router")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def golden_documents() -> list[tuple[str, bytes]]:
    """The golden set's files as (name, bytes), in a fixed order."""
    return [(p.name, p.read_bytes()) for p in sorted((SAMPLE / "golden").rglob("*.txt"))]


def model_alone(artifact: Path, docs: list[tuple[str, bytes]], repeat: int) -> dict[str, float]:
    """Score every document one at a time in this process: the ceiling for everything else."""
    from triage_ml import model as model_lib
    from triage_ml.features import extract_text

    model = model_lib.load(artifact)
    texts = [extract_text(data, "text/plain").text for _, data in docs]
    model.predict(texts[:5])  # warm up
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(repeat):
        for one in texts:
            t0 = time.perf_counter()
            model.predict([one])
            latencies.append(time.perf_counter() - t0)
    single = len(latencies) / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(repeat):
        for i in range(0, len(texts), 32):
            model.predict(texts[i : i + 32])
    batched = repeat * len(texts) / (time.perf_counter() - started)
    return {
        "docs_per_s": max(single, batched),
        "single_docs_per_s": single,
        "batched_docs_per_s": batched,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p95_ms": pct(latencies, 0.95) * 1000,
    }


def http_path(url: str, key: str, docs: list[tuple[str, bytes]], repeat: int) -> dict[str, float]:
    """POST /v1/classify for each document, one request at a time."""
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": key}) as client:
        client.post("/v1/classify", json={"text": "warm up"}).raise_for_status()
        started = time.perf_counter()
        for _ in range(repeat):
            for _, data in docs:
                t0 = time.perf_counter()
                client.post("/v1/classify", json={"text": data.decode()}).raise_for_status()
                latencies.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
    return {
        "docs_per_s": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p95_ms": pct(latencies, 0.95) * 1000,
    }


async def _upload_all(url: str, key: str, docs: list[tuple[str, bytes]]) -> list[str]:
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=60, headers={"X-API-Key": key}) as client:
        semaphore = asyncio.Semaphore(8)

        async def one(name: str, data: bytes) -> None:
            async with semaphore:
                response = await client.post(
                    "/v1/documents", files={"files": (name, data, "text/plain")}
                )
                response.raise_for_status()
                ids.append(response.json()["documents"][0]["document_id"])

        await asyncio.gather(*(one(n, d) for n, d in docs))
    return ids


def kafka_path(
    url: str, key: str, database_url: str, docs: list[tuple[str, bytes]]
) -> dict[str, float]:
    """Upload every document, then wait until each is routed or in review."""
    # A fresh marker makes every document new, so nothing is deduplicated away.
    marker = secrets.token_hex(4)
    unique = [(n, d + f"\nref {marker}-{i}\n".encode()) for i, (n, d) in enumerate(docs)]
    started = time.perf_counter()
    ids = asyncio.run(_upload_all(url, key, unique))
    engine = create_engine(database_url)
    query = text(
        "SELECT received_at, updated_at FROM document "
        "WHERE document_id = ANY(:ids) AND status IN ('routed', 'in_review')"
    )
    rows: list[tuple[object, ...]] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(query, {"ids": ids}).all()]
        if len(rows) == len(ids):
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    engine.dispose()
    latencies = [(done - got).total_seconds() for got, done in rows]  # type: ignore[operator]
    return {
        "docs_per_s": len(rows) / elapsed,
        "p50_ms": pct(latencies, 0.5) * 1000,
        "p95_ms": pct(latencies, 0.95) * 1000,
    }


def main() -> None:
    """Run the three measurements and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--kind", default="tfidf-lr", choices=["tfidf-lr", "embed-lr"])
    parser.add_argument("--repeat", type=int, default=3, help="passes over the golden set")
    args = parser.parse_args()

    stack = stack_env()
    # A database of its own, so a benchmark never leaves rows in anyone's review queue.
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        env = {**os.environ, **stack, "TRIAGE_DATABASE_URL": database_url}
        work = Path(tempfile.mkdtemp(prefix="triage-model-bench-"))
        triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
        trained = subprocess.run(
            [
                triage,
                "model",
                "train",
                "--data",
                str(SAMPLE / "train"),
                "--kind",
                args.kind,
                "--out",
                str(ROOT / ".stack" / "models"),
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        artifact = Path(trained.stdout.strip().splitlines()[-1])
        docs = golden_documents()
        alone = model_alone(artifact, docs, args.repeat)

        ports = {name: free_port() for name in SERVICES}
        env |= {
            "TRIAGE_TOPIC_PREFIX": f"bench-{secrets.token_hex(3)}.",
            "TRIAGE_BLOB_DIR": str(work / "blobs"),
            "TRIAGE_CLASSIFIER_MODEL_PATH": str(artifact),
            "TRIAGE_LOG_LEVEL": "WARNING",
            **{f"TRIAGE_{n.upper()}_PORT": str(p) for n, p in ports.items()},
        }
        subprocess.run([triage, "db", "upgrade"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [triage, "apikey", "create", f"bench-{secrets.token_hex(3)}"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        processes = [
            subprocess.Popen(
                [triage, "serve", n], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for n in SERVICES
        ]
        try:
            wait_ready([f"http://127.0.0.1:{port}" for port in ports.values()], seconds=240)
            http = http_path(f"http://127.0.0.1:{ports['classifier']}", key, docs, args.repeat)
            stream = kafka_path(
                f"http://127.0.0.1:{ports['ingest']}", key, env["TRIAGE_DATABASE_URL"], docs
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)

        print(f"model {artifact.name}, {len(docs)} golden documents, {os.cpu_count()} CPUs")
        print(
            f"(a) model alone: {alone['single_docs_per_s']:.0f} docs/s one at a time, "
            f"{alone['batched_docs_per_s']:.0f} docs/s in batches of 32"
        )
        header = f"{'path':<34} {'docs/s':>8} {'ratio':>6} {'p50 ms':>8} {'p95 ms':>8}"
        print(header)
        print("-" * len(header))
        for name, row in (
            ("(a) model alone, in process", alone),
            ("(b) Kafka path, upload to routed", stream),
            ("(c) POST /v1/classify, sequential", http),
        ):
            ratio = row["docs_per_s"] / alone["docs_per_s"]
            print(
                f"{name:<34} {row['docs_per_s']:>8.1f} {ratio:>6.2f} "
                f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f}"
            )


if __name__ == "__main__":
    main()
