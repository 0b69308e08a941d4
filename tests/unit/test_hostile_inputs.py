"""Hostile inputs against the parsers, in memory: a status or a clear error, never a hang.

Each hostile class from ``tests/hostile.py`` goes through the real code that meets it first:
PDFs and large text through a real ``ExtractionPool`` (with short limits, so a bomb comes back
as ``timeout`` or ``too_large`` within seconds), emails through ``parse_email``, file names
through ``safe_filename``, metadata through ``parse_metadata``. What each input became is
counted into ``test-artifacts/reliability/hostile.json`` (tier ``unit``).

No test asserts a duration. Hangs are caught by each test's pytest-timeout, and by structure:
quadratic HTML is shown to skip the parser (``parser_would_crawl``), enormous emails to be cut
(their defects say where). Memory is the test process's peak RSS (``ru_maxrss``), which only
grows: it must not grow by anything near the size a bomb inflates to.
"""

from __future__ import annotations

import io
import json
import resource
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest

from tests import hostile
from tests.hostile import MIB, PDF, Tally, record
from triage_contracts import ExtractionStatus, Producer, Source, SourceKind
from triage_ingest import domain
from triage_text.email.limits import MAX_HEADER_CHARS
from triage_text.email.parse import parse_email
from triage_text.extract import extract_text
from triage_text.markup import html_to_text, parser_would_crawl
from triage_text.pool import IN_PROCESS_MAX_BYTES, ExtractionLimits, ExtractionPool

# Short limits, as the test settings of a service would have them.
LIMITS = ExtractionLimits(timeout_seconds=3.0, memory_bytes=256 * MIB)
FAILED = {
    ExtractionStatus.CORRUPT,
    ExtractionStatus.EMPTY,
    ExtractionStatus.TIMEOUT,
    ExtractionStatus.TOO_LARGE,
    ExtractionStatus.ENCRYPTED,
    ExtractionStatus.UNSUPPORTED,
}
PRODUCER = Producer(service="tests", version="0")


def _peak_rss_mib() -> int:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _count_statuses(tally: Tally, statuses: list[ExtractionStatus]) -> None:
    """Count extraction statuses; a failed extraction is what the router sends to review."""
    for status in statuses:
        tally.see(f"status_{status.value}")
        if status is not ExtractionStatus.OK:
            tally.to_review += 1  # extraction_failed (or encrypted): high priority review


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("hostile_class", "build"),
    [
        ("truncated_pdf", lambda: dict(enumerate(hostile.truncated_pdfs()))),
        ("fuzzed_pdf", lambda: dict(enumerate(hostile.fuzzed_pdfs()))),
        ("nested_pdf", hostile.nested_pdfs),
        ("pdf_bomb", hostile.pdf_bombs),
    ],
)
async def test_hostile_pdfs_come_back_with_a_status_from_capped_workers(
    hostile_class: str, build: Callable[[], Mapping[object, bytes]]
) -> None:
    documents = build()
    peak_before = _peak_rss_mib()
    async with ExtractionPool(workers=2, limits=LIMITS) as pool:
        results = await pool.extract_many([(data, PDF) for data in documents.values()])
        after = await pool.extract(hostile.base_pdf(), PDF)  # and the pool still works
        stats = pool.stats

    statuses = [result.status for result in results]
    assert len(statuses) == len(documents), "every document gets exactly one answer"
    assert all(isinstance(status, ExtractionStatus) for status in statuses)
    assert after.status is ExtractionStatus.OK and "Invoice 2024-117" in after.text
    # The bombs inflate to 512 MiB and more, in the capped worker: never here.
    assert _peak_rss_mib() - peak_before < 200
    by_name = dict(zip(documents, statuses, strict=True))
    if hostile_class == "truncated_pdf":
        assert by_name[0] is ExtractionStatus.CORRUPT  # zero bytes
        assert statuses.count(ExtractionStatus.CORRUPT) >= len(statuses) // 2
    if hostile_class == "nested_pdf":
        assert by_name["page_tree_5000"] is ExtractionStatus.CORRUPT  # recursion, caught
        assert by_name["arrays_2000000"] in {ExtractionStatus.TIMEOUT, ExtractionStatus.OK}
    if hostile_class == "pdf_bomb":
        assert by_name["flate_512mib"] in {ExtractionStatus.TOO_LARGE, ExtractionStatus.TIMEOUT}
        assert by_name["operator_flood"] is ExtractionStatus.TIMEOUT
        assert stats["memory_errors"] + stats["timeouts"] >= 2
    assert stats["completed"] == len(documents) + 1

    tally = Tally(
        hostile_class,
        "unit",
        inputs=len(documents),
        documents=len(documents),
        limits="extraction pool: 2 workers, 3 s and 256 MiB each",
    )
    _count_statuses(tally, statuses)
    tally.see("pool_timeouts", stats["timeouts"])
    tally.see("pool_memory_errors", stats["memory_errors"])
    tally.see("pool_worker_deaths", stats["worker_deaths"])
    record(tally)


@pytest.mark.timeout(120)
async def test_quadratic_html_and_expanding_text_cannot_stall_the_service() -> None:
    crawling = hostile.crawling_html()
    # The shapes that made html.parser quadratic are recognised and never given to it ...
    for name, markup in crawling.items():
        if name != "less_than_flood":  # linear for the parser, merely slow: the pool's job
            assert parser_would_crawl(markup.decode()), name
            html_to_text(markup.decode())  # finishes: pytest-timeout would catch a hang
    assert not parser_would_crawl("<p>An <b>ordinary</b> page</p><!-- a comment -->" * 1000)
    # ... and any text or HTML over IN_PROCESS_MAX_BYTES goes to a capped worker, where a
    # text that NFKC expands eighteen-fold (U+FDFA, 3.5 GB in process) is too_large.
    expanding = "\ufdfa".encode() * (24 * MIB // 3)
    documents = [(markup, "text/html") for markup in crawling.values()]
    documents.append((expanding, "text/plain"))
    assert all(len(data) > IN_PROCESS_MAX_BYTES for data, _ in documents)
    peak_before = _peak_rss_mib()
    async with ExtractionPool(workers=2, limits=LIMITS) as pool:
        results = await pool.extract_many(documents)
        stats = pool.stats
    assert stats["worker_tasks"] == len(documents) and stats["in_process"] == 0
    assert results[-1].status in {ExtractionStatus.TOO_LARGE, ExtractionStatus.TIMEOUT}
    assert _peak_rss_mib() - peak_before < 200

    scripted = hostile.HTML_WITH_SCRIPT
    texts = {name: extract_text(data, kind) for name, (data, kind) in scripted.items()}
    assert "alert" not in texts["html_script"].text
    assert "Invoice 12 is overdue." in texts["html_script"].text
    # Plain text keeps its angle brackets: it is text, escaping it is the UI's job.
    assert "<script>alert('xss')</script>" in texts["text_script"].text

    tally = Tally(
        "html_script",
        "unit",
        inputs=len(documents) + len(scripted),
        documents=len(documents) + len(scripted),
        limits=f"in process up to {IN_PROCESS_MAX_BYTES} bytes; beyond, a worker (3 s, 256 MiB)",
    )
    _count_statuses(tally, [r.status for r in results] + [t.status for t in texts.values()])
    record(tally)


# The defect that shows where each enormous email was cut.
CUT_BY = {
    "html_body_2mib": "large_html",
    "many_parts_24mib": "mime_parse_failed:too_many_boundaries",
    "header_line_4mib": "header_too_long",
    "folded_header_8mib": "header_too_long",
    "headers_500000": "too_many_headers",
    "multipart_depth_3000": "mime_parse_failed:too_many_multiparts",
    "forwards_40_deep": "max_depth_exceeded",
}


@pytest.mark.timeout(120)
def test_enormous_emails_are_cut_to_bounded_work_and_say_so() -> None:
    emails = hostile.enormous_emails()
    assert set(emails) == set(CUT_BY)
    peak_before = _peak_rss_mib()
    tally = Tally(
        "enormous_email",
        "unit",
        inputs=len(emails),
        limits=(
            "parse_email: 200 parts, 1000 headers of 64 KiB, 64 KiB of structured header "
            "parsing, 800 boundary lines, 32 multiparts, 500,000 lines"
        ),
    )
    for name, raw in emails.items():
        assert len(raw) <= 25 * MIB, "within the upload limit, as an attacker would send it"
        parsed = parse_email(raw)
        # As the Intake does: the message's defects go with its body.
        defects = {*parsed.defects, *parsed.parts[0].defects}
        assert CUT_BY[name] in defects, (name, defects)
        assert parsed.parts[0].role == "body"
        assert 1 <= len(parsed.parts) <= 200
        assert all(len(part.defects) < 60 for part in parsed.parts)
        assert parsed.sender is None or len(parsed.sender) <= MAX_HEADER_CHARS
        tally.documents += len(parsed.parts)
        tally.see(f"cut_{CUT_BY[name]}")
    # Before the limits, the 500,000 headers alone took 2.6 GB and the 4 MiB From hours.
    assert _peak_rss_mib() - peak_before < 400
    many = parse_email(emails["many_parts_24mib"])
    assert "too_many_parts" in many.defects and len(many.parts) == 200
    assert many.parts[0].data == b"The body comes first."
    one_line = parse_email(emails["header_line_4mib"])
    assert one_line.sender == "a@b.example"  # the first address, from the text kept
    # Where these documents end (review or a queue) is the pipeline test's to count.
    record(tally)


def test_zip_bomb_is_stored_opaque_never_inflated() -> None:
    bomb = hostile.zip_bomb()
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
        with archive.open("zeros.bin") as member:
            assert member.read(MIB) == bytes(MIB)  # it is what it claims to be
    assert sizes["zeros.bin"] == 1024 * MIB and len(bomb) < 2 * MIB
    assert "../../../../etc/cron.d/triage" in sizes

    tally = Tally("zip_bomb", "unit", limits="zip files are opaque bytes: never unpacked")
    # As an upload it is refused (415), whatever it claims to be.
    for declared, name in [
        ("application/zip", "bomb.zip"),
        ("application/octet-stream", "bomb.zip"),
        (None, "report.docx"),
        ("application/x-zip-compressed", "invoice.pdf.zip"),
    ]:
        tally.inputs += 1
        with pytest.raises(domain.UnsupportedMediaTypeError, match="not accepted"):
            domain.media_type_for(declared, name)
        tally.refused += 1
        tally.see("http_415")
    # As an attachment it is kept byte for byte, and extraction refuses it unopened.
    parsed = parse_email(hostile.simple_email(attachments=[("bomb.zip", "application/zip", bomb)]))
    tally.inputs += 1
    [zipped] = [part for part in parsed.parts if part.role == "attachment"]
    assert zipped.data == bomb and zipped.media_type == "application/zip"
    assert extract_text(zipped.data, zipped.media_type).status is ExtractionStatus.UNSUPPORTED
    tally.documents += len(parsed.parts)
    tally.to_review += 1
    tally.see("status_unsupported")
    record(tally)


def _is_safe_name(name: str | None) -> bool:
    """A display name with no way to be read as a path or to break a line."""
    if name is None:
        return True
    return (
        0 < len(name) <= 255
        and not name.startswith(".")
        and not any(c in name for c in "/\\\x00\r\n\u202e")
        and all(c.isprintable() for c in name)
    )


def test_traversal_file_names_become_plain_base_names() -> None:
    tally = Tally(
        "path_traversal_filename",
        "unit",
        limits="safe_filename: base name, NFKC, [\\w.-() ] only, no leading dot, 255 chars",
    )
    names = [*hostile.TRAVERSAL_FILENAMES, *hostile.DROP_FOLDER_NAMES]
    for raw in names:
        safe = domain.safe_filename(raw)
        assert _is_safe_name(safe), (raw, safe)
        tally.see("kept_as_name" if safe else "no_name")
    assert domain.safe_filename("../../etc/passwd") == "passwd"
    assert domain.safe_filename("..") is None
    # In an email the name arrives as a MIME parameter; the Intake applies safe_filename.
    parsed = parse_email(hostile.traversal_attachments_email())
    attached = [part for part in parsed.parts if part.role == "attachment"]
    assert len(attached) == len(hostile.TRAVERSAL_FILENAMES) + 1
    for part in attached:
        assert _is_safe_name(domain.safe_filename(part.filename)), part.filename
        event = domain.document_received(
            source=Source(kind=SourceKind.UPLOAD, name="portal"),
            sha256="ab" * 32,
            size_bytes=len(part.data),
            media_type=part.media_type,
            filename=part.filename,
            received_at=datetime.now(UTC),
            producer=PRODUCER,
        )
        assert _is_safe_name(event.document.filename)
    tally.inputs = len(names) + 1
    tally.documents = len(names) + len(parsed.parts)
    record(tally)


def test_injection_strings_in_api_fields_are_data_or_a_clear_error() -> None:
    tally = Tally("injection", "unit", limits="metadata: 20 keys [A-Za-z0-9_.-]{1,64}, 500 chars")
    for value in hostile.INJECTION_STRINGS:
        tally.inputs += 2
        # As a value it is only data: kept verbatim, never evaluated ({{7*7}} is not 49).
        if len(value) <= 500:
            meta = domain.parse_metadata(json.dumps({"note": value}))
            assert meta == {"note": value}
            event = domain.document_received(
                source=Source(kind=SourceKind.UPLOAD, name="portal"),
                sha256="cd" * 32,
                size_bytes=1,
                media_type="text/plain",
                filename=value,
                received_at=datetime.now(UTC),
                producer=PRODUCER,
                metadata=meta,
            )
            assert event.document.metadata["note"] == value
            assert _is_safe_name(event.document.filename)
            tally.documents += 1
            tally.see("accepted_as_data")
        else:
            with pytest.raises(ValueError, match="500 characters"):
                domain.parse_metadata(json.dumps({"note": value}))
            tally.refused += 1
            tally.see("http_422")
        # As a key it breaks the contract: a 422 before anything is stored, not a 500 later.
        with pytest.raises(ValueError, match="metadata keys"):
            domain.parse_metadata(json.dumps({value: "x"}))
        tally.refused += 1
        tally.see("http_422")
    record(tally)


def test_header_fields_lose_control_characters_and_types_their_excess() -> None:
    raw = (
        b"From: a\x00b@example.com\r\n"
        b"Subject: =?utf-8?q?pay=00now?= \x01\r\n"
        b"Message-ID: <x\x00y@example.com>\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
        b"--B\r\nContent-Type: application/" + b"x" * 200 + b"\r\n\r\nzz\r\n--B--\r\n"
    )
    parsed = parse_email(raw)
    # PostgreSQL refuses NUL in text: a NUL subject would stall the router on every retry.
    for value in (parsed.subject, parsed.sender, parsed.message_id):
        assert value is not None and "\x00" not in value and "\x01" not in value
    assert {"control_characters:subject", "control_characters:from"} <= set(parsed.defects)
    # A media type longer than events may carry (127) would fail validation at the Intake.
    [long_type] = [part for part in parsed.parts if part.role == "attachment"]
    assert long_type.media_type == "application/octet-stream"
    assert "invalid_content_type" in long_type.defects
