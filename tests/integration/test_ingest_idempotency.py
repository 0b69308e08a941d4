"""Idempotency-Key under concurrency, through the real app, PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import create_engine, text

from tests.faults.harness import read_topics
from tests.helpers import isolated_ingest_settings, new_api_key, sql_rows
from tests.stack import Stack
from triage_contracts import topics
from triage_ingest import uploads
from triage_ingest.app import create_app
from triage_ingest.domain import request_sha256
from triage_ingest.settings import Settings
from triage_ingest.store import IngestStore
from triage_runtime.db.engine import make_async_engine

PAIRS = 10


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        max_files_per_request=3,
        # Races of eight come from one key: its concurrency limit must not refuse them.
        max_concurrent_uploads_per_key=16,
    )


def _all_at_once(send: Callable[[int], Response], width: int) -> list[Response]:
    """Call ``send(0..width-1)`` from ``width`` threads released together."""
    start = threading.Barrier(width)

    def go(n: int) -> Response:
        start.wait()
        return send(n)

    with ThreadPoolExecutor(width) as pool:
        return list(pool.map(go, range(width)))


def _at_once(client: TestClient, key: str, bodies: tuple[bytes, bytes]) -> list[Response]:
    """Send two uploads under one Idempotency-Key at the same moment."""
    return _all_at_once(
        lambda n: client.post(
            "/v1/documents",
            files={"files": ("a.txt", bodies[n], "text/plain")},
            headers={"Idempotency-Key": key},
        ),
        2,
    )


def _ids(response: Response) -> list[str]:
    return [d["document_id"] for d in response.json()["documents"]]


def _published_ids(stack: Stack) -> Counter[str]:
    records = asyncio.run(read_topics(stack.kafka_bootstrap, [stack.topic(topics.DOCUMENTS)]))
    return Counter(str(r["key"]) for r in records)


def test_concurrent_pairs_under_one_key_are_one_request(
    settings: Settings, isolated: Stack
) -> None:
    api_key = new_api_key(settings.database_url, "portal")
    accepted: list[str] = []
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        for n in range(PAIRS):
            body = f"the same bytes {n}".encode()
            first, second = _at_once(client, f"same-{n}", (body, body))
            assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
            assert first.json() == second.json(), "both answers name the one document"
            accepted.extend(_ids(first))
        for n in range(PAIRS):
            bodies = (f"left {n}".encode(), f"right {n}".encode())
            answers = _at_once(client, f"diff-{n}", bodies)
            assert sorted(a.status_code for a in answers) == [202, 422], [a.text for a in answers]
            [won] = [a for a in answers if a.status_code == 202]
            [lost] = [a for a in answers if a.status_code == 422]
            assert "Idempotency-Key" in lost.json()["detail"]
            accepted.extend(_ids(won))
            # A retry of either body gets the same answer again, never a new document.
            lost_body = bodies[answers.index(lost)]
            won_body = bodies[answers.index(won)]
            retry_lost, retry_won = (
                client.post(
                    "/v1/documents",
                    files={"files": ("a.txt", body, "text/plain")},
                    headers={"Idempotency-Key": f"diff-{n}"},
                )
                for body in (lost_body, won_body)
            )
            assert retry_lost.status_code == 422
            assert retry_won.status_code == 202
            assert retry_won.json() == won.json()
    assert len(set(accepted)) == 2 * PAIRS
    stored = {
        str(r[0]) for r in sql_rows(settings.database_url, "SELECT document_id FROM document")
    }
    assert stored == set(accepted), "exactly the documents the 202 answers named"
    published = _published_ids(isolated)
    assert set(published) == set(accepted)
    assert all(count == 1 for count in published.values()), published


def test_a_crashed_requests_reservation_expires_and_a_retry_proceeds(
    settings: Settings, isolated: Stack
) -> None:
    quick = settings.model_copy(
        update={"idempotency_reservation_seconds": 30.0, "idempotency_wait_seconds": 0.5}
    )
    api_key = new_api_key(settings.database_url, "portal")
    engine = create_engine(settings.database_url)
    files = {"files": ("a.txt", b"crashed half-way", "text/plain")}
    with TestClient(create_app(quick), headers={"X-API-Key": api_key}) as client:
        key_id = sql_rows(settings.database_url, "SELECT id FROM api_key")[0][0]

        def reserve(key: str, seconds_left: int, request_sha256: str = "0" * 64) -> None:
            # What a request that died after reserving its key leaves behind.
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO idempotency_record (api_key_id, idempotency_key,"
                        " request_sha256, reserved_until, owner_token)"
                        " VALUES (:k, :key, :sha, now() + make_interval(secs => :s),"
                        " gen_random_uuid())"
                    ),
                    {"k": key_id, "key": key, "sha": request_sha256, "s": seconds_left},
                )

        reserve("crashed", -1)
        retry = client.post("/v1/documents", files=files, headers={"Idempotency-Key": "crashed"})
        assert retry.status_code == 202, retry.text
        again = client.post("/v1/documents", files=files, headers={"Idempotency-Key": "crashed"})
        assert again.json() == retry.json()

        body = files["files"][1]
        same = request_sha256(
            [("a.txt", "text/plain", hashlib.sha256(body).hexdigest(), len(body))], {}
        )
        reserve("in-flight", 30, same)
        other = client.post(
            "/v1/documents",
            files={"files": ("a.txt", b"another body", "text/plain")},
            headers={"Idempotency-Key": "in-flight"},
        )
        assert other.status_code == 422, "a different body is refused at once, answer or not"
        busy = client.post("/v1/documents", files=files, headers={"Idempotency-Key": "in-flight"})
        assert busy.status_code == 409, busy.text
        assert int(busy.headers["retry-after"]) >= 1
    engine.dispose()
    assert _published_ids(isolated) == Counter(_ids(retry))


def _accepted_documents(metrics: str) -> float:
    line = r'^triage_ingest_documents_total\{source_kind="upload"\} (\S+)$'
    found = re.search(line, metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_identical_bytes_sent_at_once_are_one_document_published_and_counted_once(
    settings: Settings, isolated: Stack
) -> None:
    api_key = new_api_key(settings.database_url, "portal")
    rounds, width = 5, 8
    with TestClient(create_app(settings), headers={"X-API-Key": api_key}) as client:
        before = _accepted_documents(client.get("/metrics").text)
        accepted: set[str] = set()
        for n in range(rounds):
            body = f"identical {n}".encode()
            answers = _all_at_once(
                lambda i, body=body: client.post(  # type: ignore[misc]
                    "/v1/documents", files={"files": (f"copy{i}.txt", body, "text/plain")}
                ),
                width,
            )
            assert {a.status_code for a in answers} == {202}
            [one] = {i for a in answers for i in _ids(a)}
            accepted.add(one)
        after = _accepted_documents(client.get("/metrics").text)
    assert after - before == rounds, "each document counted once"
    published = _published_ids(isolated)
    assert published == Counter(dict.fromkeys(accepted, 1)), published


def test_a_live_request_keeps_its_key_past_its_hold_and_a_dead_ones_key_is_freed(
    settings: Settings,
) -> None:
    new_api_key(settings.database_url, "portal")
    [(key_id,)] = sql_rows(settings.database_url, "SELECT id FROM api_key")
    hold, sha = 3.0, "a" * 64

    async def run() -> None:
        engine = make_async_engine(settings.database_url)
        store = IngestStore(engine)
        try:
            first = await store.claim_idempotency_key(
                key_id, "slow", request_sha256=sha, hold_seconds=hold
            )
            assert first.owner is not None
            async with uploads.key_kept(store, key_id, "slow", first.owner, hold_seconds=hold):
                await asyncio.sleep(2.5 * hold)  # a slow body: well past one hold
                retry = await store.claim_idempotency_key(
                    key_id, "slow", request_sha256=sha, hold_seconds=hold
                )
                assert retry.owner is None, "a live request keeps its key"
            # The request dies here, neither answering nor giving the key up (a kill -9).
            await asyncio.sleep(hold + 0.5)
            taken = await store.claim_idempotency_key(
                key_id, "slow", request_sha256=sha, hold_seconds=hold
            )
            assert taken.owner is not None and taken.owner != first.owner
        finally:
            await engine.dispose()

    asyncio.run(run())
