"""Hostile inputs for Triage, each built here in code (nothing downloaded or copied in).

Every builder is deterministic: the same arguments give the same bytes, so a failure can be
reproduced and a document id recognised. The classes, as ``docs/reliability.md`` names them:

* ``truncated_pdf``: a real PDF from ``scripts/pdfgen.py`` cut at many offsets;
* ``fuzzed_pdf``: the same PDF with bytes flipped, cut out, repeated or inserted (seeded);
* ``nested_pdf``: object graphs nested thousands deep (page tree, arrays, dictionaries,
  chains of references);
* ``pdf_bomb``: a flate stream that inflates to hundreds of MiB, a stream that declares
  200 MB, a page of half a million drawing operators;
* ``zip_bomb``: a zip holding 1 GiB of zeros (and a ``../`` member name) in ~1 MB;
* ``enormous_email``: thousands of MIME parts, a megabyte header line, a header block of
  hundreds of thousands of fields, multiparts nested thousands deep;
* ``path_traversal_filename``: ``../../etc/passwd``, absolute and Windows paths, NUL,
  right-to-left override, fullwidth solidus and other unicode tricks;
* ``html_script``: ``<script>`` in document text, and markup that makes html.parser quadratic;
* ``injection``: SQL, template and HTML injection strings for filters and API fields.

``Tally`` and ``record`` write what a test saw into ``test-artifacts/reliability/hostile.json``.
"""

from __future__ import annotations

import email.policy
import fcntl
import json
import random
import struct
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from scripts.pdfgen import make_pdf_pages
from tests.helpers import REPO_ROOT

MIB = 1024 * 1024
PDF = "application/pdf"
ARTIFACT = REPO_ROOT / "test-artifacts" / "reliability" / "hostile.json"


# --- PDFs --------------------------------------------------------------------------------------


def base_pdf() -> bytes:
    """A real three-page text PDF: what the truncated and fuzzed variants start from."""
    return make_pdf_pages(
        [
            "Invoice 2024-117\n\nAmount due: 1,250.00 EUR by 31 March.\nReference ACME-77.",
            "Terms: payment within 30 days. Late fees apply.\n" * 12,
            "Thank you for your business.\nAccounts team",
        ],
        title="Invoice",
    )


def pdf_from_objects(objects: list[bytes], *, trailer_extra: bytes = b"") -> bytes:
    """Serialise numbered objects (1..n, object 1 the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\n" % (len(objects) + 1, trailer_extra)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_TEXT = b"BT /F1 12 Tf 72 720 Td (Hostile but readable) Tj ET"


def _stream(data: bytes, extra: bytes = b"", *, length: int | None = None) -> bytes:
    """A stream object; ``length`` overrides the declared /Length (a lie, for bombs)."""
    declared = len(data) if length is None else length
    return b"<< /Length %d%s >>\nstream\n" % (declared, extra) + data + b"\nendstream"


def _one_page(content: bytes, *, resources: bytes = b"<< /Font << /F1 4 0 R >> >>") -> bytes:
    """A one-page PDF drawing the given content stream object (object 5)."""
    return pdf_from_objects(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources "
            + resources
            + b" /Contents 5 0 R >>",
            _FONT,
            content,
        ]
    )


def truncated_pdfs(count: int = 24) -> list[bytes]:
    """The base PDF cut at ``count`` offsets: evenly spread, plus the structural edges."""
    pdf = base_pdf()
    edges = [0, 1, 8, pdf.index(b"xref"), pdf.index(b"trailer"), pdf.rindex(b"%%EOF")]
    spread = [len(pdf) * (index + 1) // (count - len(edges) + 1) for index in range(count)]
    offsets = sorted(set(edges + spread))[:count]
    return [pdf[:offset] for offset in offsets]


def fuzzed_pdfs(count: int = 24, *, seed: int = 20261126) -> list[bytes]:
    """Seeded damage to the base PDF: flipped bytes, holes, repeats, inserted junk."""
    rng = random.Random(seed)
    pdf = base_pdf()
    variants: list[bytes] = []
    while len(variants) < count:
        data = bytearray(pdf)
        kind = len(variants) % 4
        if kind == 0:  # flip a few bytes anywhere
            for _ in range(rng.randint(1, 32)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif kind == 1:  # cut a hole
            start = rng.randrange(len(data))
            del data[start : start + rng.randint(1, 400)]
        elif kind == 2:  # repeat a slice
            start = rng.randrange(len(data))
            piece = data[start : start + rng.randint(1, 400)]
            data[start:start] = piece * rng.randint(2, 50)
        else:  # insert junk, delimiters included
            start = rng.randrange(len(data))
            junk = bytes(
                rng.choice(b"<>[]()/\\%0123456789 RobjendstreamX\x00\xff") for _ in range(200)
            )
            data[start:start] = junk
        if bytes(data) != pdf:
            variants.append(bytes(data))
    return variants


def deep_page_tree_pdf(depth: int = 5000) -> bytes:
    """A page tree ``depth`` levels deep: each /Pages node has one kid, the last a page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        number = 2 + level
        parent = b" /Parent %d 0 R" % (number - 1) if level else b""
        objects.append(b"<< /Type /Pages /Kids [%d 0 R] /Count 1%s >>" % (number + 1, parent))
    page = 2 + depth
    objects.append(
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
        % (page - 1, page + 2, page + 1)
    )
    objects.append(_stream(_TEXT))
    objects.append(_FONT)
    return pdf_from_objects(objects)


def deep_array_pdf(depth: int = 2_000_000) -> bytes:
    """A catalog entry of arrays nested ``depth`` deep (``[[[[...]]]]``; 4 MB at 2 million)."""
    pdf = _one_page(_stream(_TEXT))
    nested = b"[" * depth + b"]" * depth
    return pdf.replace(b"/Pages 2 0 R >>", b"/Pages 2 0 R /Junk " + nested + b" >>", 1)


def deep_dictionary_pdf(depth: int = 100_000) -> bytes:
    """Page resources holding dictionaries nested ``depth`` deep."""
    nested = b"<< /A " * depth + b"1" + b" >>" * depth
    return _one_page(_stream(_TEXT), resources=b"<< /Font << /F1 4 0 R >> /Deep " + nested + b" >>")


def reference_chain_pdf(length: int = 20_000) -> bytes:
    """Page resources reached through ``length`` indirect references, each to the next."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources 6 0 R /Contents 5 0 R >>",
        _FONT,
        _stream(_TEXT),
    ]
    objects += [b"%d 0 R" % (7 + index) for index in range(length)]
    objects.append(b"<< /Font << /F1 4 0 R >> >>")
    return pdf_from_objects(objects)


def _zero_deflate(total: int, *, wrapper: bool) -> bytes:
    """Deflate ``total`` zero bytes (a multiple of 1 MiB) in milliseconds, not seconds.

    One compressed MiB of zeros ending in a full flush is self-contained, so the stream is
    that segment repeated, then an empty final block. With ``wrapper``, the zlib header and
    Adler-32 (for n zeros: ``(n mod 65521) << 16 | 1``) make it a FlateDecode stream.
    """
    if total % MIB:
        raise ValueError("total must be a whole number of MiB")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = segment * (total // MIB) + compressor.flush(zlib.Z_FINISH)
    if not wrapper:
        return body
    adler = ((total % 65521) << 16) | 1
    return b"\x78\xda" + body + adler.to_bytes(4, "big")


def flate_bomb_pdf(inflated_mib: int = 512) -> bytes:
    """A ~0.5 MB PDF whose content stream inflates to ``inflated_mib`` MiB of zeros."""
    return _one_page(
        _stream(_zero_deflate(inflated_mib * MIB, wrapper=True), b" /Filter /FlateDecode")
    )


def declared_huge_stream_pdf(declared: int = 200 * 1000 * 1000) -> bytes:
    """A content stream whose /Length says 200 MB (with /DL to match) over a few bytes."""
    return _one_page(_stream(_TEXT, b" /DL %d" % declared, length=declared))


def operator_flood_pdf(operators: int = 500_000) -> bytes:
    """A 24 KB page that runs half a million save/transform/restore operators (slow)."""
    compressor = zlib.compressobj(9)
    block = b"q 1 0 0 1 0 0 cm Q\n" * 1000
    data = b"".join(compressor.compress(block) for _ in range(operators // 1000))
    return _one_page(_stream(data + compressor.flush(), b" /Filter /FlateDecode"))


def nested_pdfs() -> dict[str, bytes]:
    """The ``nested_pdf`` class, by name."""
    return {
        "page_tree_5000": deep_page_tree_pdf(),
        "arrays_2000000": deep_array_pdf(),
        "dictionaries_100000": deep_dictionary_pdf(),
        "reference_chain_20000": reference_chain_pdf(),
    }


def pdf_bombs() -> dict[str, bytes]:
    """The ``pdf_bomb`` class, by name."""
    return {
        "flate_512mib": flate_bomb_pdf(),
        "declared_200mb": declared_huge_stream_pdf(),
        "operator_flood": operator_flood_pdf(),
    }


# --- zip bomb ----------------------------------------------------------------------------------


def zip_bomb(inflated_mib: int = 1024) -> bytes:
    """A ~1 MB zip whose member ``zeros.bin`` inflates to ``inflated_mib`` MiB.

    Written field by field (zipfile would have to compress the whole GiB); a second member
    is named ``../../../../etc/cron.d/triage``, the zip-slip path an extractor must refuse.
    """
    total = inflated_mib * MIB
    crc = 0
    zeros = bytes(MIB)
    for _ in range(inflated_mib):
        crc = zlib.crc32(zeros, crc)
    evil = b"* * * * * root true\n"
    members = [
        (b"zeros.bin", _zero_deflate(total, wrapper=False), crc, total),
        # zlib.compress output without its 2-byte header and 4-byte checksum is raw deflate.
        (b"../../../../etc/cron.d/triage", zlib.compress(evil)[2:-4], zlib.crc32(evil), len(evil)),
    ]
    out = bytearray()
    central = bytearray()
    for name, data, checksum, size in members:
        offset = len(out)
        out += struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x5821, checksum, len(data), size, len(name), 0
        )
        out += name + data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0x5821,
            checksum,
            len(data),
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    start = len(out)
    out += central
    out += struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), start, 0
    )
    return bytes(out)


# --- emails ------------------------------------------------------------------------------------


def simple_email(
    subject: str = "Invoice 77",
    body: str = "Please find the invoice attached.",
    *,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    """A well-formed message with (filename, media type, bytes) attachments."""
    message = EmailMessage()
    message["From"] = "Dana Example <dana@example.com>"
    message["To"] = "triage@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<{hash_of(subject, body)}@example.com>"
    message["Date"] = "Thu, 26 Nov 2026 09:00:00 +0000"
    message.set_content(body)
    for filename, media_type, data in attachments or []:
        maintype, subtype = media_type.split("/", 1)
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    # CRLF line ends, as mail travels over SMTP (smtplib sends bytes as they are).
    return message.as_bytes(policy=email.policy.SMTP)


def hash_of(*parts: str) -> int:
    """A stable small number for ids (``hash`` of a str changes per process)."""
    return zlib.crc32("\x00".join(parts).encode())


def _head(*lines: bytes) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


_HEADERS = _head(
    b"From: Dana Example <dana@example.com>",
    b"To: triage@example.org",
    b"Date: Thu, 26 Nov 2026 09:00:00 +0000",
)


def many_parts_email(target_bytes: int = 24 * MIB) -> bytes:
    """A multipart message of tiny attachments filling ``target_bytes`` (~270,000 parts)."""
    part = (
        b"--P\r\nContent-Type: text/plain\r\n"
        b"Content-Disposition: attachment; filename=p.txt\r\n\r\nx\r\n"
    )
    head = _HEADERS + _head(
        b"Subject: many parts", b"Content-Type: multipart/mixed; boundary=P", b""
    )
    body = b"--P\r\nContent-Type: text/plain\r\n\r\nThe body comes first.\r\n"
    return head + body + part * ((target_bytes - len(head)) // len(part)) + b"--P--\r\n"


def long_header_line_email(line_bytes: int = 4 * MIB) -> bytes:
    """A From header that is one line of ``line_bytes`` bytes: addresses without end."""
    addresses = b"a@b.example, " * (line_bytes // 13)
    return _head(b"From: " + addresses, b"Subject: one long line", b"") + b"Hello.\r\n"


def folded_giant_header_email(header_bytes: int = 8 * MIB) -> bytes:
    """A Subject folded over ``header_bytes`` bytes of short continuation lines."""
    lines = b" word word word word\r\n" * (header_bytes // 22)
    return _HEADERS + b"Subject: giant\r\n" + lines + b"\r\nHello.\r\n"


def many_headers_email(count: int = 500_000) -> bytes:
    """A header block of ``count`` tiny fields (4 MB at half a million)."""
    return _HEADERS + b"X-H: v\r\n" * count + b"Subject: many headers\r\n\r\nHello.\r\n"


def deep_multipart_email(depth: int = 3000, body_lines: int = 200_000) -> bytes:
    """Multiparts nested ``depth`` deep around a text of ``body_lines`` short lines."""
    head = _HEADERS + _head(b"Subject: deep", b"Content-Type: multipart/mixed; boundary=b0", b"")
    levels = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (level, level + 1)
        for level in range(depth)
    )
    return head + levels + b"--b%d\r\n\r\n" % depth + b"x\r\n" * body_lines


def nested_message_email(depth: int = 40) -> bytes:
    """A forward of a forward ... ``depth`` times (message/rfc822 inside message/rfc822)."""
    inner = simple_email("the original", "Innermost text.")
    for level in range(depth):
        inner = (
            _head(
                b"From: fwd@example.com",
                b"Subject: Fwd %d" % level,
                b"Content-Type: multipart/mixed; boundary=F%d" % level,
                b"",
            )
            + b"--F%d\r\nContent-Type: text/plain\r\n\r\nForward number %d.\r\n" % (level, level)
            + b"--F%d\r\nContent-Type: message/rfc822\r\n\r\n" % level
            + inner
            + b"\r\n--F%d--\r\n" % level
        )
    return inner


def html_body_email(markup: bytes) -> bytes:
    """A message whose only body is the given HTML."""
    head = _HEADERS + _head(b"Subject: html body", b"Content-Type: text/html; charset=utf-8", b"")
    return head + markup


def enormous_emails() -> dict[str, bytes]:
    """The ``enormous_email`` class, by name (each within the 25 MiB upload limit)."""
    return {
        "html_body_2mib": html_body_email(b"<p>Pay now</p>" + b"<!--" * (512 * 1024)),
        "many_parts_24mib": many_parts_email(),
        "header_line_4mib": long_header_line_email(),
        "folded_header_8mib": folded_giant_header_email(),
        "headers_500000": many_headers_email(),
        "multipart_depth_3000": deep_multipart_email(),
        "forwards_40_deep": nested_message_email(),
    }


# --- file names --------------------------------------------------------------------------------

TRAVERSAL_FILENAMES: tuple[str, ...] = (
    "../../etc/passwd",
    "../../../../../../../../etc/shadow.txt",
    "/etc/passwd",
    "/var/lib/triage/blobs/sha256/00/00/evil.pdf",
    "C:\\Windows\\System32\\drivers\\etc\\hosts.txt",
    "..\\..\\..\\boot.ini.txt",
    "\\\\server\\share\\invoice.pdf",
    "invoice.pdf\x00.exe",
    "invoice\u202efdp.exe.txt",  # right-to-left override: shows as "invoice" + "txt.exe.pdf"
    "..\uff0f..\uff0fetc\uff0fpasswd.txt",  # fullwidth solidus, NFKC makes it "/"
    "\u2024\u2024/\u2024\u2024/secret.txt",  # one-dot leaders, NFKC makes them "."
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd.txt",
    "....//....//etc/passwd.txt",
    "note\r\nContent-Type: text/html\r\n\r\n<script>x()</script>.txt",
    "a" * 300 + ".txt",
    "..",
    "",
)
"""Names as an attacker would send them (upload form fields and MIME parameters)."""

DROP_FOLDER_NAMES: tuple[str, ...] = (
    "..\\..\\windows-style.txt",
    "..\uff0f..\uff0fetc\uff0fpasswd.txt",
    "invoice\u202efdp.exe.txt",
    "new\nline.txt",
    "<img src=x onerror=alert(1)>.txt",
    "'; DROP TABLE document; --.txt",
    "x" * 247 + ".txt",  # 251 bytes: fits the filesystem, not with a claim prefix on top
    "\u00e9" * 125 + ".txt",  # 254 bytes of two-byte characters
    "tool.exe",
)
"""Names a file can really have on Linux (no "/" or NUL), for the drop folder."""


def traversal_attachments_email() -> bytes:
    """One message whose attachments carry every traversal name as a MIME parameter.

    RFC 2231 percent-encoding carries any character (NUL, CR LF, unicode) through intact,
    which is how a sender gets such a name to the parser; one more part has the raw,
    unencoded ``../../etc/passwd`` in a quoted ``filename``.
    """
    parts = [b"--T\r\nContent-Type: text/plain\r\n\r\nSee the attachments.\r\n"]
    for index, name in enumerate(TRAVERSAL_FILENAMES):
        encoded = quote(name, safe="").encode("ascii")
        parts.append(
            b"--T\r\nContent-Type: text/plain\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''" + encoded + b"\r\n\r\n"
            b"attachment %d\r\n" % index
        )
    parts.append(
        b"--T\r\nContent-Type: text/plain\r\n"
        b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nraw\r\n'
    )
    head = _HEADERS + _head(
        b"Subject: attachments with hostile names",
        b"Content-Type: multipart/mixed; boundary=T",
        b"",
    )
    return head + b"".join(parts) + b"--T--\r\n"


# --- HTML and injection strings ----------------------------------------------------------------

SCRIPT = "<script>alert('xss')</script>"

HTML_WITH_SCRIPT: dict[str, tuple[bytes, str]] = {
    "html_script": (
        f"<html><body><p>Invoice 12 is overdue.</p>{SCRIPT}<img src=x onerror=alert(1)>"
        "</body></html>".encode(),
        "text/html",
    ),
    "text_script": (
        f"{SCRIPT} Please check invoice 77, is this billing? <b>bold</b> &amp;".encode(),
        "text/plain",
    ),
    "markdown_script": (
        f"# Invoice\n\n{SCRIPT}\n\n[x](javascript:alert(1))".encode(),
        "text/markdown",
    ),
}
"""Documents whose text holds markup that must reach reviewers as text, never as HTML."""


def crawling_html(size: int = 2 * MIB) -> dict[str, bytes]:
    """Markup that made CPython's html.parser quadratic (minutes to days at this size)."""
    return {
        "unclosed_comments": b"<!--" * (size // 4),
        "unclosed_end_tags": b"</" * (size // 2),
        "tags_after_last_gt": b">" + b"<a" * (size // 2),
        "comments_without_end": b"<!--x>" * (size // 6),
        "less_than_flood": b"<" * size,
    }


INJECTION_STRINGS: tuple[str, ...] = (
    "' OR '1'='1",
    "'; DROP TABLE review_item; --",
    '" OR ""="',
    "1; SELECT pg_sleep(5)",
    "\\x00",
    "\x00",
    "{{7*7}}",
    "{% raw %}{{ config }}{% endraw %}",
    "${7*7}",
    "#{7*7}",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "javascript:alert(1)",
    "%27%20OR%201%3D1",
    "low_confidence' --",
    "../../etc/passwd",
    "é" * 2000,
)
"""Strings for query parameters, form fields, headers and metadata."""


# --- what a test saw ---------------------------------------------------------------------------


@dataclass
class Tally:
    """Per hostile class: what was tried and where each input or document ended up."""

    hostile_class: str
    tier: str
    """``unit`` (parsers in memory) or ``pipeline`` (real Kafka and PostgreSQL)."""
    inputs: int = 0
    documents: int = 0
    """Documents the inputs became (an email becomes its body plus its attachments)."""
    refused: int = 0
    """Inputs answered with an HTTP or SMTP error (4xx/5xx) and nothing accepted."""
    to_review: int = 0
    routed: int = 0
    dead_lettered: int = 0
    lost: int = 0
    duplicated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """Finer detail: HTTP codes, extraction statuses, review reasons, defects."""
    limits: str = ""

    def see(self, outcome: str, count: int = 1) -> None:
        """Count one more ``outcome`` (e.g. ``http_415`` or ``status_timeout``)."""
        self.outcomes[outcome] += count


def record(*tallies: Tally) -> None:
    """Merge tallies into the JSON artifact, keyed by tier and class (last run wins).

    Under an exclusive lock: the pytest-xdist workers of one run record at the same time,
    and a read-modify-write without it could drop another worker's entries.
    """
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    with ARTIFACT.with_suffix(".json.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            current: dict[str, Any] = json.loads(ARTIFACT.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            current = {}
        for tally in tallies:
            entry = asdict(tally)
            entry["outcomes"] = dict(sorted(tally.outcomes.items()))
            entry["recorded_at"] = datetime.now(UTC).isoformat(timespec="seconds")
            current[f"{tally.tier}:{tally.hostile_class}"] = entry
        part = ARTIFACT.with_suffix(".json.part")
        text = json.dumps(dict(sorted(current.items())), indent=2, ensure_ascii=False) + "\n"
        part.write_text(text)
        part.replace(ARTIFACT)
