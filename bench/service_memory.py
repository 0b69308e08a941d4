"""Resident memory of each service while it serves: what the Helm chart's requests come from.

Starts triage-ingest, triage-classifier, triage-router and triage-review-ui (their console
scripts, as ./dev does) against the local stack, in a scratch database and under a topic
prefix of their own, with documents in the stack's S3 store when the environment names one
(TRIAGE_S3_ENDPOINT_URL, as on Kubernetes) and the classifier limited to two extraction
processes (as the chart sets it). Uploads the sample inbox ``--rounds`` times with
``triage upload --wait``, sampling every process's resident set (with its child processes,
from /proc) every 0.2 s, and prints each service's size once ready, its peak, and its size
once the work is done. Linux only.

    eval "$(deploy/local/stack.sh env)"
    uv run python -m bench.service_memory [--model .stack/models/champion] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import ROOT, scratch_database, stack_env
from bench.throughput_bench import Processes, peak_memory, services

NAMES = ["ingest", "classifier", "router", "review-ui"]
MIB = 1024 * 1024


def run(triage: str, env: dict[str, str], *args: str) -> str:
    """Run one ``triage`` command; its standard output."""
    done = subprocess.run([triage, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"triage {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=ROOT / ".stack" / "models" / "champion",
        help="the model artifact the classifier serves (default: ./dev demo's champion)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="uploads of the sample inbox")
    args = parser.parse_args()
    model = args.model.resolve()
    labels = json.loads((model / "metadata.json").read_text())["labels"]
    triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
    inbox = sorted(str(p) for p in (ROOT / "data" / "sample" / "inbox").iterdir())
    stack = stack_env()
    processes = Processes()
    run_id = secrets.token_hex(3)
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        work = Path(tempfile.mkdtemp(prefix="triage-service-memory-"))
        env = {
            **os.environ,
            **stack,
            "TRIAGE_DATABASE_URL": database_url,
            "TRIAGE_TOPIC_PREFIX": f"memory-{run_id}.",
            "TRIAGE_BLOB_DIR": str(work / "spool"),
            "TRIAGE_CLASSIFIER_MODEL_PATH": str(model),
            "TRIAGE_CLASSIFIER_EXTRACTION_WORKERS": "2",
            "TRIAGE_LOG_LEVEL": "WARNING",
        }
        if os.environ.get("TRIAGE_S3_ENDPOINT_URL"):
            env["TRIAGE_BLOB_URL"] = f"s3://triage-memory-{run_id}/blobs"
        run(triage, env, "db", "upgrade")
        run(triage, env, "topics", "apply", "--no-registry", *(f"--queue={q}" for q in labels))
        key = run(triage, env, "apikey", "create", "memory").strip()
        with services(triage, env, NAMES, processes) as urls, peak_memory(processes) as peaks:
            ready = dict(processes.rss())
            started = time.monotonic()
            uploaded = ""
            for _ in range(args.rounds):
                uploaded = run(
                    triage,
                    env | {"TRIAGE_API_KEY": key},
                    "upload",
                    *inbox,
                    "--url",
                    urls["ingest"][0],
                    "--wait",
                    "120",
                )
            after = dict(processes.rss())
    seconds = time.monotonic() - started
    print(f"{len(inbox) * args.rounds} files uploaded in {seconds:.0f} s; the last round:")
    print(uploaded)
    print(f"{'service':<12} {'ready':>8} {'peak':>8} {'after':>8}   (MiB, with child processes)")
    for name in NAMES:
        print(
            f"{name:<12} {ready.get(name, 0) / MIB:>8.0f} {peaks.get(name, 0) / MIB:>8.0f}"
            f" {after.get(name, 0) / MIB:>8.0f}"
        )


if __name__ == "__main__":
    main()
