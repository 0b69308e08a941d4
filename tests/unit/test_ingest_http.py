"""The ingest app's upload API and connector lifecycle, with PostgreSQL and Kafka in memory.

``create_app`` builds the real app; its store, Intake and API keys are swapped for in-memory
fakes on ``app.state`` (what the routes read), and no test starts the lifespan.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, cast

import httpx
import pytest
import schemathesis
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI, HTTPException, UploadFile
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker
from prometheus_client import REGISTRY
from schemathesis import checks
from sqlalchemy.exc import OperationalError

from tests.unit.inmemory import MemoryBlobHolds, MemoryEmailIdentities, MemoryOutbox
from triage_contracts import DeadLetterV1, DocumentReceivedV1, Producer, topics
from triage_ingest import domain, uploads
from triage_ingest.app import create_app
from triage_ingest.connectors import Connector, connectors_for, running
from triage_ingest.dropfolder import DropFolder
from triage_ingest.imap import ImapConnector
from triage_ingest.intake import Intake
from triage_ingest.schemas import UploadAccepted
from triage_ingest.settings import ImapAccount, Settings
from triage_ingest.smtp import SmtpReceiver
from triage_ingest.store import IdempotencyClaim, IngestStore, StoredDocument
from triage_runtime.apikeys import ApiKeys, KeyHolder
from triage_runtime.blobstore import LocalBlobStore

KEY_A = {"X-API-Key": "key-a"}
KEY_B = {"X-API-Key": "key-b"}
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


class MemoryStore(MemoryBlobHolds, MemoryEmailIdentities, IngestStore):
    """Ingest's document and idempotency tables, in memory."""

    def __init__(self, outbox: MemoryOutbox) -> None:  # no engine: nothing reaches PostgreSQL
        MemoryBlobHolds.__init__(self)
        MemoryEmailIdentities.__init__(self)
        self.outbox = outbox
        self.raws: dict[str, str] = {}
        self.documents: dict[str, DocumentReceivedV1] = {}
        self.keys: dict[tuple[int, str], HeldKey] = {}
        self.status_lookups = 0

    async def record_dead_letter(self, topic: str, letter: DeadLetterV1) -> None:
        await super().record_dead_letter(topic, letter)
        self.outbox.add([(topic, letter)])

    async def record_documents(
        self,
        events: Sequence[DocumentReceivedV1],
        *,
        topic: str,
        raws: Mapping[str, str] | None = None,
    ) -> list[StoredDocument]:
        self.raws.update(raws or {})
        results = []
        for event in events:
            created = event.document_id not in self.documents
            if created:
                self.documents[event.document_id] = event
                self.outbox.add([(topic, event)])
            stored = self.documents[event.document_id]
            results.append(
                StoredDocument(
                    stored.event_id,
                    stored.trace_id,
                    stored.document.filename,
                    stored.document.blob.media_type,
                    created,
                )
            )
        return results

    async def status(self, document_id: str) -> dict[str, Any] | None:
        self.status_lookups += 1
        event = self.documents.get(document_id)
        if event is None:
            return None
        document = event.document
        return {
            "document_id": document_id,
            "status": "received",
            "source": {"kind": document.source.kind.value, "name": document.source.name},
            "filename": document.filename,
            "media_type": document.blob.media_type,
            "size_bytes": document.blob.size_bytes,
            "parent_document_id": document.parent_document_id,
            "message_id": document.email.message_id if document.email else None,
            "received_at": document.received_at,
            "queue": None,
            "model_version": None,
            "review": None,
        }

    async def documents_of_message(self, message_id: str) -> list[str]:
        return [
            doc
            for doc, event in self.documents.items()
            if event.document.email and event.document.email.message_id == message_id
        ]

    async def claim_idempotency_key(
        self, api_key_id: int, key: str, *, request_sha256: str, hold_seconds: float
    ) -> IdempotencyClaim:
        held = self.keys.get((api_key_id, key))
        if held is None or (held.response is None and held.until < time.monotonic()):
            owner = uuid.uuid4()
            until = time.monotonic() + hold_seconds
            self.keys[(api_key_id, key)] = HeldKey(request_sha256, None, owner, until)
            return IdempotencyClaim(owner=owner, request_sha256=request_sha256, response=None)
        return IdempotencyClaim(owner=None, request_sha256=held.sha256, response=held.response)

    async def answer_idempotency_key(
        self, api_key_id: int, key: str, *, owner: uuid.UUID, response: dict[str, Any]
    ) -> bool:
        held = self.keys.get((api_key_id, key))
        if held is None or held.owner != owner:
            return False
        self.keys[(api_key_id, key)] = HeldKey(held.sha256, response, None, 0.0)
        return True

    async def renew_idempotency_key(
        self, api_key_id: int, key: str, *, owner: uuid.UUID, hold_seconds: float
    ) -> bool:
        held = self.keys.get((api_key_id, key))
        if held is None or held.owner != owner or held.response is not None:
            return False
        self.keys[(api_key_id, key)] = held._replace(until=time.monotonic() + hold_seconds)
        return True

    async def release_idempotency_key(self, api_key_id: int, key: str, *, owner: uuid.UUID) -> None:
        held = self.keys.get((api_key_id, key))
        if held is not None and held.owner == owner and held.response is None:
            del self.keys[(api_key_id, key)]


class HeldKey(NamedTuple):
    """An Idempotency-Key in MemoryStore: its request, answer, holder and reservation end."""

    sha256: str
    response: dict[str, Any] | None
    owner: uuid.UUID | None
    until: float


class MemoryBroker:
    """The publishing half of a KafkaBroker, in memory; ``down`` fails as Kafka would."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, DocumentReceivedV1]] = []
        self.down = False

    async def publish(
        self,
        message: bytes,
        topic: str,
        *,
        key: bytes | None = None,
        headers: dict[str, str] | None = None,
        no_confirm: bool = False,
    ) -> asyncio.Future[None] | None:
        if self.down:
            raise KafkaConnectionError("no broker at 127.0.0.1:1")
        self.sent.append((topic, DocumentReceivedV1.model_validate_json(message)))
        if not no_confirm:
            return None
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)
        return acked


class MemoryApiKeys(ApiKeys):
    """Two live keys: key-a of "alpha" and key-b of "beta"."""

    def __init__(self) -> None:
        self.holders = {"key-a": KeyHolder(1, "alpha"), "key-b": KeyHolder(2, "beta")}

    async def holder(self, key: str) -> KeyHolder | None:
        return self.holders.get(key)


class Ingest:
    """The app under test and its fakes."""

    def __init__(self, tmp_path: Path, **overrides: Any) -> None:
        self.settings = Settings(blob_dir=tmp_path / "blobs", topic_prefix="t.", **overrides)
        self.app: FastAPI = create_app(self.settings)
        self.broker = MemoryBroker()
        self.outbox = MemoryOutbox(cast(KafkaBroker, self.broker))
        self.store = MemoryStore(self.outbox)
        self.blobs = LocalBlobStore(self.settings.blob_dir)
        self.app.state.store = self.store
        self.app.state.blobs = self.blobs
        self.app.state.api_keys = MemoryApiKeys()
        self.app.state.intake = Intake(
            blobs=self.blobs,
            broker=cast(KafkaBroker, self.broker),
            store=self.store,
            outbox=self.outbox,
            producer=Producer(service="ingest", version="test"),
            documents_topic=self.settings.topic(topics.DOCUMENTS),
            deadletter_topic=self.settings.topic(topics.DEADLETTER),
        )
        self.client = TestClient(self.app)  # no lifespan: Kafka and PostgreSQL stay unused

    def upload(self, *files: tuple[str, bytes, str], **kwargs: Any) -> Any:
        parts = [("files", (name, data, kind)) for name, data, kind in files]
        return self.client.post("/v1/documents", files=parts, **kwargs)

    def spooled(self) -> list[Path]:
        return list((self.settings.blob_dir / ".spool").glob("*"))


def test_an_upload_is_stored_recorded_and_published_once(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path)
    answer = ingest.upload(
        ("../letter.txt", b"dear team", "text/plain"),
        ("notes.md", b"# notes", "application/octet-stream"),
        headers=KEY_A,
        data={"metadata": '{"case": "7"}'},
    )
    assert answer.status_code == 202
    documents = answer.json()["documents"]
    assert [(d["filename"], d["media_type"], d["size_bytes"]) for d in documents] == [
        ("letter.txt", "text/plain", 9),
        ("notes.md", "text/markdown", 7),
    ]
    assert all(d["status_url"] == f"/v1/documents/{d['document_id']}" for d in documents)
    assert ingest.blobs.get(documents[0]["sha256"]) == b"dear team"
    sent = [(topic, event.document_id) for topic, event in ingest.broker.sent]
    assert sent == [("t.triage.documents.v1", d["document_id"]) for d in documents]
    event = ingest.broker.sent[0][1]
    assert (event.document.source.kind, event.document.source.name) == ("upload", "alpha")
    assert event.document.metadata == {"case": "7"}
    assert ingest.outbox.pending == {}
    assert ingest.spooled() == []


def _answered(method: str, route: str, status: int) -> float:
    labels = {"service": "ingest", "method": method, "route": route, "status": str(status)}
    return REGISTRY.get_sample_value("triage_http_requests_total", labels) or 0.0


def _upload_seconds() -> float:
    labels = {"service": "ingest", "method": "POST", "route": "/v1/documents"}
    return REGISTRY.get_sample_value("triage_http_request_duration_seconds_sum", labels) or 0.0


def test_every_answer_is_counted_by_method_route_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest = Ingest(tmp_path)
    upload, one = "/v1/documents", "/v1/documents/{document_id}"
    counts = {
        ("POST", upload, 202): 1,
        ("POST", upload, 401): 2,  # answered by the gate, before any route ran
        ("POST", upload, 400): 1,  # a multipart body without a boundary
        ("POST", upload, 415): 1,
        ("POST", upload, 422): 2,  # bad metadata; no files part at all
        ("POST", upload, 500): 1,
        ("GET", one, 404): 1,
        ("GET", one, 401): 1,
        ("GET", upload, 422): 1,  # a lookup by Message-ID without one
        ("DELETE", upload, 405): 1,
        ("GET", "unmatched", 404): 1,
        ("other", "unmatched", 404): 1,
    }
    before = {labels: _answered(*labels) for labels in counts}
    timed = _upload_seconds()

    assert ingest.upload(("a.txt", b"a", "text/plain"), headers=KEY_A).status_code == 202
    assert ingest.upload(("a.txt", b"a", "text/plain")).status_code == 401
    wrong_key = {"X-API-Key": "not-a-key"}
    assert ingest.upload(("a.txt", b"a", "text/plain"), headers=wrong_key).status_code == 401
    no_boundary = {**KEY_A, "Content-Type": "multipart/form-data"}
    assert ingest.client.post(upload, headers=no_boundary, content=b"--x").status_code == 400
    assert (
        ingest.upload(("x.exe", b"MZ", "application/x-msdownload"), headers=KEY_A).status_code
        == 415
    )
    bad = ingest.upload(("a.txt", b"a", "text/plain"), headers=KEY_A, data={"metadata": "[1]"})
    assert bad.status_code == 422
    assert ingest.client.post(upload, headers=KEY_A, data={"x": "y"}).status_code == 422
    assert ingest.client.get("/v1/documents/doc_" + "0" * 32, headers=KEY_A).status_code == 404
    assert ingest.client.get("/v1/documents/doc_" + "0" * 32).status_code == 401
    assert ingest.client.get(upload, headers=KEY_A).status_code == 422
    assert ingest.client.delete(upload, headers=KEY_A).status_code == 405
    assert ingest.client.get("/no/such/page").status_code == 404
    assert ingest.client.request("BREW", "/no/such/page").status_code == 404

    async def a_bug(arrivals: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest.app.state.intake, "accept_many", a_bug)
    crashing = TestClient(ingest.app, raise_server_exceptions=False)
    parts = [("files", ("b.txt", b"b", "text/plain"))]
    assert crashing.post(upload, files=parts, headers=KEY_A).status_code == 500

    assert {labels: _answered(*labels) - before[labels] for labels in counts} == counts
    assert _upload_seconds() > timed


CONFORMANCE = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def test_every_answer_of_the_upload_api_is_in_its_openapi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each answer the upload and status routes give, by the route that gives it: its status
    code, content type, headers and body are the ones the OpenAPI document declares."""
    ingest = Ingest(
        tmp_path,
        max_files_per_request=2,
        max_document_bytes=100,
        idempotency_wait_seconds=0.2,
        uploads_per_minute_per_key=1.0,
        upload_burst_per_key=12,
    )
    post, get = "/v1/documents", "/v1/documents/doc_" + "0" * 32
    file = ("a.txt", b"a", "text/plain")
    answers = {
        "upload": ingest.upload(file, headers=KEY_A),
        "no key": ingest.upload(file),
        "not multipart": ingest.client.post(
            post, headers={**KEY_A, "Content-Type": "multipart/form-data"}, content=b"--x"
        ),
        "too many files": ingest.upload(file, file, file, headers=KEY_A),
        "too large": ingest.upload(("big.txt", b"b" * 101, "text/plain"), headers=KEY_A),
        "wrong type": ingest.upload(("x.exe", b"MZ", "application/x-msdownload"), headers=KEY_A),
        "bad metadata": ingest.upload(file, headers=KEY_A, data={"metadata": "[1]"}),
        "no files": ingest.client.post(post, headers=KEY_A, data={"x": "y"}),
        "status": ingest.client.get(
            ingest.upload(file, headers=KEY_B).json()["documents"][0]["status_url"], headers=KEY_B
        ),
        "status, no key": ingest.client.get(get),
        "no such document": ingest.client.get(get, headers=KEY_A),
        "by message": ingest.client.get(
            post,
            params={"message_id": _upload_email(ingest, "m1@example.com")},
            headers=KEY_B,
        ),
        "by message, no key": ingest.client.get(post, params={"message_id": "m1@example.com"}),
        "by message, none given": ingest.client.get(post, headers=KEY_A),
        "by message, too long": ingest.client.get(
            post, params={"message_id": "m" * 999}, headers=KEY_A
        ),
    }
    sha = hashlib.sha256(b"a").hexdigest()
    held = domain.request_sha256([("a.txt", "text/plain", sha, 1)], {})
    asyncio.run(ingest.store.claim_idempotency_key(1, "held", request_sha256=held, hold_seconds=60))
    answers["key in progress"] = ingest.upload(file, headers={**KEY_A, "Idempotency-Key": "held"})
    answers["key reused"] = ingest.upload(
        ("b.txt", b"b", "text/plain"), headers={**KEY_A, "Idempotency-Key": "held"}
    )
    while (over := ingest.upload(file, headers=KEY_A)).status_code != 429:
        assert over.status_code == 202
    answers["over the rate"] = over

    async def database_down(*_args: object, **_kwargs: object) -> Any:
        raise OperationalError("SELECT", {}, ConnectionRefusedError("127.0.0.1:1"))

    monkeypatch.setattr(ingest.store, "status", database_down)
    monkeypatch.setattr(ingest.store, "record_documents", database_down)
    monkeypatch.setattr(ingest.store, "documents_of_message", database_down)
    answers["database down"] = ingest.upload(file, headers=KEY_B)
    answers["status, database down"] = ingest.client.get(get, headers=KEY_B)
    answers["by message, database down"] = ingest.client.get(
        post, params={"message_id": "m1@example.com"}, headers=KEY_B
    )

    async def a_bug(*_args: object, **_kwargs: object) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest.store, "status", a_bug)
    monkeypatch.setattr(ingest.store, "documents_of_message", a_bug)
    monkeypatch.setattr(ingest.app.state.intake, "accept_many", a_bug)
    crashing = TestClient(ingest.app, raise_server_exceptions=False)
    answers["a bug"] = crashing.post(post, files=[("files", file)], headers=KEY_B)
    answers["status, a bug"] = crashing.get(get, headers=KEY_B)
    answers["by message, a bug"] = crashing.get(
        post, params={"message_id": "m1@example.com"}, headers=KEY_B
    )

    assert {name: answer.status_code for name, answer in answers.items()} == {
        "upload": 202,
        "no key": 401,
        "not multipart": 400,
        "too many files": 413,
        "too large": 413,
        "wrong type": 415,
        "bad metadata": 422,
        "no files": 422,
        "status": 200,
        "status, no key": 401,
        "no such document": 404,
        "by message": 200,
        "by message, no key": 401,
        "by message, none given": 422,
        "by message, too long": 422,
        "key in progress": 409,
        "key reused": 422,
        "over the rate": 429,
        "database down": 503,
        "status, database down": 503,
        "a bug": 500,
        "status, a bug": 500,
        "by message, database down": 503,
        "by message, a bug": 500,
    }
    assert [d["filename"] for d in answers["by message"].json()["documents"]] == [None]
    _assert_in_openapi(ingest.app, answers)


def _upload_email(ingest: Ingest, message_id: str) -> str:
    """Upload a saved email with this Message-ID (by key B); return the Message-ID as sent."""
    raw = f"Message-ID: <{message_id}>\r\nSubject: hi\r\n\r\nhello\r\n".encode()
    assert ingest.upload(("m.eml", raw, "message/rfc822"), headers=KEY_B).status_code == 202
    return f"<{message_id}>"


def _assert_in_openapi(app: FastAPI, answers: Mapping[str, Any]) -> None:
    """Each answer's status code, content type, headers and body are as the app's OpenAPI
    document declares them for the route that gave it."""
    schema = schemathesis.openapi.from_dict(app.openapi())
    for name, answer in answers.items():
        path = answer.request.url.path
        if path == "/v1/documents":
            method = answer.request.method
            case = schema[path][method].Case(
                query=dict(answer.request.url.params) if method == "GET" else None
            )
        else:
            by_id = schema["/v1/documents/{document_id}"]["GET"]
            case = by_id.Case(path_parameters={"document_id": path.rsplit("/", 1)[1]})
        # The answer as received, with its request's line only (a streamed body is gone).
        request = httpx.Request(answer.request.method, str(answer.request.url))
        received = httpx.Response(
            answer.status_code,
            headers=list(answer.headers.multi_items()),
            content=answer.content,
            request=request,
        )
        received.elapsed = timedelta(0)
        try:
            case.validate_response(received, checks=CONFORMANCE)
        except Exception as failure:  # noqa: BLE001 - schemathesis raises a group of failures
            pytest.fail(f"{name} ({answer.status_code}) is not as the OpenAPI says: {failure}")


def test_the_gates_answers_are_in_the_openapi(tmp_path: Path) -> None:
    """408, and the 429 and 503 of uploads refused while a stalled one holds the slots."""
    ingest = Ingest(
        tmp_path,
        max_concurrent_uploads=1,
        max_concurrent_uploads_per_key=1,
        body_idle_timeout_seconds=1.0,
    )
    boundary = "stall"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nsome"
    ).encode()

    async def stalling() -> AsyncIterator[bytes]:
        yield head
        await asyncio.sleep(5)  # past the idle timeout: the gate answers 408 first
        yield b"\r\n--" + boundary.encode() + b"--\r\n"

    async def scenario() -> dict[str, httpx.Response]:
        transport = httpx.ASGITransport(app=ingest.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            stalled = asyncio.create_task(
                client.post(
                    "/v1/documents",
                    headers={**KEY_A, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                    content=stalling(),
                )
            )
            await asyncio.sleep(0.3)  # it holds key-a's slot and the service's one
            files = {"files": ("b.txt", b"b", "text/plain")}
            same_key = await client.post("/v1/documents", headers=KEY_A, files=files)
            other_key = await client.post("/v1/documents", headers=KEY_B, files=files)
            return {"stalled": await stalled, "key busy": same_key, "overloaded": other_key}

    answers = asyncio.run(scenario())
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "stalled": 408,
        "key busy": 429,
        "overloaded": 503,
    }
    _assert_in_openapi(ingest.app, answers)


def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path)
    file = ("a.txt", b"once", "text/plain")
    first = ingest.upload(file, headers={**KEY_A, "Idempotency-Key": "k1"})
    again = ingest.upload(file, headers={**KEY_A, "Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(ingest.broker.sent) == 1
    changed = ingest.upload(
        ("a.txt", b"twice", "text/plain"), headers={**KEY_A, "Idempotency-Key": "k1"}
    )
    assert changed.status_code == 422
    assert changed.json()["detail"] == "this Idempotency-Key was used for a different request"
    # Keys are per API key: another key's k1 is a request of its own.
    assert ingest.upload(file, headers={**KEY_B, "Idempotency-Key": "k1"}).status_code == 202


@pytest.mark.parametrize(
    ("files", "data", "status", "detail"),
    [
        ([("x.exe", b"MZ", "application/x-msdownload")], {}, 415, "is not accepted"),
        ([("a.txt", b"a", "text/plain")], {"metadata": "[1]"}, 422, "must be a JSON object"),
        ([("a.txt", b"a", "text/plain")] * 4, {}, 413, "at most 3 files per request"),
        (
            [("small.txt", b"s", "text/plain"), ("big.txt", b"b" * 101, "text/plain")],
            {},
            413,
            "big.txt is larger than the 100-byte limit",
        ),
    ],
)
def test_a_refused_request_stores_and_publishes_nothing(
    tmp_path: Path,
    files: list[tuple[str, bytes, str]],
    data: dict[str, str],
    status: int,
    detail: str,
) -> None:
    ingest = Ingest(tmp_path, max_files_per_request=3, max_document_bytes=100)
    refused = ingest.upload(*files, headers=KEY_A, data=data)
    assert refused.status_code == status
    assert detail in refused.json()["detail"]
    assert ingest.broker.sent == [] and ingest.store.documents == {}
    assert ingest.spooled() == []
    assert not any(path.is_file() for path in ingest.settings.blob_dir.rglob("*"))


def test_a_key_over_its_rate_gets_429_with_retry_after_and_others_carry_on(
    tmp_path: Path,
) -> None:
    ingest = Ingest(tmp_path, uploads_per_minute_per_key=1.0, upload_burst_per_key=2)
    file = ("a.txt", b"a", "text/plain")
    assert [ingest.upload(file, headers=KEY_A).status_code for _ in range(2)] == [202, 202]
    over = ingest.upload(file, headers=KEY_A)
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert ingest.upload(file, headers=KEY_B).status_code == 202


def test_a_key_sees_only_its_own_documents(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path)
    answer = ingest.upload(("a.txt", b"mine", "text/plain"), headers=KEY_A)
    document_id = answer.json()["documents"][0]["document_id"]
    mine = ingest.client.get(f"/v1/documents/{document_id}", headers=KEY_A)
    assert mine.status_code == 200
    assert mine.json()["source"] == {"kind": "upload", "name": "alpha"}
    assert ingest.client.get(f"/v1/documents/{document_id}", headers=KEY_B).status_code == 404
    assert ingest.client.get(f"/v1/documents/{document_id}").status_code == 401
    lookups = ingest.store.status_lookups
    assert ingest.client.get("/v1/documents/not-an-id", headers=KEY_A).status_code == 404
    assert ingest.store.status_lookups == lookups  # never a database question


def test_without_api_keys_uploads_come_from_the_configured_source(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path, require_api_key=False, source_name="scanner")
    answer = ingest.upload(("a.txt", b"open", "text/plain"))
    assert answer.status_code == 202
    assert ingest.broker.sent[0][1].document.source.name == "scanner"
    ignored = ingest.upload(("b.txt", b"open", "text/plain"), headers={"X-API-Key": "nonsense"})
    assert ignored.status_code == 202


def test_kafka_down_still_accepts_and_the_relay_publishes_the_event_once_it_is_back(
    tmp_path: Path,
) -> None:
    ingest = Ingest(tmp_path)
    ingest.broker.down = True
    accepted = ingest.upload(("a.txt", b"a", "text/plain"), headers=KEY_A)
    assert accepted.status_code == 202
    [document] = accepted.json()["documents"]
    assert ingest.broker.sent == []
    assert [e.event_id for _, e in ingest.outbox.pending.values()] == [
        ingest.store.documents[document["document_id"]].event_id
    ]
    # The client retries anyway: still one document, one event.
    assert ingest.upload(("a.txt", b"a", "text/plain"), headers=KEY_A).status_code == 202
    ingest.broker.down = False
    assert asyncio.run(ingest.outbox.relay()) == 1
    assert [e.document_id for _, e in ingest.broker.sent] == [document["document_id"]]


def test_postgres_down_is_503_with_retry_after_and_nothing_is_accepted(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path)

    async def refuse(
        events: Sequence[DocumentReceivedV1], *, topic: str, raws: Mapping[str, str] | None = None
    ) -> list[StoredDocument]:
        raise OperationalError("INSERT INTO document", {}, ConnectionRefusedError("127.0.0.1:1"))

    ingest.store.record_documents = refuse  # type: ignore[method-assign]
    refused = ingest.upload(("a.txt", b"a", "text/plain"), headers=KEY_A)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "nothing was accepted" in refused.json()["detail"]
    assert ingest.broker.sent == [] and ingest.outbox.pending == {}


def test_a_saved_email_becomes_its_body_and_attachments_in_file_order(tmp_path: Path) -> None:
    ingest = Ingest(tmp_path)
    email = (
        b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nthe body\r\n"
        b'--XX\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="att.txt"'
        b"\r\n\r\nattached\r\n--XX--\r\n"
    )
    answer = ingest.upload(
        ("first.txt", b"first", "text/plain"),
        ("saved.eml", email, "message/rfc822"),
        ("last.txt", b"last", "text/plain"),
        headers=KEY_A,
    )
    assert answer.status_code == 202
    names = [d["filename"] for d in answer.json()["documents"]]
    assert names[0] == "first.txt" and names[-1] == "last.txt"
    assert "att.txt" in names and len(names) == 4
    by_id = {event.document_id: event for _, event in ingest.broker.sent}
    attachment = next(e for e in by_id.values() if e.document.filename == "att.txt")
    assert attachment.document.parent_document_id in by_id


def test_a_saved_copy_of_an_email_is_the_documents_it_already_was(tmp_path: Path) -> None:
    """Issue 20, defect 8: a copy with a header added is the same documents, by its
    Message-ID and parts; a different mail reusing the Message-ID is not."""
    ingest = Ingest(tmp_path)
    email = (
        b"Message-ID: <po-7@example.com>\r\nFrom: a@example.com\r\nSubject: PO 7\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain\r\n\r\nthe order\r\n"
        b'--XX\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename="po.txt"'
        b"\r\n\r\n7 boxes\r\n--XX--\r\n"
    )

    def ids(raw: bytes, key: Mapping[str, str] = KEY_A) -> list[str]:
        answer = ingest.upload(("mail.eml", raw, "message/rfc822"), headers=dict(key))
        assert answer.status_code == 202
        return [d["document_id"] for d in answer.json()["documents"]]

    first = ids(email)
    assert len(first) == 2
    assert ids(b"X-Saved-By: Outlook\r\n" + email) == first
    assert len(ingest.broker.sent) == 2, "the copy published nothing"
    other = ids(email.replace(b"7 boxes", b"9 boxes"))
    assert not set(other) & set(first)
    # Another key's upload is its own documents: no key learns of another's mail.
    assert not set(ids(email, KEY_B)) & set(first)


def test_the_request_fingerprint_is_unchanged() -> None:
    # Stored with each Idempotency-Key's answer: a new hash would turn retries into 422s.
    files = [("a.txt", "text/plain", "ab" * 32, 5), (None, "application/pdf", "cd" * 32, 1234)]
    assert domain.request_sha256(files, {"case": "7", "a": "b"}) == (
        "dd83e16ada2135f547cbc3ccd38e94013baaca0159f0eb8ac3d44dcb3cb41c1c"
    )
    stored = [uploads.StoredFile(*file) for file in files]
    assert domain.request_sha256(stored, {"a": "b", "case": "7"}) == domain.request_sha256(
        files, {"case": "7", "a": "b"}
    )


def test_spooling_refuses_a_file_over_the_limit_and_leaves_nothing(tmp_path: Path) -> None:
    fits = UploadFile(io.BytesIO(b"x" * 10), filename="fits.txt")
    path, size, sha256 = uploads.spool(fits, 10, tmp_path / "spool")
    assert (path.read_bytes(), size) == (b"x" * 10, 10)
    assert sha256 == LocalBlobStore(tmp_path / "blobs").put_file(path), "the blob store's hash"
    too_big = UploadFile(io.BytesIO(b"x" * 11), filename="big.txt")
    with pytest.raises(HTTPException) as refused:
        uploads.spool(too_big, 10, tmp_path / "spool")
    assert refused.value.status_code == 413
    assert list((tmp_path / "spool").iterdir()) == [path]


def test_who_may_see_a_document() -> None:
    upload = {"kind": "upload", "name": "alpha"}
    assert domain.visible_to(upload, "alpha", keys_required=True)
    assert not domain.visible_to(upload, "beta", keys_required=True)
    # What the connectors took in is every key's to follow; an upload only its sender's.
    for kind in ("imap", "smtp", "folder"):
        assert domain.visible_to({"kind": kind, "name": "support"}, "beta", keys_required=True)
    assert domain.visible_to({"kind": "imap", "name": "support"}, "x", keys_required=False)
    assert domain.bare_message_id(" <a.b@example.com> ") == "a.b@example.com"
    assert domain.bare_message_id("a.b@example.com") == "a.b@example.com"
    assert domain.bare_message_id("<a\x00b@x>") == "a b@x", "as the parser keeps it"
    assert domain.is_document_id("doc_" + "0f" * 16)
    assert not domain.is_document_id("doc_" + "0F" * 16)
    assert not domain.is_document_id("doc_" + "0" * 32 + "\x00")


def _account(name: str) -> ImapAccount:
    return ImapAccount(name=name, host="imap.example.com", username="u", password="p")


def test_connectors_follow_the_settings_in_start_order(tmp_path: Path) -> None:
    intake, store = cast(Intake, None), MemoryStore(cast(MemoryOutbox, None))
    assert connectors_for(Settings(), intake, store) == []
    settings = Settings(
        smtp_enabled=True,
        imap_accounts=[_account("support"), _account("billing")],
        drop_dir=tmp_path / "drop",
    )
    found = connectors_for(settings, intake, store)
    assert [type(c) for c in found] == [SmtpReceiver, ImapConnector, ImapConnector, DropFolder]
    assert not (tmp_path / "drop").exists()  # nothing happens before start


def test_the_drop_folder_takes_a_file_written_in_place_only_once_it_settles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    settings = Settings(drop_dir=tmp_path / "drop", drop_settle_seconds=5.0)
    folder = DropFolder(cast(Intake, None), settings)
    folder.inbox.mkdir(parents=True)
    growing = folder.inbox / "report.txt"
    with growing.open("wb") as writer:
        writer.write(b"first half ")
        writer.flush()
        assert folder._claimable() == []  # first seen now
        clock[0] += 4.9
        assert folder._claimable() == []  # a pause shorter than the settle interval
        writer.write(b"second half")
        writer.flush()
        clock[0] += 4.9
        assert folder._claimable() == [], "a change starts the settle interval again"
    clock[0] += 5.0
    assert folder._claimable() == [growing]
    staged = tmp_path / "staged.txt"
    staged.write_bytes(b"whole")
    time.sleep(0.02)  # the real clock: the rename's ctime after the write's mtime
    staged.rename(folder.inbox / "staged.txt")
    assert folder._claimable() == [growing, folder.inbox / "staged.txt"], "renamed in: at once"


class Recorded:
    """A connector that notes its start and stop; ``broken`` fails to start."""

    def __init__(self, name: str, log: list[str], *, broken: bool = False) -> None:
        self.name, self.log, self.broken = name, log, broken

    async def start(self) -> None:
        self.log.append(f"start {self.name}")
        if self.broken:
            raise OSError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_connectors_stop_last_first_and_a_failed_start_stops_those_started() -> None:
    log: list[str] = []
    connectors: list[Connector] = [Recorded("smtp", log), Recorded("imap", log)]
    async with running(connectors):
        log.append("serving")
    assert log == ["start smtp", "start imap", "serving", "stop imap", "stop smtp"]

    log.clear()
    connectors = [Recorded("smtp", log), Recorded("imap", log, broken=True), Recorded("drop", log)]
    with pytest.raises(OSError, match="imap cannot start"):
        async with running(connectors):
            log.append("serving")
    assert log == ["start smtp", "start imap", "stop smtp"]


def test_a_request_under_a_held_key_waits_for_the_answer_or_is_refused() -> None:
    store = MemoryStore(cast(MemoryOutbox, None))
    answer: dict[str, Any] = {"documents": []}

    async def scenario() -> tuple[object, int, int, float]:
        owner = await uploads.hold_key(store, 1, "k", "sha-a", hold_seconds=60, wait_seconds=0)
        assert isinstance(owner, uuid.UUID)

        async def answer_soon() -> None:
            await asyncio.sleep(0.1)
            assert await store.answer_idempotency_key(1, "k", owner=owner, response=answer)

        # Another request is refused at once, answered or not; the same one waits.
        with pytest.raises(HTTPException) as other:
            await uploads.hold_key(store, 1, "k", "sha-b", hold_seconds=60, wait_seconds=5)
        task = asyncio.create_task(answer_soon())
        replayed = await uploads.hold_key(store, 1, "k", "sha-a", hold_seconds=60, wait_seconds=5)
        await task
        second = await uploads.hold_key(store, 1, "busy", "sha-c", hold_seconds=60, wait_seconds=0)
        assert isinstance(second, uuid.UUID)
        started = time.monotonic()
        with pytest.raises(HTTPException) as busy:
            await uploads.hold_key(store, 1, "busy", "sha-c", hold_seconds=60, wait_seconds=0.2)
        return replayed, other.value.status_code, busy.value.status_code, time.monotonic() - started

    replayed, other, busy, waited = asyncio.run(scenario())
    assert replayed == UploadAccepted.model_validate(answer)
    assert (other, busy) == (422, 409)
    assert 0.2 <= waited < 1.0


def test_a_failed_or_crashed_request_gives_its_key_up() -> None:
    store = MemoryStore(cast(MemoryOutbox, None))

    async def scenario() -> tuple[object, object]:
        failed = await uploads.hold_key(store, 1, "k", "sha-a", hold_seconds=60, wait_seconds=0)
        assert isinstance(failed, uuid.UUID)
        await store.release_idempotency_key(1, "k", owner=failed)
        retry = await uploads.hold_key(store, 1, "k", "sha-b", hold_seconds=0.05, wait_seconds=0)
        await asyncio.sleep(0.1)  # the retry "crashed": its reservation runs out
        after_crash = await uploads.hold_key(
            store, 1, "k", "sha-a", hold_seconds=60, wait_seconds=0
        )
        assert isinstance(retry, uuid.UUID)
        late = await store.answer_idempotency_key(1, "k", owner=retry, response={})
        return after_crash, late

    after_crash, late = asyncio.run(scenario())
    assert isinstance(after_crash, uuid.UUID), "a released or expired key is taken again"
    assert late is False, "the request that lost its reservation does not overwrite the answer"


class _RenewalFails(MemoryStore):
    """A store whose PostgreSQL goes away while a request renews its key's hold."""

    async def renew_idempotency_key(
        self, api_key_id: int, key: str, *, owner: uuid.UUID, hold_seconds: float
    ) -> bool:
        raise OperationalError("UPDATE idempotency_record", {}, Exception("connection refused"))


def test_a_renewal_that_cannot_reach_postgresql_does_not_fail_the_request() -> None:
    store = _RenewalFails(cast(MemoryOutbox, None))

    async def run() -> str:
        claim = await store.claim_idempotency_key(1, "k", request_sha256="a" * 64, hold_seconds=1)
        assert claim.owner is not None
        async with uploads.key_kept(store, 1, "k", claim.owner, hold_seconds=0.03):
            await asyncio.sleep(0.1)  # several renewals due, the first one fails
            return "answered"

    assert asyncio.run(run()) == "answered"
