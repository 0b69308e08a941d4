"""Feature code shared by training, batch and online scoring: extraction and normalisation.

Training and serving call the same functions, so there is no training-serving skew.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser

from triage_contracts import ExtractionStatus
from triage_contracts.inference import MAX_TEXT_CHARS

FEATURE_CODE_VERSION = "1"
"""Bump when extraction or normalisation changes what a model sees; recorded in artifacts."""

MAX_PDF_PAGES = 50
TEXT_MEDIA_TYPES = frozenset({"text/plain", "text/markdown", "text/csv"})
HTML_MEDIA_TYPES = frozenset({"text/html", "application/xhtml+xml"})
PDF_MEDIA_TYPES = frozenset({"application/pdf"})
SUPPORTED_MEDIA_TYPES = TEXT_MEDIA_TYPES | HTML_MEDIA_TYPES | PDF_MEDIA_TYPES

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SPACE = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True, slots=True)
class ExtractedText:
    """Text pulled out of a document, or the typed reason there is none."""

    status: ExtractionStatus
    text: str = ""
    pages: int | None = None


def normalise(text: str) -> str:
    """Return text in the one form models see: NFKC, no control characters, tidy whitespace."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _SPACE.sub(" ", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()[:MAX_TEXT_CHARS]


def decode_text(data: bytes) -> str:
    """Decode bytes of unknown charset: UTF-8 (with or without BOM), else Windows-1252."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template"})
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_TAG = re.compile(r"<[^>]*>")
_DROPPED = ("script", "style", "head", "template")


def _without_dropped_elements(html: str) -> str:
    """Cut script/style/head/template elements in one linear pass (no regex backtracking)."""
    lower = html.lower()
    kept: list[str] = []
    position = 0
    # The next opener of each tag, found once and searched again only when passed, so
    # hostile input with thousands of elements stays linear.
    upcoming = {tag: lower.find(f"<{tag}") for tag in _DROPPED}
    while True:
        for tag, at in upcoming.items():
            if 0 <= at < position:
                upcoming[tag] = lower.find(f"<{tag}", position)
        found = [(at, tag) for tag, at in upcoming.items() if at >= 0]
        if not found:
            kept.append(html[position:])
            return "".join(kept)
        at, tag = min(found)
        kept.append(html[position:at])
        end = lower.find(f"</{tag}", at)
        if end < 0:
            return "".join(kept)  # unclosed: the rest is inside the element
        close = lower.find(">", end)
        position = len(html) if close < 0 else close + 1


def html_to_text(html: str, *, strict: bool = False) -> str:
    """Return the visible text of an HTML document (scripts and styles dropped).

    Hostile markup that the standard parser chokes on (it asserts on input such as
    ``<![x``) falls back to stripping tags, so HTML never makes extraction raise; with
    ``strict`` the parser's error is raised instead, for callers that record it.
    """
    parser = _TextOfHtml()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError, IndexError):
        if strict:
            raise
        return unescape(_TAG.sub(" ", _without_dropped_elements(html)))
    return "".join(parser.parts)


def _pdf_text(data: bytes) -> ExtractedText:
    from pdfminer.high_level import extract_text
    from pdfminer.pdfdocument import PDFEncryptionError
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfminer.psexceptions import PSException

    try:
        pages = sum(1 for _ in PDFPage.get_pages(io.BytesIO(data), maxpages=MAX_PDF_PAGES))
        text = extract_text(io.BytesIO(data), maxpages=MAX_PDF_PAGES)
    except PDFEncryptionError:  # also PDFPasswordIncorrect, PDFTextExtractionNotAllowed
        return ExtractedText(ExtractionStatus.ENCRYPTED)
    except (PDFSyntaxError, PSException, ValueError, KeyError, TypeError, AssertionError):
        return ExtractedText(ExtractionStatus.CORRUPT)
    except MemoryError:
        raise  # the extraction pool turns this into TOO_LARGE; it is not a corrupt file
    except Exception:  # noqa: BLE001 - pdfminer raises many types on hostile input
        return ExtractedText(ExtractionStatus.CORRUPT)
    return ExtractedText(ExtractionStatus.OK, text, pages)


def extract_text(
    data: bytes, media_type: str, *, max_bytes: int = 25 * 1024 * 1024
) -> ExtractedText:
    """Extract normalised text from a document's bytes; failures come back as a status."""
    if len(data) > max_bytes:
        return ExtractedText(ExtractionStatus.TOO_LARGE)
    base_type = media_type.split(";", 1)[0].strip().lower()
    if base_type in PDF_MEDIA_TYPES:
        raw = _pdf_text(data)
        if raw.status is not ExtractionStatus.OK:
            return raw
        text, pages = raw.text, raw.pages
    elif base_type in HTML_MEDIA_TYPES:
        text, pages = html_to_text(decode_text(data)), None
    elif base_type in TEXT_MEDIA_TYPES:
        text, pages = decode_text(data), None
    else:
        return ExtractedText(ExtractionStatus.UNSUPPORTED)
    text = normalise(text)
    if not text:
        return ExtractedText(ExtractionStatus.EMPTY, pages=pages)
    return ExtractedText(ExtractionStatus.OK, text, pages)
