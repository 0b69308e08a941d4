"""The S3 blob store against a real S3-compatible server, and the contract both stores keep.

The server comes from TRIAGE_TEST_S3_ENDPOINT_URL, TRIAGE_TEST_S3_ACCESS_KEY_ID and
TRIAGE_TEST_S3_SECRET_ACCESS_KEY (and TRIAGE_TEST_S3_REGION, default us-east-1). When they
are not set, the local stack is started (deploy/local/stack.sh start, which runs S3Proxy)
and its TRIAGE_S3_* settings are used. Each session works in a fresh bucket, deleted at the
end, and each test under its own key prefix.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import S3Server
from tests.stack import Stack, empty_and_delete_bucket
from triage_runtime.blobstore import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStore,
    LocalBlobStore,
)
from triage_runtime.s3blobs import S3BlobStore, blob_store_from_url

MIB = 1024 * 1024
MALFORMED = [
    "",
    "abc",
    "AB" * 32,  # upper case is not how hashes are written
    "g" * 64,
    "ab" * 32 + "0",
    "../" + "a" * 61,
    "a" * 63 + "/",
]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each backend in turn: the shared contract must hold for both."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    s3: S3BlobStore = request.getfixturevalue("s3_store")
    return s3


def _keys(store: S3BlobStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def _count_calls(store: S3BlobStore, operation: str) -> list[str]:
    """Record each request of ``operation`` (e.g. PutObject) the store's client makes."""
    calls: list[str] = []

    def record(**_: Any) -> None:
        calls.append(operation)

    store.client.meta.events.register(f"before-call.s3.{operation}", record)
    return calls


# ---------------------------------------------------------------------------
# The contract of BlobStore, for LocalBlobStore and S3BlobStore alike
# ---------------------------------------------------------------------------


def test_put_get_round_trip(store: BlobStore) -> None:
    data = bytes(range(256)) * 5 + b"\x00end"
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert store.exists(digest)


def test_empty_blob(store: BlobStore) -> None:
    digest = store.put(b"")
    assert digest == hashlib.sha256(b"").hexdigest()
    assert store.get(digest) == b""


def test_put_twice_returns_the_same_digest(store: BlobStore) -> None:
    assert store.put(b"same bytes") == store.put(b"same bytes")
    assert store.get(store.put(b"same bytes")) == b"same bytes"


def test_list_blobs_lists_each_stored_blob_with_when_it_was_written(store: BlobStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 keeps whole seconds
    shas = {store.put(f"listed {n}".encode()) for n in range(3)}
    store.delete(store.put(b"deleted again"))
    listed = list(store.list_blobs())
    assert {blob.sha256 for blob in listed} == shas
    assert all(before <= blob.modified_at <= datetime.now(UTC) for blob in listed)


def test_put_file_is_put(store: BlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 17)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    digest = store.put_file(path)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put(data) == digest
    assert store.get(digest) == data


def test_unknown_hash_is_not_found(store: BlobStore) -> None:
    unknown = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    assert not store.exists(unknown)
    with pytest.raises(BlobNotFoundError):
        store.get(unknown)


@pytest.mark.parametrize("malformed", MALFORMED)
def test_malformed_hash_is_a_value_error(store: BlobStore, malformed: str) -> None:
    with pytest.raises(ValueError, match="SHA-256"):
        store.get(malformed)
    with pytest.raises(ValueError, match="SHA-256"):
        store.exists(malformed)


# ---------------------------------------------------------------------------
# S3 specifics
# ---------------------------------------------------------------------------


def test_objects_are_laid_out_by_hash_with_the_hash_as_metadata(s3_store: S3BlobStore) -> None:
    digest = s3_store.put(b"layout")
    key = f"{s3_store.prefix}sha256/{digest[:2]}/{digest[2:4]}/{digest}"
    assert _keys(s3_store) == [key]
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)
    assert head["Metadata"] == {"sha256": digest}
    assert head["ContentLength"] == len(b"layout")


def test_put_is_idempotent_and_uploads_once(s3_store: S3BlobStore, tmp_path: Path) -> None:
    puts = _count_calls(s3_store, "PutObject")
    digest = s3_store.put(b"only once")
    assert len(puts) == 1
    assert s3_store.put(b"only once") == digest
    path = tmp_path / "same.txt"
    path.write_bytes(b"only once")
    assert s3_store.put_file(path) == digest
    assert len(puts) == 1  # the HEAD found it: no second upload
    assert _keys(s3_store) == [s3_store.key(digest)]


def test_put_file_streams_a_large_file_in_parts(s3_store: S3BlobStore, tmp_path: Path) -> None:
    path = tmp_path / "large.bin"
    expected = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(30):
            chunk = os.urandom(MIB)
            expected.update(chunk)
            out.write(chunk)
    parts = _count_calls(s3_store, "UploadPart")
    single = _count_calls(s3_store, "PutObject")

    tracemalloc.start()
    try:
        digest = s3_store.put_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert digest == expected.hexdigest()
    assert len(parts) >= 4 and not single  # 8 MiB parts, no single PUT
    assert peak < 12 * MIB, f"put_file peaked at {peak / MIB:.1f} MiB for a 30 MiB file"
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=s3_store.key(digest))
    assert head["ContentLength"] == 30 * MIB
    assert head["Metadata"] == {"sha256": digest}
    assert hashlib.sha256(s3_store.get(digest)).hexdigest() == digest


def test_a_file_changed_during_upload_is_not_kept(s3_store: S3BlobStore, tmp_path: Path) -> None:
    path = tmp_path / "moving.txt"
    path.write_bytes(b"first version")

    def change_file(**_: Any) -> None:
        with path.open("ab") as out:
            out.write(b", and more")

    s3_store.client.meta.events.register("before-call.s3.PutObject", change_file)
    with pytest.raises(BlobIntegrityError, match="changed"):
        s3_store.put_file(path)
    assert _keys(s3_store) == []


def test_large_bytes_are_put_in_parts(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_server.store(
        s3_bucket,
        prefix=f"t-{secrets.token_hex(4)}/",
        multipart_threshold=5 * MIB,
        multipart_chunksize=5 * MIB,
    )
    parts = _count_calls(store, "UploadPart")
    data = os.urandom(11 * MIB)
    digest = store.put(data)
    assert len(parts) == 3
    assert store.get(digest) == data


def test_bytes_that_do_not_match_their_key_are_refused(s3_store: S3BlobStore) -> None:
    good = hashlib.sha256(b"good").hexdigest()
    s3_store.client.put_object(
        Bucket=s3_store.bucket, Key=s3_store.key(good), Body=b"evil", Metadata={"sha256": good}
    )
    assert s3_store.exists(good)
    with pytest.raises(BlobIntegrityError, match="holds bytes"):
        s3_store.get(good)


def test_metadata_that_does_not_match_the_key_is_refused(s3_store: S3BlobStore) -> None:
    digest = hashlib.sha256(b"right bytes").hexdigest()
    s3_store.client.put_object(
        Bucket=s3_store.bucket,
        Key=s3_store.key(digest),
        Body=b"right bytes",
        Metadata={"sha256": "0" * 64},
    )
    with pytest.raises(BlobIntegrityError, match="recorded"):
        s3_store.get(digest)


def test_create_bucket_is_idempotent(s3_server: S3Server) -> None:
    bucket = f"triage-test-{secrets.token_hex(6)}"
    first = s3_server.store(bucket, create_bucket=True)
    try:
        second = s3_server.store(bucket, create_bucket=True)
        assert second.get(first.put(b"in a new bucket")) == b"in a new bucket"
    finally:
        empty_and_delete_bucket(first.client, bucket)


def test_wrong_credentials_fail_loudly(s3_server: S3Server, s3_bucket: str) -> None:
    store = S3BlobStore(
        bucket=s3_bucket,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key="not-the-secret",
    )
    digest = hashlib.sha256(b"x").hexdigest()
    with pytest.raises(store.client.exceptions.ClientError) as raised:
        store.get(digest)
    assert not isinstance(raised.value, BlobNotFoundError)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_repr_hides_the_secret(s3_server: S3Server, s3_bucket: str) -> None:
    store = s3_server.store(s3_bucket)
    assert s3_server.secret_access_key not in repr(store)
    assert s3_bucket in repr(store)


# ---------------------------------------------------------------------------
# blob_store_from_url
# ---------------------------------------------------------------------------


def test_file_url_and_plain_path_give_a_local_store(tmp_path: Path) -> None:
    from_url = blob_store_from_url((tmp_path / "a").as_uri())
    from_path = blob_store_from_url(str(tmp_path / "b"))
    assert isinstance(from_url, LocalBlobStore)
    assert isinstance(from_path, LocalBlobStore)
    digest = from_url.put(b"local")
    assert (tmp_path / "a" / "sha256" / digest[:2] / digest[2:4] / digest).read_bytes() == b"local"
    from_path.put(b"local")
    assert (tmp_path / "b" / "sha256" / digest[:2] / digest[2:4] / digest).exists()


def test_s3_url_gives_an_s3_store(s3_server: S3Server, s3_bucket: str) -> None:
    prefix = f"url-{secrets.token_hex(4)}/nested"
    store = blob_store_from_url(
        f"s3://{s3_bucket}/{prefix}",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (s3_bucket, prefix + "/")
    digest = store.put(b"through a url")
    assert _keys(store) == [f"{prefix}/sha256/{digest[:2]}/{digest[2:4]}/{digest}"]
    assert store.get(digest) == b"through a url"


def test_s3_url_without_a_prefix_uses_blobs(s3_server: S3Server, s3_bucket: str) -> None:
    store = blob_store_from_url(
        f"s3://{s3_bucket}",
        endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
    assert isinstance(store, S3BlobStore)
    assert store.prefix == "blobs/"


@pytest.mark.parametrize(
    "url",
    ["", "ftp://host/blobs", "s3://", "s3:///prefix", "s3://user@bucket/x", "file://host/x"],
)
def test_unusable_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        blob_store_from_url(url)


def test_ingest_and_classifier_share_documents_through_s3(
    s3_server: S3Server, s3_bucket: str, isolated: Stack, clean_db: str, small_model: Path
) -> None:
    """With TRIAGE_BLOB_URL=s3://..., an upload lands in S3 and the classifier reads it there."""
    from fastapi.testclient import TestClient

    from tests.kafkatools import collect
    from triage_classifier.app import create_app as classifier_app
    from triage_classifier.settings import Settings as ClassifierSettings
    from triage_contracts import topics
    from triage_ingest.app import create_app as ingest_app
    from triage_ingest.settings import Settings as IngestSettings

    s3 = {
        "blob_url": f"s3://{s3_bucket}/pipeline-{secrets.token_hex(3)}/",
        "s3_endpoint_url": s3_server.endpoint_url,
        "s3_region": s3_server.region,
        "s3_access_key_id": s3_server.access_key_id,
        "s3_secret_access_key": s3_server.secret_access_key,
        "kafka_bootstrap": isolated.kafka_bootstrap,
        "topic_prefix": isolated.topic_prefix,
        "database_url": clean_db,
    }
    text = b"the invoice payment is overdue, please refund the charge"
    ingest = IngestSettings(**s3, require_api_key=False)  # type: ignore[arg-type]
    with TestClient(ingest_app(ingest)) as client:
        response = client.post("/v1/documents", files={"files": ("a.txt", text, "text/plain")})
    assert response.status_code == 202, response.text
    [doc] = response.json()["documents"]
    store = ingest.open_blob_store()
    assert isinstance(store, S3BlobStore)
    assert store.get(doc["sha256"]) == text

    classifier = ClassifierSettings(**s3, model_path=small_model, group_id="it-s3")  # type: ignore[arg-type]
    with TestClient(classifier_app(classifier)):
        out = asyncio.run(
            collect(
                isolated.kafka_bootstrap,
                [isolated.topic(topics.CLASSIFIED)],
                until=lambda ms: any(m["key"] == doc["document_id"] for m in ms),
            )
        )
    [scored] = [m for m in out if m["key"] == doc["document_id"]]
    assert scored["value"]["prediction"]["label"] == "billing"


def test_delete_removes_one_blob_and_says_whether_it_was_there(store: BlobStore) -> None:
    keep = store.put(b"kept bytes")
    gone = store.put(b"retired bytes")
    assert store.delete(gone) is True
    assert not store.exists(gone) and store.exists(keep)
    with pytest.raises(BlobNotFoundError):
        store.get(gone)
    assert store.delete(gone) is False  # a second retention run finds nothing
