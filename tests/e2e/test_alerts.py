"""The alert rules on a real Prometheus server scraping a real classifier.

A poison message makes the classifier dead-letter (TriageDeadLettersGrowing fires); killing
the classifier fires TriageServiceDown and TriageClassifierAbsent. The rules are those of
deploy/prometheus/alerts.yml with their `for:` hold times shortened, so the test takes
seconds rather than minutes; the expressions are the shipped ones.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import REPO_ROOT, free_port
from tests.kafkatools import produce
from tests.stack import Stack, create_declared_topics
from triage_contracts import topics

RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"


def _wait(what: str, check: Any, seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {seconds} s")


@pytest.fixture
def classifier(stack: Stack, sample_model: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    triage = shutil.which("triage", path=str(Path(sys.executable).parent))
    assert triage
    port = free_port()
    prefix = f"{stack.topic_prefix}alerts."
    create_declared_topics(stack.kafka_bootstrap, prefix)
    env = {
        "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
        "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": stack.database_url,
        "TRIAGE_TOPIC_PREFIX": prefix,
        "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "TRIAGE_CLASSIFIER_MODEL_PATH": str(sample_model),
        "TRIAGE_CLASSIFIER_PORT": str(port),
        "TRIAGE_CLASSIFIER_GROUP_ID": "alerts-classifier",
    }
    log = (tmp_path / "classifier.log").open("wb")
    process = subprocess.Popen(
        [f"{triage}-classifier"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait(
            "classifier ready",
            lambda: _get(f"http://127.0.0.1:{port}/readyz") == 200,
        )
        yield {"process": process, "port": port, "prefix": prefix}
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        log.close()


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
def prometheus(classifier: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "the prometheus server (Debian package prometheus) is not installed"
    fast = re.sub(r"for: \d+m", "for: 3s", RULES.read_text())
    (tmp_path / "alerts.yml").write_text(fast)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        "  - job_name: triage-classifier\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{classifier['port']}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait("prometheus ready", lambda: _get(url + "/-/ready") == 200)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def _firing(url: str) -> dict[str, dict[str, str]]:
    alerts = httpx.get(url + "/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return {a["labels"]["alertname"]: a["labels"] for a in alerts if a["state"] == "firing"}


def _until_firing(url: str, names: set[str]) -> dict[str, dict[str, str]]:
    """Wait until every alert in ``names`` fires; return all firing alerts' labels."""
    latest: dict[str, dict[str, str]] = {}

    def check() -> bool:
        nonlocal latest
        latest = _firing(url)
        return names <= set(latest)

    _wait(" and ".join(sorted(names)) + " firing", check)
    return latest


def test_alerts_fire_when_dead_letters_grow_and_the_classifier_stops(
    stack: Stack, classifier: dict[str, Any], prometheus: str
) -> None:
    up = 'up{job="triage-classifier"}'
    _wait(
        "first scrape",
        lambda: httpx.get(prometheus + "/api/v1/query", params={"query": up}, timeout=5).json()[
            "data"
        ]["result"],
    )
    # Before the first scrape the classifier looked absent; once scraped, nothing fires.
    _wait("a quiet start", lambda: _firing(prometheus) == {})
    time.sleep(3)  # a few scrapes with the dead-letter counters at 0

    asyncio.run(
        produce(
            stack.kafka_bootstrap,
            classifier["prefix"] + topics.DOCUMENTS,
            b"{not json",
            key=b"poison",
        )
    )
    firing = _until_firing(prometheus, {"TriageDeadLettersGrowing"})
    assert firing["TriageDeadLettersGrowing"]["error_class"] == "undecodable"
    assert firing["TriageDeadLettersGrowing"]["service"] == "classifier"
    assert "TriageServiceDown" not in firing

    classifier["process"].kill()
    firing = _until_firing(prometheus, {"TriageServiceDown", "TriageClassifierAbsent"})
    assert firing["TriageServiceDown"]["job"] == "triage-classifier"
    assert firing["TriageServiceDown"]["severity"] == "critical"
