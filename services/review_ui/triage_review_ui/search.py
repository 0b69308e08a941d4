"""Full-text search of review items: each item's text stored once, and a search's matches
shown in it.

The classifier's event carries no text and the router reads no documents, so the review UI,
which already extracts documents in a bounded worker to show them, is the one place an
item's text is stored (``triage_runtime.outcomes.search_text``): by a background pass over
open items without it (new ones within seconds, and those opened before search existed), or
by the item page if it gets there first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from markupsafe import Markup, escape

from triage_review_ui.background import every
from triage_review_ui.documents import ItemDocuments
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.search_text import ReviewTexts

log = logging.getLogger(__name__)


class ItemTexts:
    """Review items' extracted text: read once from the document, then from PostgreSQL."""

    def __init__(self, store: ReviewTexts, documents: ItemDocuments) -> None:
        self._store = store
        self._documents = documents

    async def text(self, item: ReviewItem) -> str | None:
        """The item's text for its page: stored, else extracted (and stored), else None."""
        stored = await self._store.stored(item.id)
        if stored is not None:
            return stored or None
        if item.extraction_status != "ok":
            return None
        try:
            text = await self._documents.extract(item)
        except Exception:  # noqa: BLE001 - a missing blob must not break the page
            return None
        await self._store.store(item.id, text)
        return text

    async def index_pending(self, *, batch: int = 50) -> int:
        """Store the text of every open item that has none; return how many this call stored.

        Walks by id, so a document that cannot be read now (its blob store down) is tried
        again next pass without holding up the rest.
        """
        stored, after = 0, 0
        while True:
            items = await self._store.unindexed(after=after, limit=batch)
            for item in items:
                try:
                    text = await self._documents.extract(item)
                except Exception:  # noqa: BLE001 - logged; tried again next pass
                    log.warning("could not read review item %s's document to index it", item.id)
                    continue
                stored += await self._store.store(item.id, text)
            if len(items) < batch:
                return stored
            after = items[-1].id

    async def highlighted(self, item_id: int, search: str) -> Markup | None:
        """The item's stored text with the words ``search`` finds marked, escaped; or None."""
        if not search.strip() or "\x00" in search:
            return None
        # Markers nobody can put in a document (random per call): the text is escaped whole,
        # then only these become <mark> tags, so a document's own "<mark>" stays text.
        token = secrets.token_hex(8)
        start, stop = f"qs{token}", f"qe{token}"
        headline = await self._store.headline(item_id, search, start=start, stop=stop)
        if headline is None or start not in headline:
            return None
        escaped = str(escape(headline))
        return Markup(escaped.replace(start, "<mark>").replace(stop, "</mark>"))  # noqa: S704 - escaped above

    @asynccontextmanager
    async def indexing(self, interval_seconds: float) -> AsyncIterator[None]:
        """Index open items every ``interval_seconds`` while the app serves."""

        async def once() -> None:
            if stored := await self.index_pending():
                log.info("stored the text of %d review item(s) for search", stored)

        task = asyncio.create_task(
            every(interval_seconds, once, "could not index review items for search"),
            name="search-index",
        )
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
