"""``parse_email``: raw RFC 5322 bytes to one body document per message (nested ones too) plus
its attachments, with defects instead of exceptions. Pure, total and bounded.
"""

from __future__ import annotations

from email.message import EmailMessage

from triage_text.email.decoding import LINE_BREAK, decode_text, html_text
from triage_text.email.defects import defect_names, snake_case, unique
from triage_text.email.headers import (
    SINGLE_HEADERS,
    SINGLE_PART_HEADERS,
    header_defects,
    raw_headers,
    read_date,
    read_message_id,
    read_recipients,
    read_sender,
    read_sender_name,
    read_subject,
)
from triage_text.email.limits import BOUNDARY_LINES_PER_PART, BudgetedHeaders, parse_policy
from triage_text.email.mime import choose_body, leaf_parts, nested_message, read_message
from triage_text.email.parts import Leaf
from triage_text.email.payload import payload_bytes, serialise
from triage_text.email.result import Collector, ParsedMessage, ParsedPart
from triage_text.mediatype import SNIFF_BYTES, UNTYPED, decide_media_type, with_charset

EMAIL_MEDIA_TYPE = "message/rfc822"
"""The media type of a whole email (``.eml``): parsed into documents, never one itself."""

_NESTED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})


def parse_email(raw: bytes, *, max_parts: int = 200, max_depth: int = 5) -> ParsedMessage:
    """Parse raw RFC 5322 bytes into a body, attachments and defects; never raises on input."""
    if max_parts < 1:
        raise ValueError("max_parts must be at least 1: the body part is always present")
    if max_depth < 0:
        raise ValueError("max_depth must not be negative")
    try:
        return _parse(bytes(raw), max_parts=max_parts, max_depth=max_depth)
    except Exception as exc:  # noqa: BLE001 - last guard: a stdlib bug must not stop the intake
        reason = f"internal_error:{snake_case(type(exc).__name__)}"
        body = ParsedPart(
            "body", "body", None, None, "text/plain", b"", ("no_body",), inline=False, kind="body"
        )
        return ParsedMessage(None, None, None, None, None, (body,), (reason, "no_body"))


def _parse(raw: bytes, *, max_parts: int, max_depth: int) -> ParsedMessage:
    policy = parse_policy()
    out = Collector(
        max_parts=max_parts,
        max_depth=max_depth,
        boundary_lines=BOUNDARY_LINES_PER_PART * max_parts,
    )
    msg, parse_defects = read_message(raw, policy, out)
    headers = raw_headers(msg)
    defects = [*parse_defects]
    message_id = read_message_id(headers, defects)
    subject = read_subject(headers, defects)
    sender = read_sender(msg, headers, defects)
    sender_name = read_sender_name(msg, defects) if sender is not None else None
    date = read_date(headers, defects)
    defects += _walk_message(msg, out, prefix="", parent=None, depth=0, wrapper=None)
    factory = policy.header_factory
    if isinstance(factory, BudgetedHeaders) and factory.over_budget:
        defects.append("header_parse_budget")
    return ParsedMessage(
        message_id=message_id,
        subject=subject,
        sender=sender,
        sender_name=sender_name,
        date=date,
        parts=tuple(out.parts),
        defects=unique([*defects, *out.defects]),
        recipients=read_recipients(msg),
    )


def _walk_message(
    msg: EmailMessage,
    out: Collector,
    *,
    prefix: str,
    parent: str | None,
    depth: int,
    wrapper: Leaf | None,
) -> list[str]:
    """Emit the body and attachments of ``msg``; return its message-level defects."""
    headers = raw_headers(msg)
    # Snapshot before any decoding: payload defects found later belong to the part.
    defects = defect_names(msg.defects)
    defects += header_defects(headers, SINGLE_HEADERS | SINGLE_PART_HEADERS)
    if wrapper is not None:
        # A nested message has no ParsedMessage of its own: its header problems go on its body.
        read_message_id(headers, defects)
        read_subject(headers, defects)
        read_sender(msg, headers, defects)
        read_date(headers, defects)
    leaves = leaf_parts(msg, defects)
    body, skipped = choose_body(leaves)
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
            defects=unique(body_defects),
            inline=body.inline if body is not None else False,
            kind="body",
        )
    )
    for leaf in leaves:
        if out.full:
            break
        if leaf is body or leaf.path in skipped:
            continue
        inner = nested_message(leaf, out) if leaf.structural in _NESTED_MESSAGE_TYPES else None
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


def _body_text(leaf: Leaf | None) -> tuple[str, list[str]]:
    if leaf is None:
        return "", ["no_body"]
    defects = [*leaf.defects]
    data, decode_defects = payload_bytes(leaf.obj)
    defects += decode_defects
    text, text_defects = decode_text(data, leaf.charset)
    defects += text_defects
    if leaf.structural == "text/html":
        text, html_defects = html_text(text)
        defects += html_defects
    text = LINE_BREAK.sub("\n", text.removeprefix("\ufeff"))
    if not data.strip():
        defects.append("no_body")
    return text, defects


def _attachment(leaf: Leaf, *, prefix: str, parent: str) -> ParsedPart:
    data, defects = payload_bytes(leaf.obj)
    # Typed as an upload would be: a PDF sent as application/octet-stream is a PDF.
    media_type = decide_media_type(leaf.declared, leaf.filename, data[:SNIFF_BYTES]) or UNTYPED
    return ParsedPart(
        part=f"{prefix}{leaf.path}",
        role="attachment",
        parent=parent,
        filename=leaf.filename,
        media_type=with_charset(media_type, leaf.charset),
        data=data,
        defects=unique([*leaf.defects, *defects]),
        inline=leaf.inline,
        kind=leaf.kind,
    )


def _opaque_message(leaf: Leaf, inner: EmailMessage, *, prefix: str, parent: str) -> ParsedPart:
    data, defects = serialise(inner)
    declared = leaf.declared if leaf.declared in _NESTED_MESSAGE_TYPES else None
    return ParsedPart(
        part=f"{prefix}{leaf.path}",
        role="attachment",
        parent=parent,
        filename=leaf.filename,
        media_type=declared or "message/rfc822",
        data=data,
        defects=unique([*leaf.defects, *defects, "max_depth_exceeded"]),
        inline=leaf.inline,
        kind="attachment",
    )
