"""``triage upload`` through its typer entry point against a real ingest (uvicorn on a port,
real Kafka and PostgreSQL): --type, a batch that goes on past refusals, and an email's
attachments shown as the documents they became."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.helpers import email_bytes, free_port, isolated_ingest_settings, new_api_key
from tests.stack import Stack
from triage_cli.exit_codes import SKIPPED
from triage_cli.main import app
from triage_ingest.app import create_app
from triage_ingest.settings import Settings


@contextmanager
def _serving(settings: Settings) -> Iterator[str]:
    """A real ingest service for ``settings``, listening on a free port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "ingest did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def ingest_settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(isolated, clean_db, tmp_path)


@pytest.fixture
def ingest(ingest_settings: Settings) -> Iterator[tuple[str, Settings]]:
    with _serving(ingest_settings) as url:
        yield url, ingest_settings


def _documents(database_url: str) -> dict[str, tuple[str | None, str, str | None]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT document_id, filename, media_type, parent_document_id FROM document")
            )
            return {r[0]: (r[1], r[2], r[3]) for r in rows}
    finally:
        engine.dispose()


def test_a_batch_goes_on_past_refusals_and_shows_an_emails_attachments(
    ingest: tuple[str, Settings], tmp_path: Path
) -> None:
    url, settings = ingest
    key = new_api_key(settings.database_url, "portal")
    (tmp_path / "note.txt").write_text("please pay invoice 12")
    (tmp_path / "tool.exe").write_bytes(b"MZ\x90\x00")  # 415: not a document type
    (tmp_path / "big.txt").write_bytes(b"x" * (64 * 1024 + 1))  # 413: over the file limit
    (tmp_path / "fwd.eml").write_bytes(
        email_bytes("Invoice 5", "See attached.", attachment=make_pdf("Invoice 5"))
    )
    names = ["note.txt", "tool.exe", "big.txt", "fwd.eml"]
    result = CliRunner().invoke(
        app,
        ["upload", *(str(tmp_path / n) for n in names), "--url", url, "--api-key", key],
    )
    assert result.exit_code == SKIPPED, result.output
    stored = _documents(settings.database_url)
    # note.txt, the email's body (no file name of its own) and its attachment.
    assert sorted(str(f) for f, _, _ in stored.values()) == ["None", "invoice.pdf", "note.txt"]
    # Every document is in the table under its id, the attachment under its email.
    for doc_id in stored:
        assert doc_id in result.output, result.output
    [attachment] = [d for d, (f, _, _) in stored.items() if f == "invoice.pdf"]
    [body] = [d for d, (f, _, _) in stored.items() if f is None]
    assert stored[attachment][2] == body
    body_line = next(line for line in result.output.splitlines() if body in line)
    assert "fwd.eml" in body_line
    assert "└ invoice.pdf" in result.output
    assert "415" in result.output and "413" in result.output
    assert "uploaded 2 of 4 file(s) as 3 document(s); 2 failed" in result.output


def test_type_sets_the_media_type_of_every_file(
    ingest: tuple[str, Settings], tmp_path: Path
) -> None:
    url, settings = ingest
    key = new_api_key(settings.database_url, "portal")
    # Neither its name nor its content says what it is (a PDF would be known by its
    # signature): guessed, it is refused.
    note = tmp_path / "note.bin"
    note.write_bytes(b"Payment reminder: invoice 1042 is overdue.")
    args = ["upload", str(note), "--url", url, "--api-key", key]
    guessed = CliRunner().invoke(app, args)
    assert guessed.exit_code == SKIPPED, guessed.output
    assert "415" in guessed.output
    typed = CliRunner().invoke(app, [*args, "--type", "text/plain"])
    assert typed.exit_code == 0, typed.output
    [(filename, media_type, _)] = _documents(settings.database_url).values()
    assert (filename, media_type) == ("note.bin", "text/plain")


def test_a_key_over_its_rate_is_retried_after_the_services_retry_after(
    ingest_settings: Settings, tmp_path: Path
) -> None:
    """The real ingest's 429 (one upload a second, no burst): with retries every file gets in,
    after waiting what Retry-After said; with one attempt the refused ones fail."""
    limited = ingest_settings.model_copy(
        update={"uploads_per_minute_per_key": 60, "upload_burst_per_key": 1}
    )
    key = new_api_key(limited.database_url, "portal")
    for n in range(6):
        (tmp_path / f"note{n}.txt").write_text(f"please pay invoice {n}")
    with _serving(limited) as url:
        base = ["--url", url, "--api-key", key]
        once = CliRunner().invoke(
            app,
            ["upload", *(str(tmp_path / f"note{n}.txt") for n in (0, 1)), *base, "--attempts", "1"],
        )
        time.sleep(1.1)  # the bucket has its one token again
        started = time.monotonic()
        retried = CliRunner().invoke(
            app, ["upload", *(str(tmp_path / f"note{n}.txt") for n in (2, 3, 4)), *base]
        )
        took = time.monotonic() - started
    assert once.exit_code == SKIPPED, once.output
    assert "429" in once.output and "after 1 attempt(s)" in once.output
    assert retried.exit_code == 0, retried.output
    assert "uploaded 3 of 3 file(s)" in retried.output
    assert took >= 1.5  # two of the three waited for the bucket (about 1 s each)
    assert len(_documents(limited.database_url)) == 4  # note0 and notes 2-4; note1 refused
