"""Feature code shared by training, batch and online scoring: extraction and normalisation.

Training and serving call the same functions, so there is no training-serving skew.
"""

from __future__ import annotations

import io
import re
import unicodedata
from dataclasses import dataclass

from triage_contracts import ExtractionStatus
from triage_contracts.inference import MAX_TEXT_CHARS
from triage_text.email import decoding
from triage_text.markup import html_to_text
from triage_text.mediatype import base_type as media_base_type
from triage_text.mediatype import charset_of

FEATURE_CODE_VERSION = "2"
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


def decode_text(data: bytes, charset: str | None = None) -> str:
    """Decode text bytes in their declared charset (with the supersets senders mean by it);
    bytes of unknown charset as UTF-8 (with or without BOM), else Windows-1252.
    """
    if charset is not None and decoding.charset_codec(charset) is not None:
        return decoding.decode_text(data, charset)[0].removeprefix("\ufeff")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


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
    base_type = media_base_type(media_type)
    charset = charset_of(media_type)
    if base_type in PDF_MEDIA_TYPES:
        raw = _pdf_text(data)
        if raw.status is not ExtractionStatus.OK:
            return raw
        text, pages = raw.text, raw.pages
    elif base_type in HTML_MEDIA_TYPES:
        text, pages = html_to_text(decode_text(data, charset)), None
    elif base_type in TEXT_MEDIA_TYPES:
        text, pages = decode_text(data, charset), None
    else:
        return ExtractedText(ExtractionStatus.UNSUPPORTED)
    text = normalise(text)
    if not text:
        return ExtractedText(ExtractionStatus.EMPTY, pages=pages)
    return ExtractedText(ExtractionStatus.OK, text, pages)
