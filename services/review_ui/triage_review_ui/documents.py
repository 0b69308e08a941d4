"""An item's document as the review UI shows it: its text, re-extracted in a bounded worker,
and its bytes for download.
"""

from __future__ import annotations

import asyncio

from triage_runtime.blobstore import BlobStore
from triage_runtime.db.models import ReviewItem
from triage_text.pool import ExtractionPool

MAX_TEXT_CHARS = 50_000


class ItemDocuments:
    """Reads review items' documents from the blob store."""

    def __init__(self, blobs: BlobStore, pool: ExtractionPool) -> None:
        self._blobs = blobs
        self._pool = pool

    async def data(self, item: ReviewItem) -> bytes:
        """The document's bytes as received."""
        return await asyncio.to_thread(self._blobs.get, item.blob_sha256)

    async def text(self, item: ReviewItem) -> str | None:
        """The document's extracted text for the item page (shown escaped), or None."""
        # Only documents the classifier could read: re-extracting one that failed (a PDF over
        # its time or memory limit, say) would tie up this web process for nothing.
        if item.extraction_status != "ok":
            return None
        try:
            return await self.extract(item)
        except Exception:  # noqa: BLE001 - a missing blob must not break the page
            return None

    async def extract(self, item: ReviewItem) -> str | None:
        """The document's text, or None if it has none; raises if its blob cannot be read."""
        extracted = await self._pool.extract(await self.data(item), item.media_type)
        return extracted.text[:MAX_TEXT_CHARS] if extracted.text else None
