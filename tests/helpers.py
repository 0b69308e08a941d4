"""Builders shared by tests: events, documents and a small trained model."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Collection, Coroutine, Iterator, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, text

from triage_contracts import (
    BlobRef,
    DocumentClassifiedV1,
    DocumentReceivedV1,
    DocumentRef,
    DocumentRoutedV1,
    Extraction,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Prediction,
    Producer,
    Source,
    SourceKind,
    derive_document_id,
)
from triage_ingest.settings import Settings as IngestSettings
from triage_ml.model import Example
from triage_runtime.apikeys import ApiKeys
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.routing import RouteTo, routed_event

if TYPE_CHECKING:
    from tests.stack import Stack  # tests.stack imports this module

PRODUCER = Producer(service="tests", version="0")
RECEIVED_AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)

TOPIC_WORDS = {
    "billing": "invoice payment refund amount due vat receipt charge overdue balance",
    "technical": "error outage login api server crash bug timeout deploy stack trace",
    "legal": "contract clause nda gdpr subpoena liability counsel agreement breach terms",
}


def small_examples(per_label: int = 30) -> list[Example]:
    """Return a tiny, clearly separable labelled set."""
    examples = []
    for label, words in TOPIC_WORDS.items():
        vocab = words.split()
        for i in range(per_label):
            picked = " ".join(vocab[(i + k) % len(vocab)] for k in range(6))
            examples.append(Example(text=f"dear team {picked} regards number {i}", label=label))
    return examples


def document_ref(
    sha256: str = "ab" * 32, media_type: str = "text/plain", *, filename: str = "letter.txt"
) -> DocumentRef:
    """Return a DocumentRef for an upload."""
    return DocumentRef(
        source=Source(kind=SourceKind.UPLOAD, name="http-upload"),
        blob=BlobRef(sha256=sha256, size_bytes=10, media_type=media_type),
        filename=filename,
        received_at=RECEIVED_AT,
    )


def received(sha256: str = "ab" * 32, media_type: str = "text/plain") -> DocumentReceivedV1:
    """Return a DocumentReceived event."""
    return DocumentReceivedV1(
        producer=PRODUCER,
        document_id=derive_document_id("upload", "http-upload", sha256),
        document=document_ref(sha256, media_type),
    )


def classified(
    *,
    label: str = "billing",
    confidence: float = 0.97,
    threshold: float = 0.9,
    status: ExtractionStatus = ExtractionStatus.OK,
    sha256: str = "cd" * 32,
    model_version: str = "tfidf-lr-test",
    filename: str = "letter.txt",
) -> DocumentClassifiedV1:
    """Return a DocumentClassified event; no prediction unless extraction was ok."""
    prediction = None
    if status is ExtractionStatus.OK:
        prediction = Prediction(
            label=label,
            confidence=confidence,
            probabilities={label: confidence, "other": round(1 - confidence, 6)},
            threshold=threshold,
            action="route" if confidence >= threshold else "review",
        )
    return DocumentClassifiedV1(
        producer=PRODUCER,
        document_id=derive_document_id("upload", "http-upload", sha256),
        model=ModelRef(version=model_version, role=ModelRole.CHAMPION),
        document=document_ref(sha256, filename=filename),
        extraction=Extraction(status=status, chars=100 if prediction else 0),
        prediction=prediction,
    )


REPO_ROOT = Path(__file__).resolve().parents[1]


class SlowBlobs(LocalBlobStore):
    """A real local blob store whose every read takes ``pause`` seconds, like an object
    store's round trip; it records the most reads that were in progress at once."""

    def __init__(self, root: Path, *, pause: float) -> None:
        super().__init__(root)
        self._pause = pause
        self._lock = threading.Lock()
        self._in_flight = 0
        self.most_at_once = 0

    def get(self, sha256: str) -> bytes:
        """Read after the pause, counting the reads in progress."""
        with self._lock:
            self._in_flight += 1
            self.most_at_once = max(self.most_at_once, self._in_flight)
        try:
            time.sleep(self._pause)
            return super().get(sha256)
        finally:
            with self._lock:
                self._in_flight -= 1


def routed_item(
    event: DocumentClassifiedV1,
    decision: RouteTo,
    *,
    event_id: uuid.UUID | None = None,
    topic: str = "test.triage.routed",
) -> tuple[str, DocumentRoutedV1]:
    """The (topic, DocumentRouted) a router stores for ``decision`` (``OutcomeStore``)."""
    routed = routed_event(event, decision, producer=PRODUCER)
    if event_id is not None:
        routed = routed.model_copy(update={"event_id": event_id})
    return topic, routed


class Unpublished:
    """A publisher (``triage_runtime.outbox.Publisher``) that publishes nothing: committed
    events stay in the outbox, for tests without Kafka."""

    async def publish(self, event_ids: Collection[uuid.UUID]) -> int:
        """Leave the events pending."""
        return 0


def run_in_thread(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to completion on an event loop of its own, off the caller's thread (a
    fixture may be set up for an async test, whose loop must not be touched)."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(work)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="create-topics")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def review_sign_in(
    client: Any,  # httpx.Client, or Starlette's TestClient (built on another httpx)
    username: str,
    password: str,
    *,
    follow: bool = True,
    headers: Mapping[str, str] | None = None,
    **form: str,
) -> Any:
    """Sign in to the review UI as a browser does: open the sign-in form (which gives its
    CSRF token, in the form and in a cookie), then send it back filled in."""
    page = client.get("/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, "the sign-in form carries a CSRF token"
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf": token.group(1), **form},
        headers=headers,
        follow_redirects=follow,
    )


def review_login(client: Any, username: str, password: str) -> str:
    """Sign in (``review_sign_in``, following the redirect) and return the CSRF token the
    signed-in page carries, for the forms a test then sends."""
    response = review_sign_in(client, username, password)
    assert response.status_code == 200, response.text
    found = re.search(r'name="csrf" value="([^"]+)"', response.text)
    assert found, "pages carry a CSRF token"
    return found.group(1)


def new_api_key(database_url: str, name: str) -> str:
    """Create an upload API key named ``name``; return the key (shown once)."""

    async def run() -> str:
        engine = make_async_engine(database_url)
        try:
            return await ApiKeys(engine).create(name)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def email_bytes(subject: str, body: str, *, attachment: bytes | None = None) -> bytes:
    """A small email from Dana, with a PDF attachment ``invoice.pdf`` when one is given."""
    message = EmailMessage()
    message["From"] = "Dana Example <dana@example.com>"
    message["To"] = "triage@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content(body)
    if attachment is not None:
        message.add_attachment(
            attachment, maintype="application", subtype="pdf", filename="invoice.pdf"
        )
    return message.as_bytes()


def unquoted_parameters_mail(pdf: bytes) -> bytes:
    """A mail as Java mailers and Outlook write them (issue 20, defect 7): an unquoted
    boundary with "=", an unquoted file name with spaces (``Invoice March 2026.pdf``, the
    PDF given), and a sender with a display name (``"Müller, Anna" <anna@example.com>``)."""
    encoded = base64.encodebytes(pdf).decode("ascii")
    text = (
        'From: "Müller, Anna" <anna@example.com>\n'
        "To: triage@example.org\n"
        "Subject: Invoice March\n"
        "Message-ID: <march-2026@example.com>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/mixed; boundary=----=_Part_123_456.789\n"
        "\n"
        "------=_Part_123_456.789\n"
        "Content-Type: text/plain; charset=UTF-8\n"
        "\n"
        "Please find the invoice attached.\n"
        "------=_Part_123_456.789\n"
        "Content-Type: application/pdf\n"
        "Content-Transfer-Encoding: base64\n"
        "Content-Disposition: attachment; filename=Invoice March 2026.pdf\n"
        "\n"
        f"{encoded}"
        "------=_Part_123_456.789--\n"
    )
    return text.replace("\n", "\r\n").encode()


def sql_rows(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Every row a query returns, on a fresh engine (tests look at the database as it is)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql)).all()]
    finally:
        engine.dispose()


# The outcome that gives a document each status (the view document_status derives it).
OUTCOMES = {
    "routed": ("routed", "billing", "model"),
    "decided": ("routed", "billing", "human"),
    "in_review": ("review", None, None),
}


def give_outcome(database_url: str, document_id: str, status: str) -> None:
    """Give a document the outcome that shows as ``status`` (replacing any it had)."""
    kind, queue, decided_by = OUTCOMES[status]
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO document_outcome (document_id, kind, queue, decided_by)"
                    " VALUES (:d, :kind, :queue, :by) ON CONFLICT (document_id) DO UPDATE"
                    " SET kind = :kind, queue = :queue, decided_by = :by"
                ),
                {"d": document_id, "kind": kind, "queue": queue, "by": decided_by},
            )
            derived = conn.execute(
                text("SELECT status FROM document_status WHERE document_id = :d"),
                {"d": document_id},
            ).scalar_one()
    finally:
        engine.dispose()
    assert derived == status


def isolated_ingest_settings(
    stack: Stack, database_url: str, tmp_path: Path, **overrides: Any
) -> IngestSettings:
    """Ingest's settings on an isolated stack (its topics, its database, blobs in
    ``tmp_path/blobs``) with 64 KiB files unless ``overrides`` say otherwise."""
    return IngestSettings(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=database_url,
        blob_dir=tmp_path / "blobs",
        topic_prefix=stack.topic_prefix,
        **{"max_document_bytes": 64 * 1024, **overrides},
    )


def table_rows(output: str) -> list[dict[str, str]]:
    """The rows of the rich table in a CLI's output, each cell's wrapped or folded lines
    joined and all its white space removed (so names compare whole whatever the width)."""
    lines = [line for line in output.splitlines() if line.startswith(("┃", "│"))]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].strip("┃").split("┃")]
    rows: list[list[str]] = []
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    return [
        {name: re.sub(r"\s", "", cell) for name, cell in zip(header, row, strict=True)}
        for row in rows
    ]


def self_signed_certificate(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """Write a one-day self-signed certificate for 127.0.0.1 and its unencrypted key (PEM)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def refusing_tls_server(directory: Path) -> Iterator[str]:
    """A local TLS server (not Kafka) with a self-signed certificate; yields its host:port."""
    cert, key = self_signed_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), conn, context.wrap_socket(conn, server_side=True):
                pass  # the client refuses the handshake first

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        server.close()


class TcpRelay:
    """A port that refuses connections until ``open`` makes it forward them to ``target``
    (a server that comes back, as seen by a client started before it)."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self.port = free_port()
        self._server: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []

    @property
    def address(self) -> str:
        """host:port to connect to."""
        return f"127.0.0.1:{self.port}"

    def open(self) -> None:
        """Start accepting and forwarding."""
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._spawn(self._accept, self._server)

    def close(self) -> None:
        """Stop accepting; drop the connections forwarded so far."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for sock in [*self._sockets, *([self._server] if self._server else [])]:
            sock.close()

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self._target, timeout=5)
            self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                a.settimeout(0.2)
                self._spawn(self._pipe, a, b)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
