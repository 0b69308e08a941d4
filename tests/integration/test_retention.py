"""Retention on real PostgreSQL and a real blob store: what goes, what stays, idempotence."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from tests.helpers import classified, give_outcome
from triage_cli.main import app as cli
from triage_runtime.accounts.store import AuthStore
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

NOW = datetime.now(UTC)


def _sql(url: str, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(url)
    with engine.begin() as conn:
        result = conn.execute(text(statement), params)
        rows = list(result.all()) if result.returns_rows else []
    engine.dispose()
    return rows


def _document(url: str, doc: str, sha: str, *, days_ago: float, status: str) -> None:
    _sql(
        url,
        "INSERT INTO document (document_id, source_kind, source_name, media_type, blob_sha256,"
        " size_bytes, received_at, event_id, trace_id)"
        " VALUES (:d, 'upload', 'test', 'text/plain', :s, 3, :at, :e, :t)",
        d=doc,
        s=sha,
        at=NOW - timedelta(days=days_ago),
        e=uuid.uuid4(),
        t="ab" * 16,
    )
    give_outcome(url, doc, status)


def test_retention_removes_what_is_past_its_period_and_nothing_else(
    clean_db: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    sha = {name: blobs.put(f"raw bytes of {name}".encode()) for name in "abcde"}
    _document(clean_db, "doc_a", sha["a"], days_ago=100, status="routed")
    _document(clean_db, "doc_b", sha["b"], days_ago=100, status="decided")
    _document(clean_db, "doc_c", sha["c"], days_ago=100, status="in_review")  # still open
    _document(clean_db, "doc_d", sha["d"], days_ago=5, status="routed")  # too recent
    _document(clean_db, "doc_e1", sha["e"], days_ago=100, status="routed")
    _document(clean_db, "doc_e2", sha["e"], days_ago=5, status="routed")  # shares e's bytes

    async def reviews() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        for n in range(4):
            event = classified(sha256=f"{n + 1:064x}", confidence=0.5)
            await store.open_review(
                event, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, NOW + timedelta(hours=4))
            )
        await AuthStore(engine).create_user("kim", "a long enough password", "reviewer")
        await engine.dispose()

    asyncio.run(reviews())
    # Two browsers kim signed in with: one unused for 100 days (past the back-off's 90), one
    # used 40 days ago (past the operational 30, but still known).
    _sql(
        clean_db,
        "INSERT INTO known_device (token_sha256, user_id, last_used_at)"
        " SELECT d.t, u.id, :now - d.days * interval '1 day'"
        " FROM app_user u, (VALUES ('a', 100), ('b', 40)) AS d(t, days) WHERE u.username = 'kim'",
        now=NOW,
    )
    ids = [r[0] for r in _sql(clean_db, "SELECT id FROM review_item ORDER BY id")]
    ages = {ids[0]: ("decided", 400), ids[1]: ("decided", 10), ids[2]: ("pending", 400)}
    ages[ids[3]] = ("closed", 400)
    for item_id, (status, days) in ages.items():
        _sql(
            clean_db,
            "UPDATE review_item SET status = :s, decided_at = :at, created_at = :at,"
            " decided_label = :label WHERE id = :i",
            s=status,
            label="billing" if status == "decided" else None,
            at=NOW - timedelta(days=days),
            i=item_id,
        )
    _sql(
        clean_db,
        "INSERT INTO login_attempt (username, remote_addr, at, success) VALUES"
        " ('old', '127.0.0.1', :old, false), ('new', '127.0.0.1', :new, true)",
        old=NOW - timedelta(days=40),
        new=NOW,
    )
    env = {"TRIAGE_DATABASE_URL": clean_db, "TRIAGE_BLOB_DIR": str(tmp_path / "blobs")}

    def run(*extra: str) -> str:
        result = CliRunner().invoke(
            cli,
            ["retention", "run", "--document-days", "90", "--review-days", "365", *extra],
            env=env,
        )
        assert result.exit_code == 0, result.output
        return result.output

    dry = run("--dry-run")
    assert "dry run" in dry
    assert all(blobs.exists(s) for s in sha.values()), "a dry run removed bytes"
    assert len(_sql(clean_db, "SELECT 1 FROM review_item")) == 4

    out = run()
    assert not blobs.exists(sha["a"]) and not blobs.exists(sha["b"])
    assert all(blobs.exists(sha[k]) for k in "cde")
    purged = {r[0] for r in _sql(clean_db, "SELECT document_id FROM document_purge")}
    assert purged == {"doc_a", "doc_b"}
    assert len(_sql(clean_db, "SELECT 1 FROM document")) == 6, "document rows stay"
    remaining = {r[0] for r in _sql(clean_db, "SELECT id FROM review_item")}
    assert remaining == {ids[1], ids[2]}
    assert [r[0] for r in _sql(clean_db, "SELECT username FROM login_attempt")] == ["new"]
    assert [r[0] for r in _sql(clean_db, "SELECT token_sha256 FROM known_device")] == ["b"]
    # The dry run counted exactly what the run removed: 2 blobs, 2 rows purged, 2 review
    # items, 0 sessions, 1 sign-in attempt, 0 idempotency records, 1 known browser, 0
    # orphans (every blob is younger than the sweep's grace).
    assert _counts(dry) == _counts(out) == [2, 2, 2, 0, 1, 0, 1, 0]

    assert _counts(run()) == [0, 0, 0, 0, 0, 0, 0, 0], "a second run must remove nothing"


def _counts(output: str) -> list[int]:
    return [int(c) for c in re.findall(r"│\s+(\d+) │", output)]
