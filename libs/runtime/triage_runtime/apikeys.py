"""API keys, shared by every HTTP API that takes them (upload, classify).

Keys are 256-bit random strings made by ``triage apikey create``; only their SHA-256 is
stored (``api_key`` table), so a key cannot be read back from the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_runtime.db.models import ApiKey


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The caller an API key identifies."""

    id: int
    name: str


def hash_api_key(key: str) -> str:
    """Return the stored form of an API key (keys are 256-bit random, so SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Looks up who holds a live key."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def holder(self, key: str) -> KeyHolder | None:
        """Return who holds a live (not revoked) key, or None."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ApiKey.id, ApiKey.name).where(
                        ApiKey.key_sha256 == hash_api_key(key), ApiKey.revoked_at.is_(None)
                    )
                )
            ).first()
        return KeyHolder(row.id, row.name) if row else None
