"""Every blob belongs to something, on real PostgreSQL and real blob stores (local, S3Proxy):
the raw email goes with the last of its documents, a refused upload stores nothing, and the
orphan sweep removes only what nothing owns, even while uploads are in flight."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import async_sessionmaker
from typer.testing import CliRunner

from tests.helpers import email_bytes, give_outcome, isolated_ingest_settings, new_api_key, sql_rows
from tests.integration.conftest import S3Server
from tests.stack import Stack
from triage_cli.main import app as cli
from triage_ingest.app import create_app
from triage_ingest.settings import Settings
from triage_ingest.store import IngestStore
from triage_runtime import blobrefs
from triage_runtime.blobstore import BlobStore, LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.retention import sweep_orphans


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        max_files_per_request=3,
        max_concurrent_uploads_per_key=16,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = new_api_key(settings.database_url, "portal")
        yield client


def _sql(url: str, statement: str, **params: object) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(statement), params)
    finally:
        engine.dispose()


def _lower_sweep_floor(database_url: str) -> None:
    """Let the sweep see blobs made to look written days ago (they predate the migration)."""
    _sql(database_url, "UPDATE blob_sweep_floor SET since = now() - interval '30 days'")


def _stored(blob_dir: Path) -> set[str]:
    """The hashes in a local blob directory, read from the disk itself."""
    return {p.name for p in (blob_dir / "sha256").glob("??/??/*") if not p.name.startswith(".")}


def _retention(env: dict[str, str], *extra: str) -> list[int]:
    result = CliRunner().invoke(cli, ["retention", "run", "--document-days", "90", *extra], env=env)
    assert result.exit_code == 0, result.output
    return [int(c) for c in re.findall(r"│\s+(\d+) │", result.output)]


def test_the_raw_email_goes_with_the_last_of_its_documents(
    client: TestClient, settings: Settings
) -> None:
    raw = email_bytes("Invoice 7", "Please pay invoice 7.", attachment=b"%PDF-1.4 invoice 7")
    raw_sha = hashlib.sha256(raw).hexdigest()
    answer = client.post("/v1/documents", files={"files": ("mail.eml", raw, "message/rfc822")})
    assert answer.status_code == 202, answer.text
    body, attachment = (d["document_id"] for d in answer.json()["documents"])
    blobs = LocalBlobStore(settings.blob_dir)
    assert blobs.exists(raw_sha)
    owners = sql_rows(
        settings.database_url,
        f"SELECT document_id FROM document_raw WHERE raw_sha256 = '{raw_sha}' ORDER BY 1",
    )
    assert sorted(r[0] for r in owners) == sorted([body, attachment])

    # A hundred days pass.
    _sql(settings.database_url, "UPDATE document SET received_at = now() - interval '100 days'")
    _sql(settings.database_url, "UPDATE pending_blob SET held_at = now() - interval '100 days'")
    give_outcome(settings.database_url, body, "routed")
    give_outcome(settings.database_url, attachment, "in_review")
    env = {"TRIAGE_DATABASE_URL": settings.database_url, "TRIAGE_BLOB_DIR": str(settings.blob_dir)}
    # The body's own bytes go (its document is routed); the raw email stays with the attachment.
    assert _retention(env)[:2] == [1, 1]
    assert blobs.exists(raw_sha), "the raw email went while one of its documents is in review"

    give_outcome(settings.database_url, attachment, "decided")
    dry = _retention(env, "--dry-run")
    assert blobs.exists(raw_sha), "a dry run removed the raw email"
    # The attachment's bytes and the raw email: 2 blobs, 1 document row purged.
    assert dry[:2] == [2, 1]
    assert _retention(env)[:2] == [2, 1]
    assert not blobs.exists(raw_sha)
    assert _stored(settings.blob_dir) == set()
    assert sql_rows(settings.database_url, "SELECT 1 FROM document_raw") == []
    assert _retention(env)[:2] == [0, 0], "a second run must remove nothing"

    # An upload that crashed two days ago left bytes nothing owns: the same run sweeps them.
    stray = blobs.put(b"bytes of an upload that crashed before its document was recorded")
    two_days_ago = time.time() - 2 * 86400
    os.utime(settings.blob_dir / "sha256" / stray[:2] / stray[2:4] / stray, (two_days_ago,) * 2)
    # Written before the sweep's floor (this database's migration 0021), it is left alone: so
    # are the raw emails and dead-letter inputs of an installation upgraded to it.
    assert _retention(env)[-1] == 0
    _lower_sweep_floor(settings.database_url)
    assert _retention(env, "--dry-run")[-1] == 1
    assert _retention(env)[-1] == 1
    assert not blobs.exists(stray)


def test_a_dead_letters_raw_input_goes_after_the_document_period(
    clean_db: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    old, recent = blobs.put(b"MZ an old refused input"), blobs.put(b"MZ a recent one")
    for sha, days in ((old, 100), (recent, 5)):
        _sql(
            clean_db,
            "INSERT INTO dead_letter_blob VALUES (:s, now() - make_interval(days => :d))",
            s=sha,
            d=days,
        )
    env = {"TRIAGE_DATABASE_URL": clean_db, "TRIAGE_BLOB_DIR": str(tmp_path / "blobs")}
    assert _retention(env)[0] == 1
    assert not blobs.exists(old) and blobs.exists(recent)
    assert sql_rows(clean_db, "SELECT sha256 FROM dead_letter_blob") == [(recent,)]


def test_a_refused_upload_stores_no_bytes(client: TestClient, settings: Settings) -> None:
    accepted = client.post(
        "/v1/documents",
        files={"files": ("a.txt", b"the first request", "text/plain")},
        headers={"Idempotency-Key": "k-1"},
    )
    assert accepted.status_code == 202
    kept = _stored(settings.blob_dir)
    assert kept == {accepted.json()["documents"][0]["sha256"]}

    def refused(status: int, **kwargs: object) -> None:
        response = client.post("/v1/documents", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == status, response.text
        assert _stored(settings.blob_dir) == kept, f"the {status} left bytes in the blob store"

    # Invalid metadata, and the same Idempotency-Key with other bytes: 422.
    refused(
        422,
        files={"files": ("b.txt", b"bytes refused for their metadata", "text/plain")},
        data={"metadata": "not json"},
    )
    refused(
        422,
        files={"files": ("a.txt", b"other bytes under the same key", "text/plain")},
        headers={"Idempotency-Key": "k-1"},
    )
    # A good first file, then one too large or of a refused type: 413, 415.
    good = ("c.txt", b"a good first file", "text/plain")
    refused(413, files=[("files", good), ("files", ("d.txt", b"x" * 70_000, "text/plain"))])
    refused(415, files=[("files", good), ("files", ("e.exe", b"MZ", "application/x-dosexec"))])


def test_an_upload_refused_for_a_database_outage_stores_no_bytes(settings: Settings) -> None:
    """PostgreSQL down once the request is in: 503, and nothing reaches the blob store (the
    bytes are held in PostgreSQL before they are stored)."""
    broken = settings.model_copy(
        update={
            "database_url": "postgresql+psycopg://triage:triage@127.0.0.1:1/triage",
            "require_api_key": False,
        }
    )
    with TestClient(create_app(broken)) as client:
        response = client.post(
            "/v1/documents", files={"files": ("a.txt", b"bytes during an outage", "text/plain")}
        )
    assert response.status_code == 503, response.text
    assert _stored(settings.blob_dir) == set()


def _hold(database_url: str, sha256: str) -> None:
    """Hold a blob as ingest does before it stores the bytes."""

    async def run() -> None:
        engine = make_async_engine(database_url)
        try:
            await IngestStore(engine).hold_blobs([sha256])
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """Each blob store in turn."""
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    server: S3Server = request.getfixturevalue("s3_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    return server.store(bucket, prefix=f"t-{secrets.token_hex(4)}/")


def test_the_sweep_removes_old_orphans_only(store: BlobStore, clean_db: str) -> None:
    old = {
        name: store.put(f"written a while ago: {name}".encode())
        for name in ("orphan", "document", "raw email", "dead letter", "held", "stale hold")
    }
    url = clean_db
    _sql(
        url,
        "INSERT INTO document (document_id, source_kind, source_name, media_type, blob_sha256,"
        " size_bytes, received_at, event_id, trace_id) VALUES ('doc', 'upload', 't',"
        " 'text/plain', :s, 3, now(), gen_random_uuid(), :t)",
        s=old["document"],
        t="ab" * 16,
    )
    _sql(url, "INSERT INTO document_raw VALUES ('doc', :s)", s=old["raw email"])
    _sql(url, "INSERT INTO dead_letter_blob VALUES (:s, now())", s=old["dead letter"])
    _hold(url, old["stale hold"])  # a crashed upload's
    # S3 keeps the time of writing in whole seconds: what comes after the cutoff is written
    # over a second later, so that no rounding puts it before.
    time.sleep(1.1)
    cutoff = datetime.now(UTC)
    time.sleep(1.1)
    _hold(url, old["held"])  # an upload storing these bytes again, now
    young = store.put(b"written just now, its document not recorded yet")
    grace = timedelta(hours=1)

    def sweep(*, dry_run: bool = False) -> int:
        async def run() -> int:
            engine = make_async_engine(url)
            try:
                return await sweep_orphans(
                    engine, store, now=cutoff + grace, grace=grace, dry_run=dry_run
                )
            finally:
                await engine.dispose()

        return asyncio.run(run())

    assert sweep(dry_run=True) == 2
    assert store.exists(old["orphan"]), "a dry run removed an orphan"
    assert sweep() == 2
    gone = {name for name, sha in old.items() if not store.exists(sha)}
    assert gone == {"orphan", "stale hold"}
    assert store.exists(young)
    assert {r[0] for r in sql_rows(url, "SELECT sha256 FROM pending_blob")} == {old["held"]}
    assert sweep() == 0, "a second sweep must remove nothing"


def test_a_sweep_during_uploads_never_removes_a_document_being_accepted(
    client: TestClient, settings: Settings
) -> None:
    """The race: bytes stored, the sweep lists them, then the document row. The uploads'
    bytes are already in the store as old orphans (a crashed upload's), so storing them again
    writes nothing new: only the hold and its lock keep the sweep off them."""
    blobs = LocalBlobStore(settings.blob_dir)
    bodies = [f"document {n}: {secrets.token_hex(8)}".encode() for n in range(40)]
    strays = [blobs.put(f"a stray {n}".encode()) for n in range(5)]
    an_hour_ago = time.time() - 3600
    for sha in [*(blobs.put(data) for data in bodies), *strays]:
        path = settings.blob_dir / "sha256" / sha[:2] / sha[2:4] / sha
        os.utime(path, (an_hour_ago, an_hour_ago))

    _lower_sweep_floor(settings.database_url)
    done = threading.Event()
    sweeps: list[int] = []

    def sweep_until_done() -> None:
        async def run() -> None:
            engine = make_async_engine(settings.database_url, pool_size=2)
            try:
                while not done.is_set():
                    now = datetime.now(UTC)
                    sweeps.append(
                        await sweep_orphans(engine, blobs, now=now, grace=timedelta(minutes=1))
                    )
            finally:
                await engine.dispose()

        asyncio.run(run())

    sweeper = threading.Thread(target=sweep_until_done)
    sweeper.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda n: client.post(
                        "/v1/documents", files={"files": (f"{n}.txt", bodies[n], "text/plain")}
                    ),
                    range(len(bodies)),
                )
            )
    finally:
        done.set()
        sweeper.join(timeout=120)
    assert [a.status_code for a in answers] == [202] * len(bodies)
    assert len(sweeps) > 1, "the sweep did not run during the uploads"
    for data, answer in zip(bodies, answers, strict=True):
        [document] = answer.json()["documents"]
        assert blobs.get(document["sha256"]) == data, "a document lost its bytes to the sweep"
    assert not any(blobs.exists(sha) for sha in strays), "the sweep kept real orphans"


def test_a_hold_waits_for_a_delete_under_way(clean_db: str, tmp_path: Path) -> None:
    """The one interleaving the sweep's look cannot see: it found no owner, and before it
    deletes, an upload of the same bytes holds them and finds them stored. The blob's lock
    makes the hold wait until the delete is done, so the upload then stores them again."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha = blobs.put(b"an old orphan, about to be uploaded again")

    async def run() -> tuple[bool, bool]:
        engine = make_async_engine(clean_db)
        sessions = async_sessionmaker(engine)
        try:
            async with sessions.begin() as sweep:
                await blobrefs.lock_exclusive(sweep, sha)
                hold = asyncio.create_task(IngestStore(engine).hold_blobs([sha]))
                await asyncio.sleep(1.0)
                waited = not hold.done()
                blobs.delete(sha)
            await hold
            # The upload goes on: its bytes are not there, so storing them writes them.
            blobs.put(b"an old orphan, about to be uploaded again")
            return waited, blobs.exists(sha)
        finally:
            await engine.dispose()

    waited, stored = asyncio.run(run())
    assert waited, "the hold did not wait for the delete under way"
    assert stored


def test_retention_keeps_old_bytes_that_an_upload_is_storing_again(
    clean_db: str, tmp_path: Path
) -> None:
    """A document past its period, and the same bytes arriving again: held by the new
    upload, they stay until its document is recorded (and makes them young)."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha = blobs.put(b"an invoice sent again a hundred days later")
    _sql(
        clean_db,
        "INSERT INTO document (document_id, source_kind, source_name, media_type, blob_sha256,"
        " size_bytes, received_at, event_id, trace_id) VALUES ('doc', 'upload', 't',"
        " 'text/plain', :s, 3, now() - interval '100 days', gen_random_uuid(), :t)",
        s=sha,
        t="ab" * 16,
    )
    give_outcome(clean_db, "doc", "routed")
    _hold(clean_db, sha)
    env = {"TRIAGE_DATABASE_URL": clean_db, "TRIAGE_BLOB_DIR": str(tmp_path / "blobs")}
    assert _retention(env, "--dry-run")[:2] == [0, 0]
    assert _retention(env)[:2] == [0, 0]
    assert blobs.exists(sha)
    assert sql_rows(clean_db, "SELECT 1 FROM document_purge") == []
    # Once the hold is past the grace (the upload crashed), the old document's bytes go.
    _sql(clean_db, "UPDATE pending_blob SET held_at = now() - interval '2 days'")
    assert _retention(env)[:2] == [1, 1]
    assert not blobs.exists(sha)
