"""Integration tests talk to the real Kafka broker and PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import small_examples
from triage_ml import model as model_lib


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real model artifact trained on a separable toy set."""
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))
