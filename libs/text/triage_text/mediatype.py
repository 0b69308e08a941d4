"""What type a file is: the one decision every way in (upload, email part) makes the same.

A declared type is believed, except ``application/octet-stream`` (or nothing), which says
only "bytes": then the content decides where it can (a PDF's signature), else the file
name's extension. A text part's declared charset travels as the media type's ``charset``
parameter, so extraction decodes the bytes as the sender wrote them.
"""

from __future__ import annotations

import mimetypes
import re

from triage_text.email.decoding import charset_codec

UNTYPED = "application/octet-stream"
"""Declared by senders that do not know, or do not say, what a file is."""

SNIFF_BYTES = 1024
"""How far into a file its signature is looked for (readers accept a PDF's that far in)."""

MAX_MEDIA_TYPE_CHARS = 127
"""Events and the database keep at most this many characters of media type."""

_PDF_SIGNATURE = b"%PDF-"
_READ_BY_DEFAULT = ("utf-8", "ascii")
_CHARSET_PARAM = re.compile(r";\s*charset\s*=\s*\"?([^\";\s]+)\"?", re.IGNORECASE)


def base_type(media_type: str | None) -> str:
    """``text/plain`` of ``Text/Plain; charset=x``: the type without its parameters."""
    return (media_type or "").split(";", 1)[0].strip().lower()


def decide_media_type(declared: str | None, filename: str | None, head: bytes = b"") -> str:
    """A file's media type (no parameters) from its declared type, content and name.

    ``head`` is the file's first bytes (``SNIFF_BYTES`` are enough); "" when nothing says.
    """
    base = base_type(declared)
    if base not in ("", UNTYPED):
        return base
    if _PDF_SIGNATURE in head[:SNIFF_BYTES]:
        return "application/pdf"
    if filename:
        return (mimetypes.guess_type(filename)[0] or "").lower()
    return base


def with_charset(media_type: str, charset: str | None) -> str:
    """``text/plain; charset=windows-1251`` for a text type with a charset Python can decode;
    the media type unchanged otherwise (no charset, not text, unknown charset, too long) and
    for UTF-8 and ASCII, which text of no declared charset is read as anyway.
    """
    if not charset or not media_type.startswith("text/"):
        return media_type
    if charset_codec(charset) in (None, *_READ_BY_DEFAULT):
        return media_type
    label = charset.strip().strip("\"'").lower()
    typed = f"{media_type}; charset={label}"
    return typed if len(typed) <= MAX_MEDIA_TYPE_CHARS else media_type


def charset_of(media_type: str) -> str | None:
    """The ``charset`` parameter of a media type, if it has one."""
    match = _CHARSET_PARAM.search(media_type)
    return match[1] if match else None
