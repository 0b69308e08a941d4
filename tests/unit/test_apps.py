"""Service apps in memory: startup refusals and readiness, without any real server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_ml.model import ModelLoadError
from triage_runtime.ops import ops_router


def test_classifier_without_model_or_fallback_refuses_to_start(tmp_path: Path) -> None:
    settings = ClassifierSettings(model_path=tmp_path / "missing", fallback_to_rules=False)
    with (
        pytest.raises(ModelLoadError, match="no model could be loaded"),
        TestClient(classifier_app(settings)),
    ):
        pass


def _ops_app(*, ready: bool) -> FastAPI:
    async def database() -> bool:
        if not ready:
            raise ConnectionRefusedError("127.0.0.1:1")
        return True

    app = FastAPI()
    app.include_router(ops_router(service="review-ui", checks={"database": database}))
    return app


def test_readiness_reports_an_unreachable_dependency() -> None:
    client = TestClient(_ops_app(ready=False))
    assert client.get("/healthz").json() == {"status": "ok", "service": "review-ui"}
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": "failing"}
    assert TestClient(_ops_app(ready=True)).get("/readyz").status_code == 200


@pytest.mark.parametrize("ready", [False, True])
def test_a_failing_check_shows_its_reason_and_a_passing_one_none(ready: bool) -> None:
    async def kafka() -> bool:
        return ready

    app = FastAPI()
    app.include_router(
        ops_router(
            service="router",
            checks={"kafka": kafka},
            reasons={"kafka": lambda: "Kafka refused the login"},
        )
    )
    body = TestClient(app).get("/readyz").json()
    assert body.get("reasons") == (None if ready else {"kafka": "Kafka refused the login"})


def test_metrics_are_exposed_in_prometheus_text_format() -> None:
    response = TestClient(_ops_app(ready=True)).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE triage_events_consumed_total counter" in response.text


def test_metrics_want_the_bearer_token_when_one_is_configured() -> None:
    from pydantic import SecretStr

    async def ok() -> bool:
        return True

    app = FastAPI()
    app.include_router(
        ops_router(service="router", checks={"db": ok}, metrics_token=SecretStr("s3cret"))
    )
    client = TestClient(app)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200 and "triage_events_consumed_total" in allowed.text
    assert client.get("/healthz").status_code == 200  # health stays open
    assert client.get("/readyz").status_code == 200


def test_torch_threads_left_unset_keep_torchs_default_and_zero_is_refused() -> None:
    import torch
    from pydantic import ValidationError

    from triage_ml.model_thread import ModelThread

    thread = ModelThread(torch_threads=ClassifierSettings().torch_threads)
    try:
        assert asyncio.run(thread.run(torch.get_num_threads)) == torch.get_num_threads()
    finally:
        thread.close()
    with pytest.raises(ValidationError, match="torch_threads"):
        ClassifierSettings(torch_threads=0)


@pytest.mark.parametrize(
    ("settings", "expected_ms"),
    [
        ({}, 500),  # a 2 s first retry delay: poll every half second, not every 5 ms
        ({"retry_backoff_seconds": 0.3}, 75),
        ({"retry_backoff_seconds": 0.001}, 5),  # never below the documents topic's poll wait
        ({"retry_backoff_seconds": 0.001, "batch_timeout_ms": 40}, 40),
    ],
)
def test_the_retry_topic_is_polled_at_a_quarter_of_the_first_retry_delay(
    settings: dict[str, float], expected_ms: int
) -> None:
    from triage_classifier.domain import retry_poll_ms

    chosen = ClassifierSettings.model_validate(settings)
    assert (
        retry_poll_ms(
            backoff_seconds=chosen.retry_backoff_seconds,
            documents_poll_ms=chosen.batch_timeout_ms,
        )
        == expected_ms
    )


@pytest.mark.parametrize("service", ["ingest", "classifier", "router", "review_ui"])
def test_every_service_counts_its_http_answers_before_any_other_middleware(
    service: str, tmp_path: Path
) -> None:
    from importlib import import_module

    from triage_runtime.http import RequestMetrics

    settings = import_module(f"triage_{service}.settings").Settings(blob_dir=tmp_path)
    app = import_module(f"triage_{service}.app").create_app(settings)
    # The first of user_middleware runs first: it sees what the others answer.
    assert app.user_middleware[0].cls is RequestMetrics
    assert app.user_middleware[0].kwargs["service"] == service.replace("_", "-")


@pytest.mark.parametrize("service", ["ingest", "classifier", "router", "review_ui"])
def test_every_service_makes_a_span_of_each_request_in_the_callers_trace(
    service: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    from importlib import import_module

    settings = import_module(f"triage_{service}.settings").Settings(blob_dir=tmp_path)
    app = import_module(f"triage_{service}.app").create_app(settings)
    caller = "0a" * 16
    answer = TestClient(app).get("/healthz", headers={"traceparent": f"00-{caller}-{9:016x}-01"})
    (request,) = spans.get_finished_spans()
    assert request.name == "GET /healthz"
    assert request.context is not None and f"{request.context.trace_id:032x}" == caller
    assert request.parent is not None and request.parent.span_id == 9
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == answer.status_code
