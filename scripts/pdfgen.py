r"""Minimal, deterministic PDF 1.4 writer for plain-text documents (stdlib only).

The output uses the standard Type1 font Helvetica (and Helvetica-Bold for the
optional title) with WinAnsiEncoding, so no font data has to be embedded and
every conforming reader, including ``pdfminer.six``, can extract the text.
Streams are left uncompressed and no timestamps are written: the same input
always yields the same bytes, whatever the zlib version or the clock says.

Example::

    from scripts.pdfgen import make_pdf

    data = make_pdf("Hello,\\n\\nplease find the invoice attached.", title="Invoice")
    Path("invoice.pdf").write_bytes(data)

A form feed (``\\f``) in the text forces a page break; ``make_pdf_pages`` takes
the pages as a list instead.  ``make_image_pdf`` builds an image-only page (no
text layer at all), the way a scanner without OCR would.
"""

from __future__ import annotations

import hashlib
import textwrap
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "WRAP_WIDTH",
    "PageLayout",
    "make_image_pdf",
    "make_pdf",
    "make_pdf_pages",
    "paginate",
    "run_length_encode",
    "wrap_text",
]

WRAP_WIDTH = 90
"""Default maximum number of characters per printed line."""

_PRODUCER = "Triage pdfgen"
_TAB_SIZE = 4
_FIRST_PRINTABLE = 0x20
_LAST_ASCII = 0x7E


@dataclass(frozen=True)
class PageLayout:
    """Geometry of a page, in PDF points (1/72 inch); the default is A4."""

    width: int = 595
    height: int = 842
    margin_left: int = 56
    margin_top: int = 64
    margin_bottom: int = 56
    font_size: int = 10
    leading: int = 13
    title_size: int = 14
    title_gap: int = 26
    wrap_width: int = WRAP_WIDTH

    @property
    def lines_per_page(self) -> int:
        """Return how many body lines fit on a page without a title."""
        usable = self.height - self.margin_top - self.margin_bottom
        return max(1, usable // self.leading)

    @property
    def title_lines(self) -> int:
        """Return how many body lines the title block displaces."""
        return -(-self.title_gap // self.leading)


DEFAULT_LAYOUT = PageLayout()


def wrap_text(text: str, width: int = WRAP_WIDTH) -> list[str]:
    """Split text into display lines of at most ``width`` characters, keeping indentation."""
    lines: list[str] = []
    for raw in text.expandtabs(_TAB_SIZE).split("\n"):
        stripped = raw.rstrip()
        if not stripped:
            lines.append("")
            continue
        body = stripped.lstrip(" ")
        indent = stripped[: min(len(stripped) - len(body), width // 2)]
        lines.extend(
            textwrap.wrap(
                body,
                width=width,
                initial_indent=indent,
                subsequent_indent=indent,
                break_long_words=True,
                break_on_hyphens=False,
            ),
        )
    return lines


def paginate(
    pages: Sequence[str],
    *,
    title: str | None = None,
    layout: PageLayout = DEFAULT_LAYOUT,
) -> list[list[str]]:
    """Wrap each logical page and split it into physical pages of lines."""
    physical: list[list[str]] = []
    for page_text in pages or [""]:
        lines = wrap_text(page_text.replace("\r\n", "\n").replace("\r", "\n"), layout.wrap_width)
        while lines and not lines[-1]:
            lines.pop()
        first = True
        while first or lines:
            capacity = layout.lines_per_page
            if title and not physical:
                capacity -= layout.title_lines
            chunk, lines = lines[:capacity], lines[capacity:]
            while lines and not lines[0]:
                lines.pop(0)
            physical.append(chunk)
            first = False
    return physical


def _to_winansi(text: str) -> bytes:
    """Encode text as WinAnsi (cp1252), transliterating what it cannot represent."""
    out = bytearray()
    for char in text:
        try:
            out += char.encode("cp1252")
        except UnicodeEncodeError:
            folded = unicodedata.normalize("NFKD", char).encode("ascii", "ignore")
            out += folded or b"?"
    return bytes(out)


def _pdf_string(text: str) -> bytes:
    """Return ``text`` as an escaped PDF literal string, parentheses included."""
    out = bytearray(b"(")
    for byte in _to_winansi(text):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif byte < _FIRST_PRINTABLE or byte > _LAST_ASCII:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    out += b")"
    return bytes(out)


def _info_string(text: str) -> bytes:
    """Return a text string for the document information dictionary."""
    if all(_FIRST_PRINTABLE <= ord(char) <= _LAST_ASCII for char in text):
        return _pdf_string(text)
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def _content_stream(lines: Sequence[str], title: str | None, layout: PageLayout) -> bytes:
    """Return the content stream drawing ``lines`` (and ``title``) on one page."""
    top = layout.height - layout.margin_top
    ops: list[bytes] = [b"BT", b"%d %d Td" % (layout.margin_left, top)]
    if title:
        ops += [b"/F2 %d Tf" % layout.title_size, _pdf_string(title) + b" Tj"]
        ops.append(b"0 -%d Td" % layout.title_gap)
    ops += [b"/F1 %d Tf" % layout.font_size, b"%d TL" % layout.leading]
    for index, line in enumerate(lines):
        if index:
            ops.append(b"T*")
        if line:
            ops.append(_pdf_string(line) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


@dataclass
class _ObjectTable:
    """Numbered PDF objects, serialised with a byte-exact cross-reference table."""

    bodies: list[bytes] = field(default_factory=list)

    def reserve(self) -> int:
        """Allocate an object number whose body is filled in later."""
        self.bodies.append(b"")
        return len(self.bodies)

    def add(self, body: bytes) -> int:
        """Append an object and return its number."""
        self.bodies.append(body)
        return len(self.bodies)

    def set(self, number: int, body: bytes) -> None:
        """Fill in a previously reserved object."""
        self.bodies[number - 1] = body

    def add_stream(self, data: bytes) -> int:
        """Append an uncompressed stream object and return its number."""
        return self.add(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data))

    def serialise(self, root: int, info: int) -> bytes:
        """Return the complete file: header, objects, xref, trailer, startxref."""
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets: list[int] = []
        for number, body in enumerate(self.bodies, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
        xref_at = len(out)
        doc_id = hashlib.md5(bytes(out), usedforsecurity=False).hexdigest().upper().encode()
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.bodies) + 1)
        for offset in offsets:
            out += b"%010d 00000 n \n" % offset
        out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R /ID [<%s> <%s>] >>\n" % (
            len(self.bodies) + 1,
            root,
            info,
            doc_id,
            doc_id,
        )
        out += b"startxref\n%d\n%%%%EOF\n" % xref_at
        return bytes(out)


def make_pdf_pages(
    pages: Sequence[str],
    *,
    title: str | None = None,
    layout: PageLayout = DEFAULT_LAYOUT,
) -> bytes:
    """Build a PDF in which every item of ``pages`` starts on a new page."""
    table = _ObjectTable()
    catalog = table.reserve()
    page_tree = table.reserve()
    font = table.add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    )
    bold = table.add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    )
    resources = table.add(
        b"<< /Font << /F1 %d 0 R /F2 %d 0 R >> /ProcSet [/PDF /Text] >>" % (font, bold)
    )
    info_entries = b"/Producer " + _pdf_string(_PRODUCER)
    if title:
        info_entries = b"/Title " + _info_string(title) + b" " + info_entries
    info = table.add(b"<< " + info_entries + b" >>")

    kids: list[int] = []
    for index, lines in enumerate(paginate(pages, title=title, layout=layout)):
        stream = table.add_stream(_content_stream(lines, title if index == 0 else None, layout))
        page = b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d]" % (
            page_tree,
            layout.width,
            layout.height,
        )
        kids.append(
            table.add(page + b" /Resources %d 0 R /Contents %d 0 R >>" % (resources, stream))
        )
    kid_refs = b" ".join(b"%d 0 R" % kid for kid in kids)
    table.set(page_tree, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kid_refs, len(kids)))
    table.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % page_tree)
    return table.serialise(root=catalog, info=info)


def make_pdf(text: str, *, title: str | None = None) -> bytes:
    r"""Build a text PDF; long text flows onto more pages and ``\\f`` forces a break."""
    return make_pdf_pages(text.split("\f"), title=title)


_RLE_MAX = 128
_RLE_EOD = 128


def run_length_encode(data: bytes) -> bytes:
    """Encode ``data`` with the PDF RunLengthDecode scheme (deterministic, no zlib)."""
    out = bytearray()
    index, size = 0, len(data)
    while index < size:
        end = index
        while end < size and end - index < _RLE_MAX and data[end] == data[index]:
            end += 1
        if end - index > 1:
            out += bytes((257 - (end - index), data[index]))
            index = end
            continue
        start = index
        while index < size and index - start < _RLE_MAX:
            if index + 1 < size and data[index] == data[index + 1]:
                break
            index += 1
        out.append(index - start - 1)
        out += data[start:index]
    out.append(_RLE_EOD)
    return bytes(out)


def make_image_pdf(
    rows: Sequence[bytes],
    width: int,
    *,
    layout: PageLayout = DEFAULT_LAYOUT,
) -> bytes:
    """Build a one-page PDF showing a 1-bit image (no text layer), like a scanned letter.

    ``rows`` are packed DeviceGray rows, most significant bit first, 1 = white.
    """
    if not rows or any(len(row) != (width + 7) // 8 for row in rows):
        message = "every row must hold (width + 7) // 8 bytes"
        raise ValueError(message)
    table = _ObjectTable()
    catalog = table.reserve()
    page_tree = table.reserve()
    image_data = run_length_encode(b"".join(rows))
    image = table.add(
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
        b" /BitsPerComponent 1 /Filter /RunLengthDecode /Length %d >>\nstream\n%s\nendstream"
        % (width, len(rows), len(image_data), image_data),
    )
    resources = table.add(b"<< /XObject << /Im1 %d 0 R >> /ProcSet [/PDF /ImageB] >>" % image)
    info = table.add(b"<< /Producer " + _pdf_string(_PRODUCER) + b" >>")
    draw = b"q\n%d 0 0 %d 0 0 cm\n/Im1 Do\nQ\n" % (layout.width, layout.height)
    stream = table.add_stream(draw)
    page = table.add(
        b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources %d 0 R /Contents %d 0 R >>"
        % (page_tree, layout.width, layout.height, resources, stream),
    )
    table.set(page_tree, b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % page)
    table.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % page_tree)
    return table.serialise(root=catalog, info=info)
