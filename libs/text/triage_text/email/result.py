"""What ``parse_email`` returns, and the collector that gathers one message's documents
within its part and part-boundary budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


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
    sender_name: str | None
    """The sender's display name (``Müller, Anna`` of ``"Müller, Anna" <anna@example.com>``)."""
    date: datetime | None
    parts: tuple[ParsedPart, ...]
    defects: tuple[str, ...]


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
