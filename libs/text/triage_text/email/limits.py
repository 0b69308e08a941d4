"""The caps on the work CPython's email parser is given (docs/ingest.md says why), and the
parse policy that holds headers to theirs: bounded fields, a structured-parsing budget, and
multipart boundaries read as senders write them.
"""

from __future__ import annotations

import email.policy
import re
from email.errors import HeaderDefect
from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any, Final

from triage_text.email.params import written_param

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
    """An EmailMessage that keeps at most MAX_HEADERS header fields, each cut to a length,
    and takes an unquoted boundary as written."""

    def get_boundary(self, failobj: Any = None) -> Any:
        """Return the multipart boundary; an unquoted one runs to the next ";".

        Java mailers and Outlook send ``boundary=----=_Part_1_2.3`` unquoted, which the
        stdlib's header parser cuts at the "=" (so no part is found).
        """
        raw = next((v for k, v in self.raw_items() if k.lower() == "content-type"), None)
        if isinstance(raw, str) and len(raw) <= MAX_PARSED_HEADER_CHARS:
            written = written_param(re.sub(r"\r?\n", "", raw), "boundary")
            if written is not None and not written.quoted and written.value:
                return written.value
        return super().get_boundary(failobj)

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


class BudgetedHeaders(HeaderRegistry):
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
SERIAL_POLICY: Final = _POLICY.clone(refold_source="none")


def parse_policy() -> EmailPolicy[EmailMessage]:
    """Return the policy for parsing one message: its own header parse budget."""
    return _POLICY.clone(header_factory=BudgetedHeaders(PARSE_BUDGET_CHARS))


def policy_of(obj: EmailMessage) -> EmailPolicy[EmailMessage]:
    """Return the policy a parsed message was parsed with (this parse's budget)."""
    policy = obj.policy
    return policy if isinstance(policy, EmailPolicy) else parse_policy()
