"""schemathesis against the running services' OpenAPI documents.

Hypothesis generates requests from each HTTP API's own OpenAPI document (valid and invalid
data) and sends them to the services running as processes; every answer must be no server
error and inside the schema: a declared status code, the documented content type and body.
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

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
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
        ui.post(
            "/login",
            data={"username": "e2e-reviewer", "password": REVIEWER_PASSWORD},
            follow_redirects=True,
        )
        return "; ".join(f"{name}={value}" for name, value in ui.cookies.items())


def test_ingest_api_conforms_to_its_schema(pipeline: Pipeline) -> None:
    done = _exercise(pipeline.urls["ingest"], {"X-API-Key": pipeline.api_key})
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
