"""What a leaf MIME part is: its structural and declared media type, disposition, file name
(RFC 2231 and the RFC 2047 senders use anyway), charset and transfer encoding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage

from triage_text.email.decoding import LINE_BREAK
from triage_text.email.defects import defect_names, short_label
from triage_text.email.headers import (
    ENCODED_WORD,
    SINGLE_PART_HEADERS,
    decode_words,
    first_raw,
    header_defects,
    raw_headers,
    repair_raw,
)
from triage_text.email.params import written_param
from triage_text.email.result import PartKind

_BODY_TYPES = frozenset({"text/plain", "text/html"})
_KNOWN_TRANSFER_ENCODINGS = frozenset(
    {
        "7bit",
        "8bit",
        "binary",
        "base64",
        "quoted-printable",
        "x-uuencode",
        "uuencode",
        "uue",
        "x-uue",
    }
)
# Parts a mail program adds on its own, which are documents only when a mail rule asks.
_SIGNATURE_TYPES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)
_SIGNATURE_NAMES = frozenset({"smime.p7s", "signature.asc"})
_DELIVERY_STATUS_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/disposition-notification",
        "message/global-disposition-notification",
        "text/rfc822-headers",
        "message/global-headers",
    }
)
_MAX_MEDIA_TYPE_CHARS = 127
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")


@dataclass(slots=True)
class Leaf:
    """A part with no sub-parts, at its IMAP-style section path, as ``describe`` found it."""

    obj: EmailMessage
    path: str
    alternatives: tuple[str, ...]
    related_extra: bool
    structural: str = "text/plain"
    declared: str | None = None
    filename: str | None = None
    disposition: str | None = None
    charset: str | None = None
    content_id: str | None = None
    defects: list[str] = field(default_factory=list)

    @property
    def is_body_candidate(self) -> bool:
        return (
            self.structural in _BODY_TYPES
            and self.filename is None
            and self.disposition in (None, "inline")
            and not self.related_extra
        )

    @property
    def inline(self) -> bool:
        # Images referenced from an HTML body often carry no disposition at all.
        return self.disposition == "inline" or (self.disposition is None and self.related_extra)

    @property
    def kind(self) -> PartKind:
        """What this part is as an attachment (see ``PartKind``)."""
        types = {self.structural, self.declared}
        if types & _DELIVERY_STATUS_TYPES:
            return "delivery_status"
        name = (self.filename or "").strip().lower()
        if types & _SIGNATURE_TYPES or name in _SIGNATURE_NAMES:
            return "signature"
        if self.disposition == "attachment":
            return "attachment"
        image = any(t is not None and t.startswith("image/") for t in types)
        # Referenced from an HTML body (by Content-ID or by sitting in its multipart/related).
        referenced = self.content_id is not None or self.related_extra
        # A PDF sent "inline" without a Content-ID (Apple Mail does) is a real attachment.
        if (image and (self.inline or referenced)) or (self.inline and referenced):
            return "inline"
        return "attachment"


def describe(leaf: Leaf, *, is_message: bool) -> None:
    """Fill in what the body choice and the attachment record need to know about a leaf."""
    obj = leaf.obj
    headers = raw_headers(obj)
    if not is_message:
        # The message object's own defects are message-level; a part's are its own.
        leaf.defects += defect_names(obj.defects)
        leaf.defects += header_defects(headers, SINGLE_PART_HEADERS)
    leaf.structural = structural_type(obj)
    if leaf.structural.startswith("multipart/"):
        # A multipart whose boundary never shows up is one undivided text.
        leaf.structural = "text/plain"
    raw_type = first_raw(headers, "content-type")
    if raw_type is not None:
        base = raw_type.split(";", 1)[0].strip().lower()
        # Events carry at most 127 characters of media type; longer is no real type.
        if len(base) <= _MAX_MEDIA_TYPE_CHARS and _MEDIA_TYPE.fullmatch(base):
            leaf.declared = base
        else:
            leaf.defects.append("invalid_content_type")
    raw_disposition = first_raw(headers, "content-disposition")
    if raw_disposition is not None:
        leaf.disposition = raw_disposition.split(";", 1)[0].strip().lower() or None
    leaf.filename = _filename(obj, raw_disposition, raw_type)
    content_id = (first_raw(headers, "content-id") or "").strip().strip("<>").strip()
    leaf.content_id = content_id or None
    charset = header_params(obj, "content-type").get("charset")
    leaf.charset = charset.strip().strip("\"'").lower() if charset else None
    encoding = transfer_encoding(headers)
    if encoding and encoding not in _KNOWN_TRANSFER_ENCODINGS:
        leaf.defects.append(f"unknown_transfer_encoding:{short_label(encoding)}")


def structural_type(obj: EmailMessage) -> str:
    """Return the type the stdlib parser used to shape the tree (defaults included)."""
    try:
        return obj.get_content_type()
    except Exception:  # noqa: BLE001 - header parsing of hostile input has raised before
        return "text/plain"


def transfer_encoding(headers: list[tuple[str, str]]) -> str:
    value = first_raw(headers, "content-transfer-encoding") or ""
    return value.split(";", 1)[0].strip().lower()


def header_params(obj: EmailMessage, name: str) -> Mapping[str, str]:
    """Return a MIME header's parameters, RFC 2231 decoded by the modern header parser."""
    try:
        params = getattr(obj[name], "params", None)
    except Exception:  # noqa: BLE001 - header parsing of hostile input has raised before
        return {}
    if not isinstance(params, Mapping):
        return {}
    return {str(key): value for key, value in params.items() if isinstance(value, str)}


def _filename(obj: EmailMessage, raw_disposition: str | None, raw_type: str | None) -> str | None:
    for header, param, raw in (
        ("content-disposition", "filename", raw_disposition),
        ("content-type", "name", raw_type),
    ):
        name = _param_value(obj, header, param, raw)
        if name:
            return name
    return None


def _param_value(obj: EmailMessage, header: str, param: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    written = written_param(raw, param)
    literal = written.value if written is not None else None
    if literal and ENCODED_WORD.search(literal):
        # RFC 2047 in a parameter is forbidden yet ubiquitous; decode it with our charsets.
        return decode_words(repair_raw(literal))[0]
    if literal and written is not None and not written.quoted:
        # Unquoted, it runs to the next ";": the stdlib would cut it at a space or "=".
        return repair_raw(literal)
    value = header_params(obj, header).get(param)
    if value:
        return LINE_BREAK.sub("", repair_raw(value))
    return repair_raw(literal) if literal else None
