"""Upload benchmark: small-file throughput, and ingest's memory while a file at the limit streams.

Starts the local stack (or uses TRIAGE_KAFKA_BOOTSTRAP / TRIAGE_DATABASE_URL), runs
`triage-ingest` as a separate process on a free port, and prints one table.

    uv run python -m bench.upload_bench [--requests 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench._common import free_port, scratch_database, stack_env, wait_ready

LIMIT_BYTES = 25 * 1024 * 1024


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def throughput(
    url: str, key: str, *, requests: int, concurrency: int
) -> tuple[float, list[float]]:
    """Upload ``requests`` distinct 1 KiB text files; return (requests/s, latencies)."""
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = f"benchmark document {i} {secrets.token_hex(8)}\n".encode() * 20
            started = time.perf_counter()
            response = await client.post(
                "/v1/documents", files={"files": (f"b{i}.txt", body[:1024], "text/plain")}
            )
            latencies.append(time.perf_counter() - started)
            response.raise_for_status()

    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, latencies


def main() -> None:
    """Run both measurements and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="small uploads to send")
    parser.add_argument("--concurrency", type=int, default=8, help="uploads in flight at once")
    args = parser.parse_args()

    stack = stack_env()
    # A database of its own, so a benchmark never leaves rows in anyone's review queue.
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        env = {**os.environ, **stack, "TRIAGE_DATABASE_URL": database_url}
        work = Path(tempfile.mkdtemp(prefix="triage-bench-"))
        port = free_port()
        prefix = f"bench-{secrets.token_hex(3)}."
        env |= {
            "TRIAGE_INGEST_PORT": str(port),
            "TRIAGE_BLOB_DIR": str(work / "blobs"),
            "TRIAGE_TOPIC_PREFIX": prefix,
            "TRIAGE_LOG_LEVEL": "WARNING",
            "TRIAGE_INGEST_MAX_DOCUMENT_BYTES": str(LIMIT_BYTES),
            # One key sends everything: its own limits must not be what is measured.
            "TRIAGE_INGEST_MAX_CONCURRENT_UPLOADS_PER_KEY": str(args.concurrency),
            "TRIAGE_INGEST_UPLOADS_PER_MINUTE_PER_KEY": "0",
        }
        triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
        subprocess.run([triage, "db", "upgrade"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [triage, "apikey", "create", f"bench-{secrets.token_hex(3)}"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        server = subprocess.Popen([f"{triage}-ingest"], env=env, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready([url])
            asyncio.run(throughput(url, key, requests=20, concurrency=2))  # warm up
            rate, latencies = asyncio.run(
                throughput(url, key, requests=args.requests, concurrency=args.concurrency)
            )
            latencies.sort()

            idle_rss = rss_bytes(server.pid)
            peak = [idle_rss]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peak[0] = max(peak[0], rss_bytes(server.pid))
                    time.sleep(0.01)

            big = work / "at-limit.txt"
            big.write_bytes((b"x" * 1023 + b"\n") * (LIMIT_BYTES // 1024))
            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.perf_counter()
            with big.open("rb") as handle:
                response = httpx.post(
                    url + "/v1/documents",
                    headers={"X-API-Key": key},
                    files={"files": ("at-limit.txt", handle, "text/plain")},
                    timeout=120,
                )
            upload_seconds = time.perf_counter() - started
            sampling.set()
            sampler.join()
            response.raise_for_status()
        finally:
            server.terminate()
            server.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)

        mib = 1024 * 1024
        rows = [
            ("small uploads (1 KiB text, one file per request)", ""),
            ("  requests", f"{args.requests} at concurrency {args.concurrency}"),
            ("  throughput", f"{rate:.1f} requests/s"),
            (
                "  latency p50 / p95",
                f"{statistics.median(latencies) * 1000:.0f} ms / "
                f"{latencies[int(0.95 * (len(latencies) - 1))] * 1000:.0f} ms",
            ),
            ("file at the size limit", ""),
            ("  size", f"{LIMIT_BYTES / mib:.0f} MiB in {upload_seconds:.2f} s"),
            ("  ingest RSS before", f"{idle_rss / mib:.0f} MiB"),
            (
                "  ingest RSS peak during",
                f"{peak[0] / mib:.0f} MiB (+{(peak[0] - idle_rss) / mib:.0f} MiB)",
            ),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"{'measurement':<{width}}  value")
        print(f"{'-' * width}  {'-' * 32}")
        for name, value in rows:
            print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
