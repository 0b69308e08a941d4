"""Bytes to text as senders really label and encode it: charsets with the supersets mail
clients use, base64 with junk or bad padding, HTML bodies within ``MAX_PARSED_HTML_CHARS``.
"""

from __future__ import annotations

import binascii
import codecs
import re

from triage_text.email.defects import short_label
from triage_text.email.limits import MAX_PARSED_HTML_CHARS
from triage_text.markup import html_to_text, strip_markup

LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CHARSET_LABEL = re.compile(r"[a-z0-9][a-z0-9._:+-]{0,39}")
_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/]+")

# Mail labels Python does not know, mapped to the codec mail clients actually use for them.
_LABEL_ALIASES = {
    "x-gbk": "gbk",
    "x-sjis": "shift_jis",
    "windows-31j": "cp932",
    "x-euc-jp": "euc_jp",
    "iso-8859-8-i": "iso8859_8",
    "windows-874": "cp874",
    "x-x-big5": "big5",
    "cn-big5": "big5",
    "unicode-1-1-utf-7": "utf-7",
    "utf8mb4": "utf-8",
}
# Declared charsets are often narrower than the text: decode with the superset senders use.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "ascii": ("ascii",),
    # WHATWG reads latin-1 labels as windows-1252; senders put smart quotes in "latin-1".
    "iso8859-1": ("cp1252", "iso8859-1"),
    # gb2312 mail routinely carries GBK characters; gb18030 is a superset of both.
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "big5": ("big5", "cp950", "big5hkscs"),
    "shift_jis": ("shift_jis", "cp932", "shift_jis_2004"),
    "euc_jp": ("euc_jp", "euc_jis_2004"),
    "iso2022_jp": ("iso2022_jp", "iso2022_jp_2", "iso2022_jp_ext", "iso2022_jp_2004"),
    "euc_kr": ("euc_kr", "cp949"),
}
# Text codecs that are escape or punycode schemes, not charsets a sender could mean.
_NOT_CHARSETS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_UTF8_FAMILY = frozenset({"utf-8", "utf-8-sig"})


def decode_text(data: bytes, charset: str | None) -> tuple[str, list[str]]:
    """Decode text bytes from a declared charset, best effort, saying what went wrong."""
    label = charset or "us-ascii"
    codec = charset_codec(label)
    defects: list[str] = []
    if codec is None:
        defects.append(f"unknown_charset:{short_label(label)}")
        primary: tuple[str, ...] = ()
        fallback: tuple[str, ...] = ("utf-8", "cp1252")
    else:
        primary = _SUPERSETS.get(codec, (codec,))
        # A wrong label on UTF-8 text is common; a wrong label on broken UTF-8 is not cp1252.
        fallback = () if codec in _UTF8_FAMILY else ("utf-8", "cp1252")
    for name in primary:
        text = _strict(data, name)
        if text is not None:
            return text, defects
    for name in fallback:
        text = _strict(data, name)
        if text is not None:
            if codec is not None:
                defects.append(f"charset_mismatch:{short_label(label)}")
            return text, defects
    attempts = [data.decode(name, "replace") for name in (*primary, *fallback)]
    defects.append("undecodable_text")
    return min(attempts, key=lambda text: text.count("\ufffd")), defects


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeError:
        return None


def charset_codec(label: str) -> str | None:
    """Return the Python codec for a charset label, or None if it names no text charset."""
    label = label.strip().strip("\"'").lower()
    if not _CHARSET_LABEL.fullmatch(label):
        return None
    name = _LABEL_ALIASES.get(label, label)
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    if codec in _NOT_CHARSETS:
        return None
    try:
        b"a".decode(codec)
    except LookupError:  # bytes-to-bytes codecs such as base64 or zlib
        return None
    except UnicodeError:
        pass
    return codec


def lenient_base64(data: bytes) -> bytes:
    """Decode base64 ignoring junk characters, wrong padding and a truncated last group."""
    clean = _BASE64_NOISE.sub(b"", data)
    remainder = len(clean) % 4
    if remainder == 1:
        clean = clean[:-1]
    elif remainder:
        clean += b"=" * (4 - remainder)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def html_text(markup: str) -> tuple[str, list[str]]:
    if len(markup) > MAX_PARSED_HTML_CHARS:
        return strip_markup(markup), ["large_html"]
    try:
        return html_to_text(markup, strict=True), []
    except Exception:  # noqa: BLE001 - HTMLParser asserts on markup such as "<![x"
        # Linear whatever the markup: regular expressions over hostile HTML are not.
        return strip_markup(markup), ["unparsable_html"]
