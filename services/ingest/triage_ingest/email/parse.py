"""Turn raw email bytes into one body document per message plus its attachments.

Pure and total: no input bytes make it raise. Whatever is wrong with a message (broken
headers, truncated MIME, bad base64, unknown charsets) is reported as a short defect string
and parsing carries on with the best reading it can get.

Bounded: CPython's email package is slow or quadratic on some hostile input (a From header
of 150,000 addresses took 130 s and 1.3 GB; 25,000 tiny MIME parts take minutes; every line
is checked against the boundary of every enclosing multipart), so the work it is given is
capped before it starts:

* each message or part keeps at most ``MAX_HEADERS`` header fields of at most
  ``MAX_HEADER_CHARS`` characters (defects ``too_many_headers``, ``header_too_long``);
* header values are parsed into structured headers only up to ``MAX_PARSED_HEADER_CHARS``
  each and ``PARSE_BUDGET_CHARS`` per message, nested ones included; the rest are read as
  plain text (``header_parse_budget``);
* the parser sees the message only up to its ``BOUNDARY_LINES_PER_PART * max_parts``-th line
  that may delimit a part (``--`` and no space), its ``MAX_MULTIPARTS + 1``-th boundary
  parameter or its ``MAX_LINES``-th line, whichever comes first
  (``mime_parse_failed:too_many_boundaries``, ``…:too_many_multiparts``,
  ``…:too_many_lines``);
* HTML bodies over ``MAX_PARSED_HTML_CHARS`` have their tags stripped instead of being
  parsed (``large_html``).

The raw message itself is kept whole by the caller. Worst cases on hostile input of the
upload size limit (25 MiB) take seconds, not hours (``tests/unit/test_hostile_inputs.py``).
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.policy
import email.utils
import quopri
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.errors import HeaderDefect
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from typing import Final, Literal

from triage_text.markup import html_to_text, strip_markup

__all__ = [
    "BOUNDARY_LINES_PER_PART",
    "MAX_HEADERS",
    "MAX_HEADER_CHARS",
    "MAX_LINES",
    "MAX_MULTIPARTS",
    "MAX_PARSED_HEADER_CHARS",
    "MAX_PARSED_HTML_CHARS",
    "PARSE_BUDGET_CHARS",
    "ParsedMessage",
    "ParsedPart",
    "parse_email",
]

MAX_HEADERS: Final = 1000
"""Header fields kept per message or MIME part; real mail has tens (a long relay chain, ~100)."""
MAX_HEADER_CHARS: Final = 64 * 1024
"""Characters kept of one header field's value."""
MAX_PARSED_HEADER_CHARS: Final = 2048
"""Longest header value given to the structured header parser (~25 µs a character on
hostile input); longer ones are read as plain text, of which the first 256 characters."""
PARSE_BUDGET_CHARS: Final = 64 * 1024
"""Characters of header values parsed into structured headers per message, nested ones
included: about 1.5 s of the structured parser's worst case."""
BOUNDARY_LINES_PER_PART: Final = 4
"""Lines that may delimit a part (``--`` then no space) the parser may see per part kept."""
MAX_MULTIPARTS: Final = 32
"""Multipart containers (``boundary`` parameters) the parser may see; real mail has a few."""
MAX_LINES: Final = 500_000
"""Lines the parser may see: a 30 MiB message of base64 (76-character lines) has 410,000."""
MAX_PARSED_HTML_CHARS: Final = 1024 * 1024
"""HTML bodies longer than this are stripped of tags (linear) instead of parsed (~2 s/MB)."""
_UNPARSED_HEADER_CHARS: Final = 256


class HeaderTooLongDefect(HeaderDefect):
    """A header value was cut to ``MAX_HEADER_CHARS`` characters."""


class TooManyHeadersDefect(HeaderDefect):
    """Header fields past the first ``MAX_HEADERS`` of a message or part were dropped."""


class _BoundedMessage(EmailMessage):
    """An EmailMessage that keeps at most MAX_HEADERS header fields, each cut to a length."""

    def set_raw(self, name: str, value: str) -> None:
        """Store a header as parsed, within the limits (called by the feed parser)."""
        if len(self._headers) >= MAX_HEADERS:  # type: ignore[attr-defined]
            if not any(isinstance(d, TooManyHeadersDefect) for d in self.defects):
                self.defects.append(TooManyHeadersDefect())
            return
        if len(value) > MAX_HEADER_CHARS:
            value = value[:MAX_HEADER_CHARS]
            self.defects.append(HeaderTooLongDefect())
        super().set_raw(name, value)


class _UnparsedHeader(UnstructuredHeader, BaseHeader):
    """A header value read as plain text: what over-long or over-budget values become."""


class _BudgetedHeaders(HeaderRegistry):
    """Turns header values into header objects for one message, within a parse budget.

    The structured parser (addresses, parameters) is slow on hostile input, and the stdlib
    asks for the same Content-Type many times per part, so each value is parsed once.
    """

    def __init__(self, budget: int) -> None:
        """Allow ``budget`` characters of structured parsing in all."""
        super().__init__()
        self._budget = budget
        self._made: dict[tuple[str, str], BaseHeader] = {}
        self.over_budget = False

    def __call__(self, name: str, value: str) -> BaseHeader:
        """Return the header object for ``name: value``, parsed or read as plain text."""
        if len(value) > MAX_PARSED_HEADER_CHARS or len(value) > self._budget:
            self.over_budget = True
            value = value[:_UNPARSED_HEADER_CHARS]
            key = ("", value)
        else:
            key = (name.lower(), value)
        made = self._made.get(key)
        if made is None:
            if key[0]:
                self._budget -= len(value)
                made = super().__call__(name, value)
            else:
                made = _UnparsedHeader(name, value)
            self._made[key] = made
        return made


# The default policy, but messages keep bounded headers (header_factory is per parse).
_POLICY: Final = email.policy.default.clone(message_factory=_BoundedMessage)
# Serialising a nested message must not rewrap its headers: keep what the sender wrote.
_SERIAL_POLICY: Final = _POLICY.clone(refold_source="none")


def _parse_policy() -> EmailPolicy[EmailMessage]:
    """Return the policy for parsing one message: its own header parse budget."""
    return _POLICY.clone(header_factory=_BudgetedHeaders(PARSE_BUDGET_CHARS))


_SINGLE_HEADERS = frozenset(
    {
        "date",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "message-id",
        "in-reply-to",
        "references",
        "subject",
    }
)
_SINGLE_PART_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding"}
)
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
_NESTED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})

_MAX_MEDIA_TYPE_CHARS = 127
# A boundary parameter (RFC 2231 continuations too), not the word in running text.
_BOUNDARY_PARAM = re.compile(rb"boundary\s*(?:\*\d*\*?)?\s*=", re.IGNORECASE)
# A line that may delimit a MIME part: "--" and the boundary, which never starts with a
# space (so a signature "-- " or an SQL comment "-- note" is no part).
_BOUNDARY_LINE = re.compile(rb"\n--\S")
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_CHARSET_LABEL = re.compile(r"[a-z0-9][a-z0-9._:+-]{0,39}")
_SURROGATE = re.compile("[\udc80-\udcff]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_UNSAFE_LABEL = re.compile(r"[^a-z0-9._+-]+")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/]+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
# Starts only where a run of address characters starts: without the lookbehind, a long run
# with no "@" is scanned again from each of its characters (quadratic: 6 s for 32 KB).
_ADDR_SPEC = re.compile(r"(?<![^\s<>()\[\]@,;:\"])[^\s<>()\[\]@,;:\"]+@[^\s<>()\[\]@,;:\"]+")
_QUOTED_PAIR = re.compile(r"\\(.)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

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


@dataclass(frozen=True, slots=True)
class ParsedPart:
    """One document taken from a message: a message's body text or an attachment."""

    part: str
    role: Literal["body", "attachment"]
    parent: str | None
    filename: str | None
    media_type: str
    data: bytes
    defects: tuple[str, ...]
    inline: bool


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """The headers that identify a message and every document it carries."""

    message_id: str | None
    subject: str | None
    sender: str | None
    date: datetime | None
    parts: tuple[ParsedPart, ...]
    defects: tuple[str, ...]


def parse_email(raw: bytes, *, max_parts: int = 200, max_depth: int = 5) -> ParsedMessage:
    """Parse raw RFC 5322 bytes into a body, attachments and defects; never raises on input."""
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1: the body part is always present")
    if max_depth < 0:
        raise ValueError("max_depth must not be negative")
    try:
        return _parse(bytes(raw), max_parts=max_parts, max_depth=max_depth)
    except Exception as exc:  # noqa: BLE001 - last guard: a stdlib bug must not stop the intake
        reason = f"internal_error:{_snake(type(exc).__name__)}"
        body = ParsedPart("body", "body", None, None, "text/plain", b"", ("no_body",), inline=False)
        return ParsedMessage(None, None, None, None, (body,), (reason, "no_body"))


# --- the walk over one message ---------------------------------------------------------------


@dataclass(slots=True)
class _Leaf:
    obj: EmailMessage
    path: str
    alternatives: tuple[str, ...]
    related_extra: bool
    structural: str = "text/plain"
    declared: str | None = None
    filename: str | None = None
    disposition: str | None = None
    charset: str | None = None
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


@dataclass(slots=True)
class _Collector:
    max_parts: int
    max_depth: int
    boundary_lines: int
    """Lines starting with ``--`` the parser may still be given (nested reparses included)."""
    parts: list[ParsedPart] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    full: bool = False

    def add(self, part: ParsedPart) -> None:
        if len(self.parts) < self.max_parts:
            self.parts.append(part)
        elif not self.full:
            self.full = True
            self.defects.append("too_many_parts")


def _parse(raw: bytes, *, max_parts: int, max_depth: int) -> ParsedMessage:
    policy = _parse_policy()
    out = _Collector(
        max_parts=max_parts,
        max_depth=max_depth,
        boundary_lines=BOUNDARY_LINES_PER_PART * max_parts,
    )
    msg, parse_defects = _message_from_bytes(raw, policy, out)
    headers = _raw_headers(msg)
    defects = [*parse_defects]
    message_id = _message_id(headers, defects)
    subject = _subject(headers, defects)
    sender = _sender(msg, headers, defects)
    date = _date(headers, defects)
    defects += _walk_message(msg, out, prefix="", parent=None, depth=0, wrapper=None)
    factory = policy.header_factory
    if isinstance(factory, _BudgetedHeaders) and factory.over_budget:
        defects.append("header_parse_budget")
    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        sender=sender,
        date=date,
        parts=tuple(out.parts),
        defects=_unique([*defects, *out.defects]),
    )


def _policy_of(obj: EmailMessage) -> EmailPolicy[EmailMessage]:
    """Return the policy a parsed message was parsed with (this parse's budget)."""
    policy = obj.policy
    return policy if isinstance(policy, EmailPolicy) else _parse_policy()


def _nth(raw: bytes, needle: bytes, n: int) -> int:
    """Return where the ``n``-th occurrence of ``needle`` starts, or -1 if there are fewer."""
    if raw.count(needle) < n:
        return -1
    position = -1
    for _ in range(n):
        position = raw.find(needle, position + 1)
    return position


def _nth_match(raw: bytes, pattern: re.Pattern[bytes], n: int) -> int:
    """Return where the ``n``-th match of ``pattern`` starts, or -1 if there are fewer."""
    for count, match in enumerate(pattern.finditer(raw), 1):
        if count == n:
            return match.start()
    return -1


def _bounded(raw: bytes, out: _Collector) -> tuple[bytes, list[str]]:
    """Cut ``raw`` where the stdlib parser would start to take too long; say why.

    It spends about a millisecond on each MIME part it builds (minutes for a message of tiny
    parts, most of which would be dropped anyway), and checks every line against the
    boundary of every multipart it is nested in (lines x depth).
    """
    # At least one, so that a message out of budget still keeps its headers and first text.
    cuts = {
        "too_many_boundaries": _nth_match(raw, _BOUNDARY_LINE, max(out.boundary_lines, 1)),
        "too_many_multiparts": _nth_match(raw, _BOUNDARY_PARAM, MAX_MULTIPARTS + 1),
        "too_many_lines": _nth(raw, b"\n", MAX_LINES),
    }
    found = sorted((at, reason) for reason, at in cuts.items() if at >= 0)
    defects = []
    if found:
        at, reason = found[0]
        # Up to the start of the line the cut falls in, so no line is parsed half.
        raw = raw[: raw.rfind(b"\n", 0, at + 1) + 1]
        # The vocabulary of a parse that gave up: the structure past the cut is not read.
        defects.append(f"mime_parse_failed:{reason}")
    out.boundary_lines = max(out.boundary_lines - len(_BOUNDARY_LINE.findall(raw)), 0)
    return raw, defects


def _message_from_bytes(
    raw: bytes, policy: EmailPolicy[EmailMessage], out: _Collector
) -> tuple[EmailMessage, list[str]]:
    raw, defects = _bounded(raw, out)
    try:
        return email.message_from_bytes(raw, policy=policy), defects
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on absurdly deep nesting
        defects.append(f"mime_parse_failed:{_snake(type(exc).__name__)}")
    # Headers alone still identify the message; the body then stays one opaque text.
    try:
        return BytesParser(policy=policy).parsebytes(raw, headersonly=True), defects
    except Exception:  # noqa: BLE001 - nothing parses: an empty message still describes it
        return EmailMessage(policy=policy), [*defects, "unparsable_headers"]


def _walk_message(
    msg: EmailMessage,
    out: _Collector,
    *,
    prefix: str,
    parent: str | None,
    depth: int,
    wrapper: _Leaf | None,
) -> list[str]:
    """Emit the body and attachments of ``msg``; return its message-level defects."""
    headers = _raw_headers(msg)
    # Snapshot before any decoding: payload defects found later belong to the part.
    defects = _defect_names(msg.defects)
    defects += _header_defects(headers, _SINGLE_HEADERS | _SINGLE_PART_HEADERS)
    if wrapper is not None:
        # A nested message has no ParsedMessage of its own: its header problems go on its body.
        _message_id(headers, defects)
        _subject(headers, defects)
        _sender(msg, headers, defects)
        _date(headers, defects)
    leaves = _leaves(msg, defects)
    body, skipped = _choose_body(leaves)
    body_id = f"{prefix}body"
    text, body_defects = _body_text(body)
    if "no_body" in body_defects:
        defects.append("no_body")
    if wrapper is not None:
        body_defects = [*wrapper.defects, *defects, *body_defects]
    out.add(
        ParsedPart(
            part=body_id,
            role="body",
            parent=parent,
            filename=wrapper.filename if wrapper is not None else None,
            media_type="text/plain",
            data=text.encode("utf-8", "replace"),
            defects=_unique(body_defects),
            inline=body.inline if body is not None else False,
        )
    )
    for leaf in leaves:
        if out.full:
            break
        if leaf is body or leaf.path in skipped:
            continue
        inner = _nested_message(leaf, out) if leaf.structural in _NESTED_MESSAGE_TYPES else None
        if inner is None:
            out.add(_attachment(leaf, prefix=prefix, parent=body_id))
        elif depth >= out.max_depth:
            out.defects.append("max_depth_exceeded")
            out.add(_opaque_message(leaf, inner, prefix=prefix, parent=body_id))
        else:
            nested_prefix = f"{prefix}{leaf.path}/"
            _walk_message(
                inner, out, prefix=nested_prefix, parent=body_id, depth=depth + 1, wrapper=leaf
            )
    return defects


def _leaves(msg: EmailMessage, defects: list[str]) -> list[_Leaf]:
    """Return the leaf parts in MIME order, with IMAP-style section paths."""
    leaves: list[_Leaf] = []
    stack: list[tuple[EmailMessage, str, tuple[str, ...], bool]] = [(msg, "", (), False)]
    while stack:
        obj, path, alternatives, related_extra = stack.pop()
        children = _children(obj)
        if children is None:
            leaf = _Leaf(obj, path or "1", alternatives, related_extra)
            _describe(leaf, is_message=obj is msg)
            leaves.append(leaf)
            continue
        if obj is not msg:
            defects += _defect_names(obj.defects)
            defects += _header_defects(_raw_headers(obj), _SINGLE_PART_HEADERS)
        subtype = _safe_subtype(obj)
        inner_alternatives = (*alternatives, path) if subtype == "alternative" else alternatives
        root = _related_root(obj, children) if subtype == "related" else None
        entries = [
            (
                child,
                f"{path}.{index}" if path else str(index),
                inner_alternatives,
                related_extra or (root is not None and index - 1 != root),
            )
            for index, child in enumerate(children, 1)
        ]
        stack.extend(reversed(entries))
    return leaves


def _children(obj: EmailMessage) -> list[EmailMessage] | None:
    if not obj.is_multipart() or _safe_maintype(obj) != "multipart":
        return None
    return [child for child in _subparts(obj) if isinstance(child, EmailMessage)]


def _safe_maintype(obj: EmailMessage) -> str:
    return _structural_type(obj).split("/", 1)[0]


def _safe_subtype(obj: EmailMessage) -> str:
    return _structural_type(obj).partition("/")[2]


def _structural_type(obj: EmailMessage) -> str:
    """Return the type the stdlib parser used to shape the tree (defaults included)."""
    try:
        return obj.get_content_type()
    except Exception:  # noqa: BLE001 - header parsing of hostile input has raised before
        return "text/plain"


def _related_root(obj: EmailMessage, children: list[EmailMessage]) -> int:
    start = _params(obj, "content-type").get("start")
    if start:
        wanted = start.strip().strip("<>")
        for index, child in enumerate(children):
            content_id = _first_raw(_raw_headers(child), "content-id") or ""
            if content_id.strip().strip("<>") == wanted:
                return index
    return 0


def _describe(leaf: _Leaf, *, is_message: bool) -> None:
    """Fill in what the body choice and the attachment record need to know about a leaf."""
    obj = leaf.obj
    headers = _raw_headers(obj)
    if not is_message:
        # The message object's own defects are message-level; a part's are its own.
        leaf.defects += _defect_names(obj.defects)
        leaf.defects += _header_defects(headers, _SINGLE_PART_HEADERS)
    leaf.structural = _structural_type(obj)
    if leaf.structural.startswith("multipart/"):
        # A multipart whose boundary never shows up is one undivided text.
        leaf.structural = "text/plain"
    raw_type = _first_raw(headers, "content-type")
    if raw_type is not None:
        base = raw_type.split(";", 1)[0].strip().lower()
        # Events carry at most 127 characters of media type; longer is no real type.
        if len(base) <= _MAX_MEDIA_TYPE_CHARS and _MEDIA_TYPE.fullmatch(base):
            leaf.declared = base
        else:
            leaf.defects.append("invalid_content_type")
    raw_disposition = _first_raw(headers, "content-disposition")
    if raw_disposition is not None:
        leaf.disposition = raw_disposition.split(";", 1)[0].strip().lower() or None
    leaf.filename = _filename(obj, raw_disposition, raw_type)
    charset = _params(obj, "content-type").get("charset")
    leaf.charset = charset.strip().strip("\"'").lower() if charset else None
    encoding = _transfer_encoding(headers)
    if encoding and encoding not in _KNOWN_TRANSFER_ENCODINGS:
        leaf.defects.append(f"unknown_transfer_encoding:{_label(encoding)}")


def _choose_body(leaves: list[_Leaf]) -> tuple[_Leaf | None, set[str]]:
    """Return the body leaf and the paths of its alternatives, which are no attachments."""
    # Like get_body(("plain", "html")), except that a later text part (a list footer, say)
    # cannot outrank the first body, and a text part with a filename is never the body.
    candidates = [leaf for leaf in leaves if leaf.is_body_candidate]
    if not candidates:
        return None, set()
    first = candidates[0]
    if not first.alternatives:
        return first, set()
    # The first body's alternatives are versions of the same text, not separate documents.
    group_id = first.alternatives[-1]
    group = [leaf for leaf in candidates if group_id in leaf.alternatives]
    chosen = next((leaf for leaf in group if leaf.structural == "text/plain"), first)
    return chosen, {leaf.path for leaf in group if leaf is not chosen}


# --- bodies and attachments -----------------------------------------------------------------


def _body_text(leaf: _Leaf | None) -> tuple[str, list[str]]:
    if leaf is None:
        return "", ["no_body"]
    defects = [*leaf.defects]
    data, decode_defects = _payload_bytes(leaf.obj)
    defects += decode_defects
    text, text_defects = _decode_text(data, leaf.charset)
    defects += text_defects
    if leaf.structural == "text/html":
        text, html_defects = _html_text(text)
        defects += html_defects
    text = _LINE_BREAK.sub("\n", text.removeprefix("\ufeff"))
    if not data.strip():
        defects.append("no_body")
    return text, defects


def _attachment(leaf: _Leaf, *, prefix: str, parent: str) -> ParsedPart:
    data, defects = _payload_bytes(leaf.obj)
    return ParsedPart(
        part=f"{prefix}{leaf.path}",
        role="attachment",
        parent=parent,
        filename=leaf.filename,
        media_type=leaf.declared or "application/octet-stream",
        data=data,
        defects=_unique([*leaf.defects, *defects]),
        inline=leaf.inline,
    )


def _opaque_message(leaf: _Leaf, inner: EmailMessage, *, prefix: str, parent: str) -> ParsedPart:
    data, defects = _serialise(inner)
    declared = leaf.declared if leaf.declared in _NESTED_MESSAGE_TYPES else None
    return ParsedPart(
        part=f"{prefix}{leaf.path}",
        role="attachment",
        parent=parent,
        filename=leaf.filename,
        media_type=declared or "message/rfc822",
        data=data,
        defects=_unique([*leaf.defects, *defects, "max_depth_exceeded"]),
        inline=leaf.inline,
    )


def _nested_message(leaf: _Leaf, out: _Collector) -> EmailMessage | None:
    payload = _subparts(leaf.obj)
    if not payload or not isinstance(payload[0], EmailMessage):
        return None
    inner = payload[0]
    encoding = _transfer_encoding(_raw_headers(leaf.obj))
    if encoding not in ("base64", "quoted-printable"):
        return inner
    # The parser reads message/rfc822 as a message even when it is encoded; undo that.
    encoded, defects = _serialise(inner)
    decoded = _lenient_base64(encoded) if encoding == "base64" else quopri.decodestring(encoded)
    reparsed, parse_defects = _message_from_bytes(decoded, _policy_of(inner), out)
    leaf.defects += [*defects, *parse_defects, "encoded_message_rfc822"]
    return reparsed


def _payload_bytes(obj: EmailMessage) -> tuple[bytes, list[str]]:
    """Return the transfer-decoded payload and the defects decoding it produced."""
    before = len(obj.defects)
    try:
        data = obj.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - transfer decoding of hostile input; keep the raw bytes
        return _raw_payload(obj), ["undecodable_payload"]
    defects = _defect_names(obj.defects[before:])
    if not isinstance(data, bytes):
        # message/delivery-status and friends hold header blocks, not a payload string.
        return _serialised_payload(obj), defects
    if "invalid_base64_length" in defects:
        # The stdlib then hands back the base64 text itself; salvage what decodes.
        data = _lenient_base64(_raw_payload(obj))
    return data, defects


def _subparts(obj: EmailMessage) -> list[object]:
    """Return the sub-messages of a multipart or message/* part ([] for other parts)."""
    if not obj.is_multipart():
        return []
    payload = obj.get_payload()
    return list(payload) if isinstance(payload, list) else []


def _raw_payload(obj: EmailMessage) -> bytes:
    """Return a leaf's payload as transmitted; 8-bit bytes may come back replaced."""
    if obj.is_multipart():
        return b""
    try:
        # Without decode=True the stdlib looks the charset up, which can raise.
        payload = obj.get_payload()
    except Exception:  # noqa: BLE001 - e.g. ValueError for a charset with a NUL in it
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _serialised_payload(obj: EmailMessage) -> bytes:
    payload = _subparts(obj)
    if not payload:
        return _raw_payload(obj)
    return b"".join(_serialise(item)[0] for item in payload if isinstance(item, EmailMessage))


def _serialise(obj: EmailMessage) -> tuple[bytes, list[str]]:
    try:
        return obj.as_bytes(policy=_SERIAL_POLICY), []
    except Exception:  # noqa: BLE001 - the generator can trip over what the parser accepted
        return _raw_payload(obj), ["unserialisable_message"]


def _lenient_base64(data: bytes) -> bytes:
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


def _html_text(markup: str) -> tuple[str, list[str]]:
    if len(markup) > MAX_PARSED_HTML_CHARS:
        return strip_markup(markup), ["large_html"]
    try:
        return html_to_text(markup, strict=True), []
    except Exception:  # noqa: BLE001 - HTMLParser asserts on markup such as "<![x"
        # Linear whatever the markup: regular expressions over hostile HTML are not.
        return strip_markup(markup), ["unparsable_html"]


# --- charsets -------------------------------------------------------------------------------


def _decode_text(data: bytes, charset: str | None) -> tuple[str, list[str]]:
    """Decode text bytes from a declared charset, best effort, saying what went wrong."""
    label = charset or "us-ascii"
    codec = _codec_for(label)
    defects: list[str] = []
    if codec is None:
        defects.append(f"unknown_charset:{_label(label)}")
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
                defects.append(f"charset_mismatch:{_label(label)}")
            return text, defects
    attempts = [data.decode(name, "replace") for name in (*primary, *fallback)]
    defects.append("undecodable_text")
    return min(attempts, key=lambda text: text.count("\ufffd")), defects


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeError:
        return None


def _codec_for(label: str) -> str | None:
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


# --- headers --------------------------------------------------------------------------------


def _raw_headers(obj: EmailMessage) -> list[tuple[str, str]]:
    """Return the headers as the sender wrote them (unfolded), in order."""
    return [(name.lower(), _LINE_BREAK.sub("", str(value))) for name, value in obj.raw_items()]


def _first_raw(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key == name), None)


def _header_defects(headers: list[tuple[str, str]], single: frozenset[str]) -> list[str]:
    defects = [f"non_ascii_header:{_label(name)}" for name, value in headers if _has_raw(value)]
    counts = Counter(name for name, _ in headers)
    # Iterate the Counter, not the set: defect order must not depend on hash seeds.
    defects += [
        f"duplicate_header:{name}" for name, n in counts.items() if name in single and n > 1
    ]
    return list(dict.fromkeys(defects))


def _message_id(headers: list[tuple[str, str]], defects: list[str]) -> str | None:
    value = _first_raw(headers, "message-id")
    if value is None:
        return None
    value = _repair_raw(value).strip()
    match = _ANGLE_ID.search(value)
    message_id = (match[1] if match else value).strip()
    if match is None or not message_id or " " in message_id:
        defects.append("invalid_message_id")
    return _without_controls(message_id, "message_id", defects) or None


def _subject(headers: list[tuple[str, str]], defects: list[str]) -> str | None:
    value = _first_raw(headers, "subject")
    if value is None:
        return None
    decoded, word_defects = _decode_words(_repair_raw(value))
    defects += [f"subject:{defect}" for defect in word_defects]
    return _without_controls(decoded, "subject", defects).strip()


def _sender(msg: EmailMessage, headers: list[tuple[str, str]], defects: list[str]) -> str | None:
    value = _first_raw(headers, "from")
    if value is None:
        defects.append("missing_from")
        return None
    address = _parsed_address(msg)
    if address is not None:
        return _without_controls(_repair_raw(address), "from", defects)
    match = _ADDR_SPEC.search(_repair_raw(value))
    if match is None:
        defects.append("from_without_address")
        return None
    defects.append("invalid_from")
    return _without_controls(match[0], "from", defects)


def _without_controls(value: str, name: str, defects: list[str]) -> str:
    """Replace control characters (NUL among them: PostgreSQL text refuses it) by spaces."""
    cleaned = _CONTROL.sub(" ", value)
    if cleaned != value:
        defects.append(f"control_characters:{name}")
    return cleaned


def _parsed_address(msg: EmailMessage) -> str | None:
    try:
        header = msg["from"]
        addresses = getattr(header, "addresses", ())
        for address in addresses:
            if getattr(address, "username", "") and getattr(address, "domain", ""):
                spec = address.addr_spec
                return spec if isinstance(spec, str) else None
    except Exception:  # noqa: BLE001 - CPython's address parser has raised on hostile lists
        return None
    return None


def _date(headers: list[tuple[str, str]], defects: list[str]) -> datetime | None:
    value = _first_raw(headers, "date")
    if value is None:
        defects.append("missing_date")
        return None
    value = _repair_raw(value).strip()
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("invalid_date")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 reads "-0000" as UTC with the sender's zone unknown; anything else is a guess.
        if not value.endswith("-0000"):
            defects.append("date_without_timezone")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _transfer_encoding(headers: list[tuple[str, str]]) -> str:
    value = _first_raw(headers, "content-transfer-encoding") or ""
    return value.split(";", 1)[0].strip().lower()


def _params(obj: EmailMessage, name: str) -> Mapping[str, str]:
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


_RAW_PARAM = {
    key: re.compile(rf"(?:^|;)\s*{key}\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^;]*))", re.IGNORECASE)
    for key in ("filename", "name")
}


def _param_value(obj: EmailMessage, header: str, param: str, raw: str | None) -> str | None:
    if raw is None:
        return None
    match = _RAW_PARAM[param].search(raw)
    literal: str | None = None
    if match is not None:
        quoted = match[1]
        literal = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else match[2].strip()
    if literal and _ENCODED_WORD.search(literal):
        # RFC 2047 in a parameter is forbidden yet ubiquitous; decode it with our charsets.
        return _decode_words(_repair_raw(literal))[0]
    value = _params(obj, header).get(param)
    if value:
        return _LINE_BREAK.sub("", _repair_raw(value))
    return _repair_raw(literal) if literal else None


def _decode_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words, joining adjacent ones so split characters survive."""
    out: list[str] = []
    defects: list[str] = []
    pending = b""
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            text, text_defects = _decode_text(pending, pending_charset)
            out.append(text)
            defects.extend(text_defects)
        pending, pending_charset = b"", None

    for match in _ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        if pending_charset is None or gap.strip():
            flush()
            out.append(gap)
        charset = match[1].split("*", 1)[0].lower()
        data = _word_bytes(match[2].lower(), match[3])
        if data is None:
            flush()
            out.append(match[0])
            defects.append("undecodable_encoded_word")
        elif charset == pending_charset:
            pending += data
        else:
            flush()
            pending, pending_charset = data, charset
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out), defects


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if encoding == "b":
        return _lenient_base64(raw)
    return binascii.a2b_qp(raw, header=True)


def _has_raw(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def _repair_raw(value: str) -> str:
    """Turn raw 8-bit header bytes (kept as surrogates by the parser) into text."""
    if not _has_raw(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return value.encode("ascii", "surrogateescape").decode("cp1252")
    except UnicodeError:
        return data.decode("utf-8", "replace")


# --- defect names ---------------------------------------------------------------------------


def _defect_names(defects: Iterable[object]) -> list[str]:
    return [_snake(type(defect).__name__.removesuffix("Defect")) for defect in defects]


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower() or "defect"


def _label(value: str) -> str:
    """Return a short, printable form of sender-supplied text for use inside a defect."""
    return _UNSAFE_LABEL.sub("_", value.strip().lower())[:40] or "_"


def _unique(defects: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(defects))
