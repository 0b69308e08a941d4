"""Shared feature code: extraction gives text or a typed reason, never an exception."""

from __future__ import annotations

import pytest

from scripts.pdfgen import make_pdf
from triage_contracts import ExtractionStatus
from triage_text.extract import decode_text, extract_text, normalise
from triage_text.markup import html_to_text


def test_normalise_tidies_whitespace_and_unicode() -> None:
    assert (
        normalise("  Invoice\u00a0\u00a0No.\t42\r\n\r\n\r\nDue\x00 now ")
        == "Invoice No. 42\n\nDue now"
    )
    assert normalise("ﬁle") == "file"  # NFKC folds the ligature


def test_decode_falls_back_to_windows_1252() -> None:
    assert decode_text("café".encode()) == "café"
    assert decode_text("café".encode("cp1252")) == "café"
    assert decode_text(b"\xef\xbb\xbfhello") == "hello"


def test_html_loses_scripts_and_styles() -> None:
    html = (
        "<html><head><style>p{}</style></head>"
        "<body><p>Pay <b>now</b></p><script>alert(1)</script></body></html>"
    )
    text = html_to_text(html)
    assert "Pay now" in text
    assert "alert" not in text and "p{}" not in text


@pytest.mark.parametrize("markup", ["<![x", "<p>Pay <![if !mso]>now</p><script>x()</script>"])
def test_hostile_html_never_raises(markup: str) -> None:
    result = extract_text(markup.encode(), "text/html")
    assert result.status in {ExtractionStatus.OK, ExtractionStatus.EMPTY}
    assert "x()" not in result.text


def test_hostile_html_fallback_drops_many_and_unclosed_elements() -> None:
    markup = "<![x" + "<style>a</style>kept " * 20_000 + "<script>never closed " + "x" * 100_000
    result = extract_text(markup.encode(), "text/html")
    assert result.text.count("kept") == 20_000
    assert "never closed" not in result.text


def test_pdf_text_is_extracted() -> None:
    pdf = make_pdf("Invoice 4711 is overdue. Please pay the outstanding balance.")
    result = extract_text(pdf, "application/pdf")
    assert result.status is ExtractionStatus.OK
    assert "Invoice 4711 is overdue" in result.text
    assert result.pages == 1


@pytest.mark.parametrize(
    ("data", "media_type", "status"),
    [
        (b"%PDF-1.4\n garbage with no objects", "application/pdf", ExtractionStatus.CORRUPT),
        (b"not a pdf at all", "application/pdf", ExtractionStatus.CORRUPT),
        (b"   \n\t  ", "text/plain", ExtractionStatus.EMPTY),
        (b"\x89PNG....", "image/png", ExtractionStatus.UNSUPPORTED),
    ],
)
def test_bad_documents_come_back_as_reasons(
    data: bytes, media_type: str, status: ExtractionStatus
) -> None:
    assert extract_text(data, media_type).status is status


def test_truncated_pdf_is_corrupt_not_an_exception() -> None:
    pdf = make_pdf("A perfectly fine letter about a contract renewal. " * 20)
    assert extract_text(pdf[: len(pdf) // 3], "application/pdf").status in {
        ExtractionStatus.CORRUPT,
        ExtractionStatus.EMPTY,
    }


def _encrypted_pdf() -> bytes:
    # A standard security handler whose owner/user hashes match no password.
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <"
        + b"11" * 32
        + b"> /U <"
        + b"22" * 32
        + b"> /P -44 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += (
        b"trailer\n<< /Size %d /Root 1 0 R /Encrypt 4 0 R /ID [<" % (len(objects) + 1)
        + b"33" * 16
        + b"> <"
        + b"33" * 16
        + b">] >>\nstartxref\n%d\n%%%%EOF\n" % xref
    )
    return bytes(out)


def test_encrypted_pdf_is_reported_as_encrypted() -> None:
    assert extract_text(_encrypted_pdf(), "application/pdf").status is ExtractionStatus.ENCRYPTED


def test_oversize_documents_are_refused_before_parsing() -> None:
    assert (
        extract_text(b"x" * 101, "text/plain", max_bytes=100).status is ExtractionStatus.TOO_LARGE
    )
