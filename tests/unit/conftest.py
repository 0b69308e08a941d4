"""Unit tests run in memory: Kafka and PostgreSQL point at a closed port so a misplaced
integration test fails at once instead of quietly using a real server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_real_services(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
