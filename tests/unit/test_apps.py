"""Service apps in memory: startup refusals and readiness, without any real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_ml.model import ModelLoadError
from triage_review_ui.app import create_app as review_app
from triage_review_ui.settings import Settings as ReviewSettings


def test_classifier_without_model_or_fallback_refuses_to_start(tmp_path: Path) -> None:
    settings = ClassifierSettings(model_path=tmp_path / "missing", fallback_to_rules=False)
    with (
        pytest.raises(ModelLoadError, match="no model could be loaded"),
        TestClient(classifier_app(settings)),
    ):
        pass


def test_readiness_reports_an_unreachable_database() -> None:
    with TestClient(review_app(ReviewSettings())) as client:
        assert client.get("/healthz").json() == {"status": "ok", "service": "review-ui"}
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "failing"}


def test_metrics_are_exposed_in_prometheus_text_format() -> None:
    with TestClient(review_app(ReviewSettings())) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE triage_events_consumed_total counter" in response.text
