"""MIME header parameters as the sender wrote them, for where the stdlib's strict reading
loses what the sender meant.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_QUOTED_PAIR = re.compile(r"\\(.)")


class WrittenParam(NamedTuple):
    """A parameter's literal value (quoted pairs undone) and whether it was quoted."""

    value: str
    quoted: bool


def written_param(raw: str, name: str) -> WrittenParam | None:
    """Return parameter ``name`` of an unfolded raw header value, or None if it is absent.

    An unquoted value runs to the next ";": senders leave spaces and "=" unquoted (file
    names such as ``Invoice March 2026.pdf``, Java's and Outlook's ``----=_Part_1`` boundaries),
    which the stdlib's parser cuts at the first character a token may not hold. RFC 2231
    forms (``name*=``) are not matched: the stdlib reads those right.
    """
    pattern = rf"(?:^|;)\s*{re.escape(name)}\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^;]*))"
    match = re.search(pattern, raw, re.IGNORECASE)
    if match is None:
        return None
    if match[1] is not None:
        return WrittenParam(_QUOTED_PAIR.sub(r"\1", match[1]), quoted=True)
    return WrittenParam(match[2].strip(), quoted=False)
