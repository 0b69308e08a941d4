"""Integration tests talk to the real Kafka broker, PostgreSQL server and S3 server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import small_examples
from tests.stack import Stack, empty_and_delete_bucket, require_s3
from triage_ml import model as model_lib
from triage_runtime.s3blobs import S3BlobStore


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real model artifact trained on a separable toy set."""
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


@dataclass(frozen=True)
class S3Server:
    """Where the S3-compatible server is and how to sign for it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str

    def store(self, bucket: str, **options: Any) -> S3BlobStore:
        """Return an S3BlobStore on ``bucket`` of this server."""
        return S3BlobStore(
            bucket=bucket,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            **options,
        )


@pytest.fixture(scope="session")
def s3_server(stack: Stack) -> S3Server:
    """The real S3-compatible server of the stack fixture."""
    return S3Server(**asdict(require_s3(stack)))


@pytest.fixture(scope="session")
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket for this session, emptied and deleted afterwards."""
    bucket = f"triage-test-{secrets.token_hex(6)}"
    store = s3_server.store(bucket, create_bucket=True)
    try:
        yield bucket
    finally:
        empty_and_delete_bucket(store.client, bucket)


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3BlobStore:
    """An S3 blob store under a key prefix of this test's own."""
    return s3_server.store(s3_bucket, prefix=f"t-{secrets.token_hex(4)}/")
