"""Fault-test harness: service processes, a stream of documents, faults, and the audit.

A fault test starts the services it needs as ``triage-<service>`` processes on the real stack,
streams a few thousand documents into the pipeline, injects one kind of fault at seeded
random moments, repairs it, waits until the pipeline has drained, and then audits what
PostgreSQL and the Kafka topics say happened to every accepted document.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import random
import signal
import socket
import subprocess
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from scripts.pdfgen import make_pdf
from tests.helpers import REPO_ROOT
from triage_cli.upload_cli import send_file
from triage_contracts import (
    BlobRef,
    DocumentReceivedV1,
    DocumentRef,
    Event,
    Producer,
    Source,
    SourceKind,
    derive_document_id,
    topics,
    utcnow,
)
from triage_contracts.headers import headers_for
from triage_runtime.blobstore import LocalBlobStore

log = logging.getLogger("tests.faults")

ARTIFACTS = REPO_ROOT / "test-artifacts" / "reliability"
STACK_SCRIPT = REPO_ROOT / "deploy" / "local" / "stack.sh"
SEED_ENV = "TRIAGE_FAULT_SEED"
DOCUMENTS_ENV = "TRIAGE_FAULT_DOCUMENTS"
DEFAULT_DOCUMENTS = 2000
PARTITIONS = 3
SOURCE_NAME = "fault-stream"
PRODUCER = Producer(service="fault-tests", version="0")
TRAIN_DIR = REPO_ROOT / "data" / "sample" / "train"
FAULT_STEPS = frozenset(
    {
        "kill -9",
        "stop kafka",
        "crash kafka",
        "stop postgres",
        "crash postgres",
        "scale classifier to 2",
        "rescore",
    }
)
"""The fault steps whose time is the fault's moment (the rest are repairs)."""


def document_count() -> int:
    """How many documents each fault test streams (``TRIAGE_FAULT_DOCUMENTS``, default 2000)."""
    return int(os.environ.get(DOCUMENTS_ENV, DEFAULT_DOCUMENTS))


def seeded_rng(name: str) -> tuple[int, random.Random]:
    """The seed for test ``name`` (``TRIAGE_FAULT_SEED`` overrides it) and its generator."""
    override = os.environ.get(SEED_ENV)
    seed = int(override) if override else zlib.crc32(name.encode())
    return seed, random.Random(seed)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Doc:
    """One document of the stream: its bytes and how it is described."""

    index: int
    filename: str
    media_type: str
    data: bytes

    @property
    def sha256(self) -> str:
        """The content hash the blob store files it under."""
        return hashlib.sha256(self.data).hexdigest()


def make_documents(count: int, tag: str) -> list[Doc]:
    """``count`` distinct documents: the sample training texts, each with a unique reference.

    Every 5th is a PDF (text extraction in the classifier's process pool), every 50th a
    broken PDF and every 10th mixes two letters of different queues, so the review path
    (extraction failures, low confidence) carries part of the stream too.
    """
    texts = sorted(TRAIN_DIR.glob("*/*.txt"))  # grouped by label, so i and i + n/2 differ
    docs = []
    for i in range(count):
        if i % 50 == 49:
            data = f"%PDF-1.7\n% {tag} {i:05d}\n%%EOF\n".encode()
            docs.append(Doc(i, f"scan-{i:05d}.pdf", "application/pdf", data))
            continue
        body = texts[i % len(texts)].read_text()
        if i % 10 == 4:
            other = texts[(i + len(texts) // 2) % len(texts)].read_text()
            body = body[: len(body) // 2] + "\n" + other[len(other) // 2 :]
        body = f"{body}\nReference {tag}-{i:05d}\n"
        if i % 5 == 2:
            docs.append(Doc(i, f"letter-{i:05d}.pdf", "application/pdf", make_pdf(body)))
        else:
            docs.append(Doc(i, f"letter-{i:05d}.txt", "text/plain", body.encode()))
    return docs


# --------------------------------------------------------------------------------------
# Topics and services
# --------------------------------------------------------------------------------------


async def create_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Create the test's topics up front, with a few partitions, so consumers find them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)]
                )
    finally:
        await admin.close()


WORK_LOGGED = {
    "ingest": (b'"document accepted"',),
    "classifier": (b'"document classified"',),
    "router": (b'"document routed"', b'"document sent to review"'),
}
"""The log messages that show a service did a piece of work."""


@dataclass
class Service:
    """One service process (``triage-KIND``): which service, its port, log file and process."""

    name: str
    kind: str
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log_offset: int = 0
    """Where the log of the current start begins."""

    def work_done(self) -> int:
        """Pieces of work this start of the service has logged so far."""
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            text = log.read()
        return sum(text.count(marker) for marker in WORK_LOGGED.get(self.kind, ()))

    @property
    def url(self) -> str:
        """Where its HTTP API listens."""
        return f"http://127.0.0.1:{self.port}"


class Services:
    """The service processes of one fault test: start, wait until ready, kill -9, restart."""

    def __init__(self, *, triage: str, env: dict[str, str], work: Path) -> None:
        self._triage = triage
        self.env = env
        self.work = work
        self.running: dict[str, Service] = {}

    def start(self, kind: str, *, name: str | None = None) -> Service:
        """Start ``triage-KIND`` (as ``name``) in its own process group."""
        name = name or kind
        service = self.running.get(name)
        if service is None:
            service = Service(name=name, kind=kind, port=free_port(), log=self.work / f"{name}.log")
            self.running[name] = service
        env = {**self.env, f"TRIAGE_{kind.upper().replace('-', '_')}_PORT": str(service.port)}
        with service.log.open("ab") as out:
            out.write(f"\n=== start {service.starts + 1} of {name} ===\n".encode())
            out.flush()
            service.log_offset = out.tell()
            service.process = subprocess.Popen(
                [f"{self._triage}-{kind}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        service.starts += 1
        return service

    async def wait_ready(self, name: str, timeout: float = 120.0) -> None:
        """Wait until the service answers ``/readyz`` with 200."""
        service = self.running[name]
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                process = service.process
                assert process is not None
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.log_tail(name)}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(service.url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.25)
        raise AssertionError(f"{name} not ready in {timeout:.0f} s:\n{self.log_tail(name)}")

    def kill(self, name: str) -> None:
        """``kill -9`` the service: every process of its group, at once."""
        process = self.running[name].process
        assert process is not None and process.poll() is None, f"{name} is not running"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM every service, wait for a clean exit, SIGKILL what is left of its group."""
        for service in self.running.values():
            if service.process is not None and service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.running.values():
            process = service.process
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def cli(self, *args: str) -> str:
        """Run a ``triage`` command with the services' environment; return what it printed."""
        done = subprocess.run(
            [self._triage, *args], env=self.env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """The end of a service's log."""
        return self.running[name].log.read_text(errors="replace")[-chars:]


# --------------------------------------------------------------------------------------
# The stream of documents
# --------------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the test sent and which documents the pipeline accepted (id → event id)."""

    total: int
    accepted: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    retries: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    async def reached(self, fraction: float) -> None:
        """Wait until ``fraction`` of the stream is accepted."""
        # A counter the stream bumps from many places: polling it is the simple, honest wait.
        while len(self.accepted) < fraction * self.total and self.finished is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def elapsed(self) -> float:
        """Seconds since the stream started."""
        return time.monotonic() - self.started


def received_event(doc: Doc) -> DocumentReceivedV1:
    """The DocumentReceived event a connector would publish for ``doc``."""
    return DocumentReceivedV1(
        producer=PRODUCER,
        document_id=derive_document_id(SourceKind.UPLOAD.value, SOURCE_NAME, doc.sha256),
        document=DocumentRef(
            source=Source(kind=SourceKind.UPLOAD, name=SOURCE_NAME),
            blob=BlobRef(sha256=doc.sha256, size_bytes=len(doc.data), media_type=doc.media_type),
            filename=doc.filename,
            received_at=utcnow(),
        ),
    )


async def publish_stream(
    docs: Sequence[Doc],
    ledger: Ledger,
    *,
    bootstrap: str,
    topic: str,
    blob_dir: Path,
    per_second: float,
    deadline: float,
) -> None:
    """Publish DocumentReceived events at ``per_second``, blobs first, retrying failed sends.

    A document counts as accepted once the broker acknowledged its event (``acks=all``); a
    retried send carries the same event, as ingest's outbox would publish it again.
    """
    blobs = LocalBlobStore(blob_dir)
    pending = [(doc, received_event(doc)) for doc in docs]
    for doc, _ in pending:
        blobs.put(doc.data)
    producer = await _producer(bootstrap, deadline)
    ledger.started = time.monotonic()
    chunk = 20
    try:
        while pending and time.monotonic() < deadline:
            batch, pending = pending[:chunk], pending[chunk:]
            tick = time.monotonic()
            results = await asyncio.gather(
                *(_send(producer, topic, event) for _, event in batch), return_exceptions=True
            )
            ledger.attempts += len(batch)
            failed = []
            for (doc, event), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    ledger.refused[type(result).__name__] += 1
                    failed.append((doc, event))
                else:
                    ledger.accepted[event.document_id] = str(event.event_id)
            if failed:
                # aiokafka's idempotent producer does not recover from some errors after a
                # broker restart (OutOfOrderSequenceNumber, aio-libs/aiokafka#1017): start
                # over with a new producer (a new producer id) before retrying.
                ledger.retries += len(failed)
                pending = failed + pending
                await _stop(producer)
                await asyncio.sleep(0.5)
                producer = await _producer(bootstrap, deadline)
            await asyncio.sleep(max(0.0, chunk / per_second - (time.monotonic() - tick)))
    finally:
        ledger.finished = time.monotonic()
        await _stop(producer)


async def _producer(bootstrap: str, deadline: float) -> Any:
    """A started idempotent producer; while the broker is away, keep trying until deadline."""
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=10_000,
        )
        try:
            await producer.start()
        except KafkaError:
            await _stop(producer)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
        else:
            return producer


async def _stop(producer: Any) -> None:
    with contextlib.suppress(KafkaError, asyncio.TimeoutError):
        await asyncio.wait_for(producer.stop(), 30)


async def _send(producer: Any, topic: str, event: Event) -> None:
    document_id: str = getattr(event, "document_id", "")
    await asyncio.wait_for(
        producer.send_and_wait(
            topic,
            event.model_dump_json().encode(),
            key=document_id.encode(),
            headers=[(k, v.encode()) for k, v in headers_for(event).items()],
        ),
        timeout=30,
    )


async def upload_stream(
    docs: Sequence[Doc],
    ledger: Ledger,
    *,
    url: str,
    api_key: str,
    workers: int,
    deadline: float,
) -> None:
    """Upload every document through ingest, retrying on 503, 429 and connection errors.

    A document counts as accepted only when ingest answered 202; the document id is the one
    it answered with.
    """
    queue: asyncio.Queue[Doc] = asyncio.Queue()
    for doc in docs:
        queue.put_nowait(doc)
    ledger.started = time.monotonic()

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty() and time.monotonic() < deadline:
            doc = queue.get_nowait()
            while time.monotonic() < deadline:
                ledger.attempts += 1
                try:
                    response = await client.post(
                        url + "/v1/documents",
                        files={"files": (doc.filename, doc.data, doc.media_type)},
                        headers={"X-API-Key": api_key},
                    )
                except httpx.TransportError as exc:
                    ledger.refused[type(exc).__name__] += 1
                    ledger.retries += 1
                    await asyncio.sleep(0.2)
                    continue
                if response.status_code == 202:
                    [accepted] = response.json()["documents"]
                    ledger.accepted[accepted["document_id"]] = doc.sha256
                    break
                ledger.refused[str(response.status_code)] += 1
                if response.status_code not in (429, 503):
                    break  # not something a retry fixes; the audit shows it as not accepted
                ledger.retries += 1
                await asyncio.sleep(min(1.0, float(response.headers.get("retry-after", "1"))))

    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=2)) as client:
            await asyncio.gather(*(worker(client) for _ in range(workers)))
    finally:
        ledger.finished = time.monotonic()


@dataclass
class FileUpload:
    """One file as a retrying client sent it: when, how many tries, what it was answered."""

    doc: Doc
    started: float
    """Wall-clock time (``time.time()``) of its first try."""
    finished: float
    attempts: int
    document_ids: list[str]
    error: str | None


class InFlight:
    """Upload requests in flight right now, counted across the client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """Requests sent and not yet answered (or failed)."""
        with self._lock:
            return self._count

    def client(self, client: httpx.Client) -> Any:
        """``client`` whose ``post`` is counted while it is in flight."""
        counter = self

        class Counted:
            def post(self, *args: Any, **kwargs: Any) -> httpx.Response:
                with counter._lock:
                    counter._count += 1
                try:
                    return client.post(*args, **kwargs)
                finally:
                    with counter._lock:
                        counter._count -= 1

        return Counted()

    async def busy(self, timeout: float = 60.0) -> int:
        """Wait until at least one request is in flight; return how many are."""
        deadline = time.monotonic() + timeout
        while (count := self.count) == 0:  # client threads bump it: polling is the honest wait
            assert time.monotonic() < deadline, f"no upload in flight for {timeout:.0f} s"
            await asyncio.sleep(0.01)
        return count


def _as_files(docs: Sequence[Doc], directory: Path) -> list[tuple[Doc, Path]]:
    """Each document written to a file of its name in ``directory``, as a user has them."""
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for doc in docs:
        path = directory / doc.filename
        path.write_bytes(doc.data)
        files.append((doc, path))
    return files


async def retrying_upload_stream(
    docs: Sequence[Doc],
    ledger: Ledger,
    *,
    url: str,
    api_key: str,
    workers: int,
    attempts: int,
    spool: Path,
    uploads: list[FileUpload],
    in_flight: InFlight,
) -> None:
    """Upload every document the way ``triage upload`` does, ``workers`` files at a time.

    Each file goes through the CLI's own ``send_file``: one Idempotency-Key per file, kept
    across that file's tries, 429, 503 and failed connections retried after Retry-After or
    a doubling backoff, up to ``attempts`` tries. A document counts as accepted only when
    ingest answered 202; ``uploads`` gets one entry per file.
    """
    work: queue.SimpleQueue[tuple[Doc, Path]] = queue.SimpleQueue()
    for doc, path in await asyncio.to_thread(_as_files, docs, spool):
        work.put((doc, path))
    lock = threading.Lock()
    ledger.started = time.monotonic()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30.0, headers={"X-API-Key": api_key}) as client:
            counted = in_flight.client(client)
            while True:
                try:
                    doc, path = work.get_nowait()
                except queue.Empty:
                    return
                started = time.time()
                outcome = send_file(
                    counted, path, doc.media_type, attempts=attempts, backoff=UPLOAD_BACKOFF
                )
                ids = [d["document_id"] for d in outcome.documents]
                with lock:
                    uploads.append(
                        FileUpload(doc, started, time.time(), outcome.attempts, ids, outcome.error)
                    )
                    ledger.attempts += outcome.attempts
                    ledger.retries += outcome.attempts - 1
                    if outcome.error is not None:
                        ledger.refused[outcome.error.split(" ", 1)[0]] += 1
                    for doc_id in ids:
                        ledger.accepted[doc_id] = doc.sha256

    loop = asyncio.get_running_loop()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="uploader") as pool:
            await asyncio.gather(*(loop.run_in_executor(pool, worker) for _ in range(workers)))
    finally:
        ledger.finished = time.monotonic()


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


@dataclass
class FaultLog:
    """When each fault step happened, in seconds since the stream started."""

    seed: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    repaired_at: float | None = None

    def note(self, ledger: Ledger, what: str, **details: Any) -> None:
        """Record (and log) a fault step."""
        step = {
            "at_seconds": round(ledger.elapsed(), 3),
            "accepted_so_far": len(ledger.accepted),
            "what": what,
            **details,
        }
        self.steps.append(step)
        log.warning("fault step: %s", json.dumps(step))
        print(f"  fault: {json.dumps(step)}")


@dataclass(frozen=True)
class StackControl:
    """Stops and starts one server of the stack the tests were given (``stack.sh``)."""

    env: dict[str, str]

    async def stop(self, server: str) -> None:
        """``stack.sh stop-server SERVER``."""
        await self._run("stop-server", server)

    async def crash(self, server: str) -> None:
        """``stack.sh crash-server SERVER``: kafka gets kill -9, postgres ``-m immediate``."""
        await self._run("crash-server", server)

    async def start(self, server: str) -> None:
        """``stack.sh start-server SERVER`` (waits until it answers)."""
        await self._run("start-server", server)

    async def _run(self, command: str, server: str) -> None:
        done = await asyncio.to_thread(
            subprocess.run,
            [str(STACK_SCRIPT), command, server],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"stack.sh {command} {server}:\n{done.stdout}{done.stderr}"


# --------------------------------------------------------------------------------------
# Drain and audit
# --------------------------------------------------------------------------------------


def _outcome_counts(engine: Engine, ids: list[str]) -> tuple[int, int]:
    """(documents with a published routing decision, documents with a review item)."""
    with engine.connect() as conn:
        routed = conn.execute(
            text(
                "SELECT count(*) FROM routing_decision r JOIN outbox o USING (event_id)"
                " WHERE o.published_at IS NOT NULL AND r.document_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar_one()
        reviewed = conn.execute(
            text(
                "SELECT count(DISTINCT document_id) FROM review_item WHERE document_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar_one()
    return int(routed), int(reviewed)


async def topic_partitions(admin: Any, names: Sequence[str]) -> list[TopicPartition]:
    """Every partition of the topics ``names`` (asked of the broker, not a cached view)."""
    described = await admin.describe_topics(list(names))
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        if topic["error_code"] == 0
        for partition in topic["partitions"]
    ]


async def group_lag(bootstrap: str, group: str, topic: str) -> int:
    """Records of ``topic`` that consumer group ``group`` has not committed yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        partitions = await topic_partitions(admin, [topic])
        assert partitions, f"topic {topic} has no partitions"
        committed = await admin.list_consumer_group_offsets(group)
        ends = await consumer.end_offsets(partitions)
        lag = 0
        for tp, end in ends.items():
            done = committed.get(tp)
            lag += end - (done.offset if done is not None and done.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def wait_drained(
    *,
    database_url: str,
    bootstrap: str,
    ledger: Ledger,
    groups: Sequence[tuple[str, str]],
    timeout: float,
) -> float | None:
    """Wait until every accepted document has its outcome and no consumer group lags.

    Returns the seconds it took, or None when ``timeout`` passed first (the audit then shows
    what is missing).
    """
    started = time.monotonic()
    ids = list(ledger.accepted)
    engine = create_engine(database_url, pool_pre_ping=True)
    try:
        while time.monotonic() - started < timeout:
            try:
                routed, reviewed = await asyncio.to_thread(_outcome_counts, engine, ids)
            except SQLAlchemyError:
                routed = reviewed = 0
            if routed + reviewed >= len(ids):
                try:
                    lags = [await group_lag(bootstrap, group, topic) for group, topic in groups]
                except KafkaError:
                    lags = [-1]
                if not any(lags):
                    return time.monotonic() - started
            await asyncio.sleep(0.5)
        return None
    finally:
        engine.dispose()


async def read_topics(bootstrap: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """Every record of ``names`` from the beginning up to the current end, decoded."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = await topic_partitions(admin, names)
    finally:
        await admin.close()
    assert partitions, f"none of {names} exists"
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[dict[str, Any]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            positions = {tp: await consumer.position(tp) for tp in ends}
            if all(positions[tp] >= end for tp, end in ends.items()):
                return records
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for batch in batches.values():
                records.extend(
                    {
                        "topic": r.topic,
                        "key": r.key.decode() if r.key else None,
                        "value": json.loads(r.value) if r.value else None,
                    }
                    for r in batch
                )
        raise AssertionError(f"could not read {names} to their end in 120 s")
    finally:
        await consumer.stop()


@dataclass
class Report:
    """What one fault test saw; written to ``test-artifacts/reliability/faults-<name>.json``."""

    name: str
    fault: str
    seed: int
    documents_sent: int
    accepted: int
    routed: int
    in_review: int
    lost: int
    duplicated: int
    redelivered_same_event_id: int
    dead_lettered: int
    fault_at_seconds: list[float]
    seconds_to_drain: float | None
    seconds_total: float
    send_attempts: int
    send_retries: int
    send_refusals: dict[str, int]
    rescored: int
    documents_republished: int
    violations: dict[str, list[str]]
    fault_steps: list[dict[str, Any]]
    notes: dict[str, Any] = field(default_factory=dict)
    """What a test measured beyond the audit (written with the report)."""

    def write(self) -> Path:
        """Write the report as JSON and return its path."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"faults-{self.name}.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    def summary(self) -> str:
        """One line for the terminal."""
        drain = f"{self.seconds_to_drain:.1f} s" if self.seconds_to_drain is not None else "never"
        return (
            f"{self.name:<22} sent {self.documents_sent} accepted {self.accepted}"
            f" routed {self.routed} review {self.in_review} lost {self.lost}"
            f" duplicated {self.duplicated} redelivered {self.redelivered_same_event_id}"
            f" dead-lettered {self.dead_lettered} rescored {self.rescored}"
            f" faults at {', '.join(f'{t:.1f}' for t in self.fault_at_seconds)} s"
            f" drained in {drain}"
        )


@dataclass(frozen=True)
class Stored:
    """What PostgreSQL holds about the accepted documents."""

    routes: dict[str, tuple[str, str, bool]]
    """document id → (queue, routed event id, published)"""
    reviews: Counter[str]
    """document id → review items"""
    documents: dict[str, tuple[str, bool]]
    """document id → (status, event published), for documents that came in through ingest"""


def _stored(database_url: str, ids: list[str]) -> Stored:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:

            def rows(sql: str) -> Any:
                return conn.execute(text(sql), {"ids": ids})

            routes = {
                r.document_id: (r.queue, str(r.event_id), r.published)
                for r in rows(
                    "SELECT r.document_id, r.queue, r.event_id,"
                    " o.published_at IS NOT NULL AS published"
                    " FROM routing_decision r LEFT JOIN outbox o USING (event_id)"
                    " WHERE r.document_id = ANY(:ids)"
                )
            }
            reviews: Counter[str] = Counter(
                {
                    r.document_id: int(r.n)
                    for r in rows(
                        "SELECT document_id, count(*) AS n FROM review_item"
                        " WHERE document_id = ANY(:ids) GROUP BY document_id"
                    )
                }
            )
            documents = {
                r.document_id: (r.status, r.published)
                for r in rows(
                    "SELECT s.document_id, s.status, o.published_at IS NOT NULL AS published"
                    " FROM document_status s JOIN document d USING (document_id)"
                    " LEFT JOIN outbox o USING (event_id) WHERE s.document_id = ANY(:ids)"
                )
            }
        return Stored(routes, reviews, documents)
    finally:
        engine.dispose()


LOST = (
    "no outcome",
    "routing decision never published",
    "routed in PostgreSQL, missing on its topic",
)
DUPLICATED = (
    "routed and in review",
    "review item duplicated",
    "on two routed topics",
    "routed twice (different event ids)",
    "routed event without a routing decision",
    "routed event differs from the routing decision",
)
"""Violations that mean a document had more than one outcome."""


@dataclass(frozen=True)
class Verdict:
    """Which accepted documents break an invariant, and how; plus harmless redeliveries."""

    violations: dict[str, list[str]]
    redelivered: int

    @property
    def lost(self) -> set[str]:
        """Documents with no complete outcome."""
        return {d for kind in LOST for d in self.violations.get(kind, ())}

    @property
    def duplicated(self) -> set[str]:
        """Documents with more than one outcome, or a second routing."""
        return {d for kind in DUPLICATED for d in self.violations.get(kind, ())}


def judge(
    ids: Iterable[str],
    *,
    routes: Mapping[str, tuple[str, str, bool]],
    reviews: Mapping[str, int],
    routed_events: Mapping[str, Sequence[tuple[str, str]]],
    dead: Set[str],
    documents: Mapping[str, tuple[str, bool]] | None = None,
) -> Verdict:
    """Hold each document to "routed or in review, exactly once, and nothing missing".

    ``routes`` maps a document to its routing decision (queue, event id, published);
    ``reviews`` counts its review items; ``routed_events`` lists the (queue, event id) of
    every DocumentRouted found for it on the routed topics; ``dead`` are dead-lettered ids;
    ``documents`` holds ingest's row (status, event published) where there is one, which the
    status API shows. The same event seen twice is a redelivery that consumers deduplicate,
    not a violation.
    """
    violations: dict[str, list[str]] = defaultdict(list)
    redelivered = 0
    for doc_id in ids:
        route = routes.get(doc_id)
        review_count = reviews.get(doc_id, 0)
        events = list(routed_events.get(doc_id, ()))
        redelivered += len(events) - len(set(events))
        row = (documents or {}).get(doc_id)
        if row is not None:
            status, received_published = row
            if not received_published:
                violations["accepted, but ingest's row says unpublished"].append(doc_id)
            expected = "routed" if route is not None else "in_review" if review_count else None
            if expected is not None and status != expected:
                violations["status API disagrees with the outcome"].append(doc_id)
        if route is not None and review_count:
            violations["routed and in review"].append(doc_id)
        if review_count > 1:
            violations["review item duplicated"].append(doc_id)
        if len({queue for queue, _ in events}) > 1:
            violations["on two routed topics"].append(doc_id)
        if len({event_id for _, event_id in events}) > 1:
            violations["routed twice (different event ids)"].append(doc_id)
        if route is None and not review_count:
            violations["dead-lettered" if doc_id in dead else "no outcome"].append(doc_id)
        if route is None:
            if events:
                violations["routed event without a routing decision"].append(doc_id)
            continue
        queue, event_id, published = route
        if not published:
            violations["routing decision never published"].append(doc_id)
        if not events:
            violations["routed in PostgreSQL, missing on its topic"].append(doc_id)
        elif any(event != (queue, event_id) for event in events):
            violations["routed event differs from the routing decision"].append(doc_id)
    return Verdict(dict(violations), redelivered)


async def audit(
    *,
    name: str,
    fault: str,
    faults: FaultLog,
    ledger: Ledger,
    database_url: str,
    bootstrap: str,
    prefix: str,
    queues: Sequence[str],
    seconds_to_drain: float | None,
) -> Report:
    """Check every accepted document's outcome in PostgreSQL and on the routed topics."""
    ids = sorted(ledger.accepted)
    stored = await asyncio.to_thread(_stored, database_url, ids)
    routes, reviews = stored.routes, stored.reviews
    routed_topics = [prefix + topics.routed_topic(q) for q in queues]
    routed_records = await read_topics(bootstrap, routed_topics)
    dead = await read_topics(bootstrap, [prefix + topics.DEADLETTER])
    classified = await read_topics(bootstrap, [prefix + topics.CLASSIFIED])
    received = await read_topics(bootstrap, [prefix + topics.DOCUMENTS])

    accepted = set(ids)
    on_topics: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for record in routed_records:
        value = record["value"] or {}
        if value.get("schema_name") == "DocumentRouted" and record["key"] in accepted:
            on_topics[record["key"]].append((value["queue"], value["event_id"]))
    dead_ids = {(r["value"] or {}).get("document_id") or r["key"] for r in dead} & accepted
    verdict = judge(
        ids,
        routes=routes,
        reviews=reviews,
        routed_events=on_topics,
        dead=dead_ids,
        documents=stored.documents,
    )
    classified_ids = [r["key"] for r in classified if r["key"] in accepted]
    received_ids = [r["key"] for r in received if r["key"] in accepted]
    return Report(
        name=name,
        fault=fault,
        seed=faults.seed,
        documents_sent=ledger.total,
        accepted=len(ids),
        routed=sum(1 for d in ids if d in routes and routes[d][2]),
        in_review=sum(1 for d in ids if reviews.get(d)),
        lost=len(verdict.lost),
        duplicated=len(verdict.duplicated),
        redelivered_same_event_id=verdict.redelivered,
        dead_lettered=len(dead_ids),
        fault_at_seconds=[s["at_seconds"] for s in faults.steps if s["what"] in FAULT_STEPS],
        seconds_to_drain=round(seconds_to_drain, 1) if seconds_to_drain is not None else None,
        seconds_total=round(time.monotonic() - ledger.started, 1),
        send_attempts=ledger.attempts,
        send_retries=ledger.retries,
        send_refusals=dict(ledger.refused),
        rescored=len(classified_ids) - len(set(classified_ids)),
        documents_republished=len(received_ids) - len(set(received_ids)),
        violations={k: v[:20] for k, v in verdict.violations.items()},
        fault_steps=faults.steps,
    )


async def run_concurrently(*steps: Awaitable[None]) -> None:
    """Run the stream and the fault schedule together; the first failure cancels the rest."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


SUMMARIES: list[str] = []
"""One line per finished fault test, printed at the end of the session."""

DIRECT_PER_SECOND = 60.0
"""Pace of the direct stream: about what the router keeps up with on two busy cores, so the
stream lasts half a minute and every fault lands while documents are still arriving."""

UPLOAD_ATTEMPTS = 8
UPLOAD_BACKOFF = 0.5
"""The retrying client's tries per file and first backoff (``triage upload --attempts``
defaults to 5 tries from 1 s: 15 s of waiting; an ingest restart on two busy cores can take
longer, so the stream's files get 8 tries from 0.5 s, a minute of waiting)."""

STREAM_TIMEOUT = 240.0
DRAIN_TIMEOUT = 180.0


@dataclass
class FaultRun:
    """One fault test's world: its topics, services, documents, stream ledger and fault log."""

    name: str
    bootstrap: str
    database_url: str
    prefix: str
    blob_dir: Path
    queues: tuple[str, ...]
    services: Services
    control: StackControl
    docs: list[Doc]
    rng: random.Random
    ledger: Ledger
    faults: FaultLog

    def topic(self, name: str) -> str:
        """``name`` with this run's prefix."""
        return self.prefix + name

    async def start(self, *kinds: str) -> None:
        """Start services and wait until each is ready."""
        for kind in kinds:
            self.services.start(kind)
        for kind in kinds:
            await self.services.wait_ready(kind)

    async def stream_direct(self, *, per_second: float = DIRECT_PER_SECOND) -> None:
        """Publish the documents straight to the documents topic, ``per_second``."""
        await publish_stream(
            self.docs,
            self.ledger,
            bootstrap=self.bootstrap,
            topic=self.topic(topics.DOCUMENTS),
            blob_dir=self.blob_dir,
            per_second=per_second,
            deadline=time.monotonic() + STREAM_TIMEOUT,
        )

    async def stream_uploads(self, api_key: str, *, workers: int = 4) -> None:
        """Upload the documents through ingest's API."""
        await upload_stream(
            self.docs,
            self.ledger,
            url=self.services.running["ingest"].url,
            api_key=api_key,
            workers=workers,
            deadline=time.monotonic() + STREAM_TIMEOUT,
        )

    async def stream_retrying_uploads(
        self, api_key: str, uploads: list[FileUpload], in_flight: InFlight, *, workers: int = 4
    ) -> None:
        """Upload the documents through ingest as ``triage upload`` does (Idempotency-Keys,
        retries); ``uploads`` gets what each file was answered."""
        await retrying_upload_stream(
            self.docs,
            self.ledger,
            url=self.services.running["ingest"].url,
            api_key=api_key,
            workers=workers,
            attempts=UPLOAD_ATTEMPTS,
            spool=self.services.work / "upload-files",
            uploads=uploads,
            in_flight=in_flight,
        )

    async def pause_at_random_share(self, low: float, high: float) -> float:
        """Wait until a seeded random share of the stream (in [low, high)) is accepted."""
        return await self.pause_at(self.rng.uniform(low, high))

    async def busy(self, name: str, timeout: float = 120.0) -> None:
        """Wait until the service has done some work since it (re)started."""
        service = self.services.running[name]
        deadline = time.monotonic() + timeout
        while service.work_done() == 0:
            assert time.monotonic() < deadline, f"{name} did no work in {timeout:.0f} s"
            await asyncio.sleep(0.05)

    async def pause_at(self, share: float) -> float:
        """Wait until ``share`` of the stream is accepted, then a seeded random half second."""
        await self.ledger.reached(share)
        await asyncio.sleep(self.rng.uniform(0.0, 0.5))
        return round(share, 3)

    async def outcomes(self) -> dict[str, str]:
        """Each accepted document's outcome: its queue, or ``review``."""
        stored = await asyncio.to_thread(_stored, self.database_url, list(self.ledger.accepted))
        return {
            **dict.fromkeys(stored.reviews, "review"),
            **{doc_id: queue for doc_id, (queue, _, _) in stored.routes.items()},
        }

    async def finish(self, fault: str) -> Report:
        """Wait for the pipeline to drain, audit it, write the report and print its summary."""
        drained = await wait_drained(
            database_url=self.database_url,
            bootstrap=self.bootstrap,
            ledger=self.ledger,
            groups=[
                (self.services.env["TRIAGE_CLASSIFIER_GROUP_ID"], self.topic(topics.DOCUMENTS)),
                (self.services.env["TRIAGE_ROUTER_GROUP_ID"], self.topic(topics.CLASSIFIED)),
            ],
            timeout=DRAIN_TIMEOUT,
        )
        report = await audit(
            name=self.name,
            fault=fault,
            faults=self.faults,
            ledger=self.ledger,
            database_url=self.database_url,
            bootstrap=self.bootstrap,
            prefix=self.prefix,
            queues=self.queues,
            seconds_to_drain=drained,
        )
        path = report.write()
        SUMMARIES.append(report.summary())
        print(f"\n{report.summary()}\n  report: {path}")
        return report


def assert_invariants(report: Report) -> None:
    """Every accepted document ends routed or in review exactly once; nothing is lost."""
    assert report.accepted == report.documents_sent, (
        f"only {report.accepted} of {report.documents_sent} documents were accepted"
        f" (refusals: {report.send_refusals})"
    )
    assert report.seconds_to_drain is not None, f"never drained: {report.violations}"
    assert not report.violations, json.dumps(report.violations, indent=1)
    assert report.lost == report.duplicated == report.dead_lettered == 0
    assert report.routed + report.in_review == report.accepted


async def publish_events(bootstrap: str, topic: str, events: Sequence[Event]) -> None:
    """Publish events in order, keyed by document id, each acknowledged before the next."""
    producer = await _producer(bootstrap, time.monotonic() + 60)
    try:
        for event in events:
            await _send(producer, topic, event)
    finally:
        await _stop(producer)
