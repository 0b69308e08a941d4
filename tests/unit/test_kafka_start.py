"""A service whose Kafka refuses it or does not answer serves, is not ready, says why once.

The apps run in memory (TestClient runs their lifespans); Kafka is a closed local port (the
unit tier's) or a local TLS server whose certificate the client refuses, both for real.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.helpers import refusing_tls_server
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_ingest.app import create_app as ingest_app
from triage_ingest.settings import Settings as IngestSettings
from triage_review_ui.app import create_app as review_app
from triage_review_ui.settings import Settings as ReviewSettings
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.kafka_start import KafkaStart

CLOSED = "127.0.0.1:1"


def _wait(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "triage_runtime.kafka_start" and r.levelno == logging.WARNING
    ]


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[str]:
    with refusing_tls_server(tmp_path) as where:
        yield where


def _apps(tmp_path: Path) -> dict[str, Callable[[], FastAPI]]:
    return {
        "ingest": lambda: ingest_app(IngestSettings(blob_dir=tmp_path / "blobs")),
        "classifier": lambda: classifier_app(
            ClassifierSettings(model_path=tmp_path / "no-model", blob_dir=tmp_path / "blobs")
        ),
        "router": lambda: router_app(RouterSettings()),
        "review-ui": lambda: review_app(ReviewSettings(blob_dir=tmp_path / "blobs")),
    }


@pytest.mark.parametrize("service", ["ingest", "classifier", "router", "review-ui"])
def test_every_service_serves_with_kafka_unreachable_and_is_not_ready_naming_it(
    service: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(_apps(tmp_path)[service]()) as client:
        assert client.get("/healthz").status_code == 200
        answer = client.get("/readyz")
        assert answer.status_code == 503
        body: dict[str, Any] = answer.json()
        assert body["checks"]["kafka"] == "failing"
        assert body["reasons"]["kafka"].startswith(
            f"cannot reach Kafka at {CLOSED} (TRIAGE_KAFKA_BOOTSTRAP): "
        )
    assert _warnings(caplog) == [
        f"{body['reasons']['kafka']}; retrying until it answers (not ready meanwhile)"
    ]


def test_a_repeated_refusal_is_logged_once_and_the_retries_keep_going(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = router_app(RouterSettings())
    start: KafkaStart = app.state.kafka
    with TestClient(app) as client:
        _wait(lambda: start.attempts >= 3)  # 1 s, then 2 s between attempts
        assert client.get("/readyz").status_code == 503
    assert len(_warnings(caplog)) == 1, _warnings(caplog)
    # aiokafka's own line for each failed attempt is kept out of the log (said once, above).
    assert not [r for r in caplog.records if r.getMessage().startswith("Unable connect to")]


def test_an_untrusted_broker_certificate_names_the_ca_setting_once(
    tls_listener: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", tls_listener)
    monkeypatch.setenv("TRIAGE_KAFKA_SECURITY_PROTOCOL", "SSL")
    app = router_app(RouterSettings())
    start: KafkaStart = app.state.kafka
    with TestClient(app) as client:
        _wait(lambda: start.attempts >= 2)
        assert client.get("/healthz").status_code == 200
        answer = client.get("/readyz")
    reason = (
        f"cannot reach Kafka at {tls_listener} (TRIAGE_KAFKA_BOOTSTRAP): the Kafka broker's "
        "certificate is not trusted: check TRIAGE_KAFKA_SSL_CA_FILE and "
        "TRIAGE_KAFKA_SSL_CHECK_HOSTNAME"
    )
    assert answer.status_code == 503
    assert answer.json()["reasons"] == {"kafka": reason}
    assert _warnings(caplog) == [f"{reason}; retrying until it answers (not ready meanwhile)"]


def test_shutdown_stops_the_retries_at_once() -> None:
    app = router_app(RouterSettings())
    start: KafkaStart = app.state.kafka
    with TestClient(app):
        _wait(lambda: start.attempts >= 1)
        began = time.monotonic()
    # The retry task sleeps up to 30 s between attempts; leaving must not wait for it.
    assert time.monotonic() - began < 5
    attempts = start.attempts
    time.sleep(1.5)
    assert start.attempts == attempts
    assert not start.started
