"""Unit tests run in memory: Kafka and PostgreSQL point at a closed port so a misplaced
integration test fails at once instead of quietly using a real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from triage_runtime import tracing


@pytest.fixture(autouse=True)
def _no_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every span kept in memory as it ends; off again after the test."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(
        service="test", otlp_endpoint=None, processors=[SimpleSpanProcessor(exporter)]
    )
    yield exporter
    tracing.configure_tracing(service="test", otlp_endpoint=None)
