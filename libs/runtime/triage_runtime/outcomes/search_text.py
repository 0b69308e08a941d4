"""Review items' stored text, for full-text search (``review_item.search_text``, migration 0014).

The review UI reads each open item's document and stores its text here once; PostgreSQL
keeps ``search_vector`` from it and the item's subject, sender and name.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_runtime.db.models import SEARCH_CONFIG, ReviewItem
from triage_runtime.outcomes.corrections import OPEN_REVIEW


class ReviewTexts:
    """Stores and reads review items' extracted text."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def stored(self, item_id: int) -> str | None:
        """The item's stored text ("" if its document had none), or None if not stored yet."""
        async with self._sessions() as session:
            return await session.scalar(
                select(ReviewItem.search_text).where(ReviewItem.id == item_id)
            )

    async def store(self, item_id: int, text: str | None) -> bool:
        """Store an item's text unless it has some; whether this call stored it."""
        # "" marks a document read and found empty, so it is not read again.
        async with self._sessions.begin() as session:
            stored = await session.execute(
                update(ReviewItem)
                .where(ReviewItem.id == item_id, ReviewItem.search_text.is_(None))
                .values(search_text=(text or "").replace("\x00", ""))
                .returning(ReviewItem.id)
            )
            return stored.first() is not None

    async def unindexed(self, *, after: int, limit: int) -> list[ReviewItem]:
        """Open, readable items past id ``after`` whose text is not stored, by id."""
        async with self._sessions() as session:
            return list(
                (
                    await session.execute(
                        select(ReviewItem)
                        .where(
                            ReviewItem.id > after,
                            ReviewItem.status.in_(OPEN_REVIEW),
                            ReviewItem.extraction_status == "ok",
                            ReviewItem.search_text.is_(None),
                        )
                        .order_by(ReviewItem.id)
                        .limit(limit)
                    )
                ).scalars()
            )

    async def headline(self, item_id: int, search: str, *, start: str, stop: str) -> str | None:
        """The item's whole stored text with the words ``search`` finds between ``start`` and
        ``stop`` (PostgreSQL's ts_headline); None if it has no text."""
        async with self._sessions() as session:
            return await session.scalar(
                select(
                    func.ts_headline(
                        SEARCH_CONFIG,
                        ReviewItem.search_text,
                        func.websearch_to_tsquery(SEARCH_CONFIG, search),
                        f"StartSel={start}, StopSel={stop}, HighlightAll=true",
                    )
                ).where(ReviewItem.id == item_id, ReviewItem.search_text != "")
            )
