"""schemathesis against the running services' OpenAPI documents.

Hypothesis generates requests from each HTTP API's own OpenAPI document (valid and invalid
data) and sends them to the services running as processes; every answer must be no server
error and inside the schema: a declared status code, the documented content type, headers
and body. The run is bounded (``EXAMPLES`` per operation, derandomised) and part of
``./dev test`` (the end-to-end step) and so of CI.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from schemathesis.core.result import Err

from tests.e2e.conftest import REVIEWER_PASSWORD, Pipeline
from tests.helpers import review_sign_in

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = 40


def _exercise(base_url: str, headers: dict[str, str]) -> list[str]:
    """Run every operation of the service's schema; return the operations exercised."""
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    exercised = []
    for found in schema.get_all_operations():
        assert not isinstance(found, Err), f"invalid operation in {base_url}: {found.err()}"
        operation = found.ok()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        run()
        exercised.append(operation.label)
    return exercised


def _reviewer_cookie(pipeline: Pipeline) -> str:
    with httpx.Client(base_url=pipeline.urls["review-ui"], timeout=10) as ui:
        review_sign_in(ui, "e2e-reviewer", REVIEWER_PASSWORD)
        return "; ".join(f"{name}={value}" for name, value in ui.cookies.items())


@pytest.mark.parametrize("key", ["live", "none"])
def test_ingest_api_conforms_to_its_schema(pipeline: Pipeline, key: str) -> None:
    # Without a key every answer is the 401 the gate or the route gives: documented too.
    headers = {"X-API-Key": pipeline.api_key} if key == "live" else {}
    done = _exercise(pipeline.urls["ingest"], headers)
    assert "POST /v1/documents" in done and "GET /v1/documents/{document_id}" in done


def test_classifier_api_conforms_to_its_schema(pipeline: Pipeline) -> None:
    done = _exercise(pipeline.urls["classifier"], {"X-API-Key": pipeline.api_key})
    assert "POST /v1/classify" in done


def test_review_ui_api_conforms_to_its_schema(pipeline: Pipeline) -> None:
    done = _exercise(pipeline.urls["review-ui"], {"Cookie": _reviewer_cookie(pipeline)})
    assert "GET /api/v1/review-items" in done


@pytest.mark.parametrize("service", ["ingest", "classifier", "router", "review-ui"])
def test_every_service_publishes_an_openapi_document(pipeline: Pipeline, service: str) -> None:
    document = httpx.get(pipeline.urls[service] + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    assert "/healthz" in document["paths"]


OPEN = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
OPEN |= {"/redoc", "/login", "/static"}


def _routes(service: str) -> list[tuple[str, str]]:
    """(method, path) of every route the service's app has, documented or not."""
    from importlib import import_module

    from fastapi.routing import iter_route_contexts

    package = "triage_" + service.replace("-", "_")
    settings = import_module(f"{package}.settings").Settings()
    app = import_module(f"{package}.app").create_app(settings)
    found: list[tuple[str, str]] = []
    for route in iter_route_contexts(app.routes):  # included routers too
        path = getattr(route, "path", "")
        if not path:
            continue
        methods = sorted(getattr(route, "methods", None) or {"GET"})
        found.extend((method, path) for method in methods if method != "HEAD")
    return found


@pytest.mark.parametrize("service", ["ingest", "classifier", "router", "review-ui"])
def test_every_endpoint_but_health_and_metrics_wants_credentials(
    pipeline: Pipeline, service: str
) -> None:
    checked = []
    for method, path in _routes(service):
        if path in OPEN or path.startswith("/static"):
            continue
        concrete = path.replace("{document_id}", "doc_" + "0" * 32)
        for name in ("{item_id}", "{username}", "{change}"):
            concrete = concrete.replace(name, "1")
        response = httpx.request(
            method, pipeline.urls[service] + concrete, timeout=10, follow_redirects=False
        )
        refused = response.status_code in {401, 403} or (
            response.status_code in {302, 303} and "/login" in response.headers["location"]
        )
        assert refused, f"{service} {method} {path} answered {response.status_code} unsigned"
        checked.append(f"{method} {path}")
    if service != "router":  # the router has no API of its own
        assert checked
