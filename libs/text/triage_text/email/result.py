"""What ``parse_email`` returns, and the collector that gathers one message's documents
within its part and part-boundary budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

PartKind = Literal["body", "attachment", "inline", "signature", "delivery_status"]
"""What a document is to the people who wrote the mail: a message's body, a real attachment, or
one of the parts a mail program adds on its own (an image the HTML shows inline, an S/MIME or
PGP signature, a delivery or read report). Mail rules choose by it (ingest's ``mailrules``)."""

DOCUMENT_KINDS: frozenset[PartKind] = frozenset({"body", "attachment"})
"""The kinds of part that become documents when no mail rule asks for more (ingest's default
rule, and training on ``.eml`` files)."""


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
    kind: PartKind


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """The headers that identify a message and every document it carries."""

    message_id: str | None
    subject: str | None
    sender: str | None
    sender_name: str | None
    """The sender's display name (``Müller, Anna`` of ``"Müller, Anna" <anna@example.com>``)."""
    date: datetime | None
    parts: tuple[ParsedPart, ...]
    defects: tuple[str, ...]
    recipients: tuple[str, ...] = ()
    """The To and Cc addresses, as far as they parse."""


@dataclass(slots=True)
class Collector:
    """The documents of one parse so far, and what it may still spend."""

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
