"""A service started while Kafka does not answer serves at once, is not ready, says why once,
and becomes ready by itself when Kafka answers; nothing accepted meanwhile is lost.

"Kafka answers later" is a local port that refuses connections until it starts forwarding
to the real broker (``tests.helpers.TcpRelay``); the services are a real ``triage-router``
process and the ingest app in process, on real Kafka and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.helpers import TcpRelay, free_port, isolated_ingest_settings, new_api_key, sql_rows
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import topics
from triage_ingest.app import create_app as ingest_app
from triage_runtime.kafka_start import KafkaStart


def _wait(condition: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not in {timeout:.0f} s"
        time.sleep(0.2)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


@pytest.fixture
def relay(isolated: Stack) -> Iterator[TcpRelay]:
    relay = TcpRelay(isolated.kafka_bootstrap)
    yield relay
    relay.close()


def test_a_router_process_waits_for_kafka_then_is_ready_and_stops_cleanly(
    isolated: Stack, clean_db: str, relay: TcpRelay, tmp_path: Path
) -> None:
    command = shutil.which("triage-router", path=str(Path(sys.executable).parent))
    assert command, "triage-router is not installed in this environment"
    port = free_port()
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": relay.address,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_ROUTER_GROUP_ID": f"start-{isolated.topic_prefix}",
        "TRIAGE_ROUTER_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "router.log"

    def said(level: str) -> list[str]:
        entries = [json.loads(line) for line in log.read_text().splitlines() if line]
        return [
            e["msg"]
            for e in entries
            if e.get("logger") == "triage_runtime.kafka_start" and e["level"] == level
        ]

    with log.open("wb") as out:
        process = subprocess.Popen([command], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: _status(base + "/healthz") == 200, "/healthz 200")
        answer = httpx.get(base + "/readyz", timeout=5)
        assert answer.status_code == 503
        reason = answer.json()["reasons"]["kafka"]
        assert reason.startswith(f"cannot reach Kafka at {relay.address} (TRIAGE_KAFKA_BOOTSTRAP)")
        line = f"{reason}; retrying until it answers (not ready meanwhile)"
        _wait(lambda: said("warning") == [line], "the warning")
        time.sleep(1.5)  # the second attempt, 1 s after the first, is refused too: no new line
        assert process.poll() is None, log.read_text()[-3000:]
        assert said("warning") == [line]

        relay.open()
        _wait(lambda: _status(base + "/readyz") == 200, "/readyz 200 once Kafka answers")
        assert said("warning") == [line]
        assert said("info") == ["connected to Kafka"]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    # uvicorn ends by raising the signal it stopped for again, after a clean shutdown.
    assert code == -signal.SIGTERM, log.read_text()[-3000:]
    assert "stopped cleanly" in log.read_text()


def test_an_upload_while_kafka_is_away_waits_in_the_outbox_and_is_published_after(
    isolated: Stack, clean_db: str, relay: TcpRelay, tmp_path: Path
) -> None:
    settings = isolated_ingest_settings(isolated, clean_db, tmp_path)
    settings.kafka_bootstrap = relay.address
    app = ingest_app(settings)
    start: KafkaStart = app.state.kafka
    key = new_api_key(clean_db, "kafka-away")
    files = {"files": ("away.txt", b"sent while Kafka was away", "text/plain")}
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        answer = client.post("/v1/documents", files=files, headers={"X-API-Key": key})
        assert answer.status_code == 202, answer.text
        document_id = answer.json()["documents"][0]["document_id"]
        pending = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        assert sql_rows(clean_db, pending) == [(1,)]

        relay.open()
        _wait(lambda: start.started, "connected once Kafka answers")
        assert client.get("/readyz").status_code == 200
        _wait(lambda: sql_rows(clean_db, pending) == [(0,)], "the relay publishes the event")
    published = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            [isolated.topic(topics.DOCUMENTS)],
            until=lambda messages: len(messages) >= 1,
        )
    )
    assert [m["value"]["document_id"] for m in published] == [document_id]


def test_a_dead_letter_while_kafka_is_away_waits_in_the_outbox_and_is_published_after(
    isolated: Stack, clean_db: str, relay: TcpRelay, tmp_path: Path
) -> None:
    """The drop folder refuses a symbolic link with a dead letter; with Kafka away the letter
    is kept (the link goes to failed/ at once) and reaches the dead-letter topic later."""
    drop = tmp_path / "drop"
    settings = isolated_ingest_settings(
        isolated, clean_db, tmp_path, drop_dir=drop, drop_poll_seconds=0.2
    )
    settings.kafka_bootstrap = relay.address
    app = ingest_app(settings)
    start: KafkaStart = app.state.kafka
    pending = "SELECT topic FROM outbox WHERE published_at IS NULL"
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 503
        (drop / "inbox" / "link.pdf").symlink_to(tmp_path / "elsewhere.pdf")
        failed = drop / "failed"
        _wait(lambda: any(p.is_symlink() for p in failed.iterdir()), "the link moved to failed/")
        assert sql_rows(clean_db, pending) == [(isolated.topic(topics.DEADLETTER),)]

        relay.open()
        _wait(lambda: start.started, "connected once Kafka answers")
        _wait(lambda: sql_rows(clean_db, pending) == [], "the relay publishes the dead letter")
    published = asyncio.run(
        collect(
            isolated.kafka_bootstrap,
            [isolated.topic(topics.DEADLETTER)],
            until=lambda messages: len(messages) >= 1,
        )
    )
    [letter] = [m["value"] for m in published]
    assert letter["raw_name"] == "link.pdf"
    assert letter["error_class"] == "unsupported_media_type"
