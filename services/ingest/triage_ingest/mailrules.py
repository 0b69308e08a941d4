"""Mail rules: which of a mail's parts become documents, with what metadata, and what the IMAP
connector does with the mail afterwards. The first rule that matches wins; pure, no I/O.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from triage_contracts.events import MAX_METADATA_ITEMS, MetadataKey, MetadataValue
from triage_text.email.result import DOCUMENT_KINDS, ParsedMessage, ParsedPart, PartKind

QUEUE_HINT_KEY = "queue_hint"
RULE_KEY = "mail_rule"
"""Metadata keys a rule sets itself: the hint it gives and its own name."""

RULE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class PostProcess(StrEnum):
    """What the IMAP connector does to a message once it is ingested."""

    LEAVE = "leave"
    FLAG = "flag"
    MOVE = "move"
    DELETE = "delete"


class PartsChoice(StrEnum):
    """Which of a mail's parts a rule makes documents of."""

    BODY = "body"
    ATTACHMENTS = "attachments"
    BOTH = "both"


Glob = Annotated[str, Field(min_length=1, max_length=500)]


class MailRule(BaseModel):
    """Match a mail (every condition given must hold) and say what becomes of it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=RULE_NAME, description="Recorded as the documents' `mail_rule`.")
    mailboxes: list[str] | None = Field(
        default=None, description="Mailboxes the rule applies to; none given: all."
    )
    from_: Glob | None = Field(default=None, alias="from", description="Sender address glob.")
    to: Glob | None = Field(default=None, description="Glob any To or Cc address must match.")
    subject: Glob | None = Field(default=None, description="Glob the whole subject must match.")
    attachment_name: Glob | None = Field(
        default=None,
        description="Glob some attachment's file name must match; only those become documents.",
    )
    min_age_days: float | None = Field(default=None, ge=0)
    max_age_days: float | None = Field(default=None, ge=0)
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict)
    queue_hint: MetadataValue | None = Field(
        default=None, min_length=1, description="Kept as the documents' `queue_hint` metadata."
    )
    parts: PartsChoice = PartsChoice.BOTH
    include_inline: bool = False
    include_signatures: bool = False
    include_delivery_status: bool = False
    post_process: PostProcess | None = Field(
        default=None, description="Instead of the account's `post_process`."
    )
    move_to: str | None = Field(
        default=None, min_length=1, description="Instead of the account's `move_to`."
    )
    skip: bool = Field(default=False, description="Make no documents; only post-process.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        reserved = {QUEUE_HINT_KEY, RULE_KEY} & set(self.metadata)
        if reserved:
            raise ValueError(f"metadata may not set {', '.join(sorted(reserved))}: the rule does")
        # The rule's own name and hint go with its metadata into every document's.
        if len(self.metadata) > MAX_METADATA_ITEMS - 2:
            raise ValueError(
                f"metadata may have at most {MAX_METADATA_ITEMS - 2} keys "
                f"(the contract's {MAX_METADATA_ITEMS}, less mail_rule and queue_hint)"
            )
        if (
            self.min_age_days is not None
            and self.max_age_days is not None
            and self.min_age_days > self.max_age_days
        ):
            raise ValueError("min_age_days is over max_age_days: the rule could never match")
        return self


DEFAULT_RULE = MailRule(name="default")
"""What happens to a mail no rule matches: body and real attachments, the account's
post-processing, no metadata."""


@dataclass(frozen=True, slots=True)
class MailFacts:
    """What rules match on."""

    sender: str | None
    recipients: tuple[str, ...]
    subject: str | None
    attachment_names: tuple[str, ...]
    dated: datetime | None
    """When the mail arrived (IMAP INTERNALDATE), else its Date header."""
    mailbox: str | None = None

    @classmethod
    def of(
        cls, parsed: ParsedMessage, *, mailbox: str | None, arrived: datetime | None
    ) -> MailFacts:
        names = tuple(
            part.filename for part in parsed.parts if not _is_body(part) and part.filename
        )
        return cls(
            sender=parsed.sender,
            recipients=parsed.recipients,
            subject=parsed.subject,
            attachment_names=names,
            dated=arrived or parsed.date,
            mailbox=mailbox,
        )


def choose_rule(rules: Sequence[MailRule], facts: MailFacts, *, now: datetime) -> MailRule:
    """The first rule that matches, else ``DEFAULT_RULE``."""
    return next((rule for rule in rules if matches(rule, facts, now=now)), DEFAULT_RULE)


def matches(rule: MailRule, facts: MailFacts, *, now: datetime) -> bool:
    """Whether every condition of ``rule`` holds for the mail (globs ignore case)."""
    sender = email.utils.parseaddr(facts.sender or "")[1] or (facts.sender or "")
    conditions = (
        rule.mailboxes is None or facts.mailbox in rule.mailboxes,
        rule.from_ is None or _glob(sender, rule.from_),
        rule.to is None or any(_glob(a, rule.to) for a in facts.recipients),
        rule.subject is None or _glob(facts.subject or "", rule.subject),
        rule.attachment_name is None
        or any(_glob(name, rule.attachment_name) for name in facts.attachment_names),
    )
    return all(conditions) and _age_matches(rule, facts.dated, now=now)


def _age_matches(rule: MailRule, dated: datetime | None, *, now: datetime) -> bool:
    if rule.min_age_days is None and rule.max_age_days is None:
        return True
    if dated is None:
        return False  # an age condition holds only for a mail whose age is known
    age = now - dated
    too_new = rule.min_age_days is not None and age < timedelta(days=rule.min_age_days)
    too_old = rule.max_age_days is not None and age > timedelta(days=rule.max_age_days)
    return not (too_new or too_old)


def select_parts(parts: Sequence[ParsedPart], rule: MailRule) -> list[ParsedPart]:
    """The parts ``rule`` makes documents of, in order."""
    if rule.skip:
        return []
    allowed: set[PartKind] = set(DOCUMENT_KINDS)
    if rule.include_inline:
        allowed.add("inline")
    if rule.include_signatures:
        allowed.add("signature")
    if rule.include_delivery_status:
        allowed.add("delivery_status")
    chosen: list[ParsedPart] = []
    for part in parts:
        if _is_body(part):
            if rule.parts is not PartsChoice.ATTACHMENTS:
                chosen.append(part)
            continue
        # A nested message's body is a forwarded mail: an attachment of this one.
        if rule.parts is PartsChoice.BODY or part.kind not in allowed:
            continue
        if rule.attachment_name is not None and not (
            part.filename and _glob(part.filename, rule.attachment_name)
        ):
            continue
        chosen.append(part)
    return chosen


def rule_metadata(rule: MailRule) -> dict[str, str]:
    """The metadata a rule gives each document it makes (none for the default)."""
    if rule is DEFAULT_RULE:
        return {}
    metadata = {**rule.metadata, RULE_KEY: rule.name}
    if rule.queue_hint is not None:
        metadata[QUEUE_HINT_KEY] = rule.queue_hint
    return metadata


def _is_body(part: ParsedPart) -> bool:
    return part.role == "body" and part.parent is None


def _glob(value: str, pattern: str) -> bool:
    return fnmatchcase(value.casefold(), pattern.casefold())
