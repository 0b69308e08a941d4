"""The MIME tree: raw bytes parsed within the structure limits, nested messages (encoded ones
decoded), the leaf parts in order with IMAP-style section paths, and which leaf is the body.
"""

from __future__ import annotations

import email
import quopri
import re
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy

from triage_text.email.decoding import lenient_base64
from triage_text.email.defects import defect_names, snake_case
from triage_text.email.headers import SINGLE_PART_HEADERS, first_raw, header_defects, raw_headers
from triage_text.email.limits import MAX_LINES, MAX_MULTIPARTS, policy_of
from triage_text.email.parts import (
    Leaf,
    describe,
    header_params,
    structural_type,
    transfer_encoding,
)
from triage_text.email.payload import serialise, subparts
from triage_text.email.result import Collector

# A boundary parameter (RFC 2231 continuations too), not the word in running text.
_BOUNDARY_PARAM = re.compile(rb"boundary\s*(?:\*\d*\*?)?\s*=", re.IGNORECASE)
# A line that may delimit a MIME part: "--" and the boundary, which never starts with a
# space (so a signature "-- " or an SQL comment "-- note" is no part).
_BOUNDARY_LINE = re.compile(rb"\n--\S")


def read_message(
    raw: bytes, policy: EmailPolicy[EmailMessage], out: Collector
) -> tuple[EmailMessage, list[str]]:
    raw, defects = _bounded(raw, out)
    try:
        return email.message_from_bytes(raw, policy=policy), defects
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on absurdly deep nesting
        defects.append(f"mime_parse_failed:{snake_case(type(exc).__name__)}")
    # Headers alone still identify the message; the body then stays one opaque text.
    try:
        return BytesParser(policy=policy).parsebytes(raw, headersonly=True), defects
    except Exception:  # noqa: BLE001 - nothing parses: an empty message still describes it
        return EmailMessage(policy=policy), [*defects, "unparsable_headers"]


def _bounded(raw: bytes, out: Collector) -> tuple[bytes, list[str]]:
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


def nested_message(leaf: Leaf, out: Collector) -> EmailMessage | None:
    payload = subparts(leaf.obj)
    if not payload or not isinstance(payload[0], EmailMessage):
        return None
    inner = payload[0]
    encoding = transfer_encoding(raw_headers(leaf.obj))
    if encoding not in ("base64", "quoted-printable"):
        return inner
    # The parser reads message/rfc822 as a message even when it is encoded; undo that.
    encoded, defects = serialise(inner)
    decoded = lenient_base64(encoded) if encoding == "base64" else quopri.decodestring(encoded)
    reparsed, parse_defects = read_message(decoded, policy_of(inner), out)
    leaf.defects += [*defects, *parse_defects, "encoded_message_rfc822"]
    return reparsed


def leaf_parts(msg: EmailMessage, defects: list[str]) -> list[Leaf]:
    """Return the leaf parts in MIME order, with IMAP-style section paths."""
    leaves: list[Leaf] = []
    stack: list[tuple[EmailMessage, str, tuple[str, ...], bool]] = [(msg, "", (), False)]
    while stack:
        obj, path, alternatives, related_extra = stack.pop()
        children = _children(obj)
        if children is None:
            leaf = Leaf(obj, path or "1", alternatives, related_extra)
            describe(leaf, is_message=obj is msg)
            leaves.append(leaf)
            continue
        if obj is not msg:
            defects += defect_names(obj.defects)
            defects += header_defects(raw_headers(obj), SINGLE_PART_HEADERS)
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
    return [child for child in subparts(obj) if isinstance(child, EmailMessage)]


def _safe_maintype(obj: EmailMessage) -> str:
    return structural_type(obj).split("/", 1)[0]


def _safe_subtype(obj: EmailMessage) -> str:
    return structural_type(obj).partition("/")[2]


def _related_root(obj: EmailMessage, children: list[EmailMessage]) -> int:
    start = header_params(obj, "content-type").get("start")
    if start:
        wanted = start.strip().strip("<>")
        for index, child in enumerate(children):
            content_id = first_raw(raw_headers(child), "content-id") or ""
            if content_id.strip().strip("<>") == wanted:
                return index
    return 0


def choose_body(leaves: list[Leaf]) -> tuple[Leaf | None, set[str]]:
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
