"""Visible text of HTML in linear time, whatever the markup holds."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser


class _TextOfHtml(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "template"})
    _BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


_TAG = re.compile(r"<[^>]*>")
_DROPPED = ("script", "style", "head", "template")
# Openers of the constructs html.parser looks for the end of: tags, comments, declarations,
# processing instructions and marked sections.
_CONSTRUCT = re.compile(r"<[!/?a-zA-Z]")
_COMMENT = re.compile(re.escape("<!--"))
_SECTION = re.compile(re.escape("<!["))
# The reversed forms of the ends html.parser searches for: "--\s*>" (a comment) and
# "]\s*>" (a marked section such as <![CDATA[...]]>), searched for in the reversed text to
# find the last one.
_COMMENT_END_REVERSED = re.compile(r">\s*--")
_SECTION_END_REVERSED = re.compile(r">\s*\]")
MAX_VAIN_SCAN_CHARS = 4_000_000
"""How many characters html.parser may scan looking for ends that never come.

CPython's parser (3.11) scans to the end of the document for the end of every comment, tag or
marked section it meets; when there is none it carries on from the next character, so a few
thousand unclosed openers (``<!--<!--<!--...``, ``</</</...``) cost minutes to days. Markup
that would make it scan more than this goes to the linear fallback instead (about a few
milliseconds' worth of scanning; real documents never come close).
"""


def _without_dropped_elements(html: str) -> str:
    """Cut script/style/head/template elements in one linear pass (no regex backtracking)."""
    lower = html.lower()
    kept: list[str] = []
    position = 0
    # The next opener of each tag, found once and searched again only when passed, so
    # hostile input with thousands of elements stays linear.
    upcoming = {tag: lower.find(f"<{tag}") for tag in _DROPPED}
    while True:
        for tag, at in upcoming.items():
            if 0 <= at < position:
                upcoming[tag] = lower.find(f"<{tag}", position)
        found = [(at, tag) for tag, at in upcoming.items() if at >= 0]
        if not found:
            kept.append(html[position:])
            return "".join(kept)
        at, tag = min(found)
        kept.append(html[position:at])
        end = lower.find(f"</{tag}", at)
        if end < 0:
            return "".join(kept)  # unclosed: the rest is inside the element
        close = lower.find(">", end)
        position = len(html) if close < 0 else close + 1


def _strip_tags(html: str) -> str:
    """Replace every complete tag by a space, in linear time.

    ``<[^>]*>`` alone is quadratic on text with many ``<`` and no ``>`` after them (each
    attempt scans to the end), so it only runs up to the last ``>``: past it no tag can end.
    """
    end = html.rfind(">") + 1
    return _TAG.sub(" ", html[:end]) + html[end:]


def strip_markup(html: str) -> str:
    """Return the text of markup without parsing it: dropped elements cut, tags removed.

    Linear in the input whatever it holds; the fallback for markup the parser cannot take.
    """
    return unescape(_strip_tags(_without_dropped_elements(html)))


def _vain_scans(html: str, opener: re.Pattern[str], after: int, budget: int) -> int:
    """Add up how far the parser scans for the ends of openers found past ``after``.

    Stops counting once ``budget`` is passed, so hostile input costs little here too.
    """
    total = 0
    for match in opener.finditer(html, max(after, 0)):
        total += len(html) - match.start()
        if total > budget:
            break
    return total


def _last_end(html: str, reversed_end: re.Pattern[str]) -> int:
    """Return where the last match of a reversed end pattern starts in ``html`` (-1: none)."""
    found = reversed_end.search(html[::-1])
    return -1 if found is None else len(html) - found.end()


def parser_would_crawl(html: str, *, budget: int = MAX_VAIN_SCAN_CHARS) -> bool:
    """Tell whether html.parser would scan more than ``budget`` characters in vain.

    Every construct opened after the last possible end of its kind makes the parser search
    to the end of the document: tags and declarations end with ``>``, comments with
    ``-->``, marked sections with ``]>``. One such search per opener is what makes the
    standard parser quadratic (see ``MAX_VAIN_SCAN_CHARS``).
    """
    if "<" not in html:
        return False
    spent = _vain_scans(html, _CONSTRUCT, html.rfind(">") + 1, budget)
    if "<!--" in html and spent <= budget:
        # A comment's end is searched for from 4 characters after its opener.
        after = _last_end(html, _COMMENT_END_REVERSED) - 3
        spent += _vain_scans(html, _COMMENT, after, budget - spent)
    if "<![" in html and spent <= budget:
        # A marked section's end is searched for from 3 characters after its opener.
        after = _last_end(html, _SECTION_END_REVERSED) - 2
        spent += _vain_scans(html, _SECTION, after, budget - spent)
    return spent > budget


class UnparsableHtmlError(ValueError):
    """The standard HTML parser cannot take this markup, or would take far too long."""


def html_to_text(html: str, *, strict: bool = False) -> str:
    """Return the visible text of an HTML document (scripts and styles dropped).

    Hostile markup that the standard parser chokes on (it asserts on input such as
    ``<![x``) or would crawl through for minutes (``parser_would_crawl``) falls back to
    stripping tags, in linear time, so HTML never makes extraction raise or hang; with
    ``strict``, ``UnparsableHtmlError`` is raised instead, for callers that record it.
    """
    if parser_would_crawl(html):
        if strict:
            raise UnparsableHtmlError("the markup leaves too many constructs unclosed")
        return strip_markup(html)
    parser = _TextOfHtml()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError, IndexError) as exc:
        if strict:
            raise UnparsableHtmlError(f"html.parser failed: {type(exc).__name__}") from exc
        return strip_markup(html)
    return "".join(parser.parts)
