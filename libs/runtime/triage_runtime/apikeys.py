"""API keys: the ``api_key`` table's one owner, for every HTTP API that takes them and the CLI.

Keys are 256-bit random strings; only their SHA-256 is stored, so none can be read back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from triage_contracts import utcnow
from triage_runtime.db.models import ApiKey

API_KEY_PREFIX = "tri_"


@dataclass(frozen=True, slots=True)
class KeyHolder:
    """The caller an API key identifies."""

    id: int
    name: str


def hash_api_key(key: str) -> str:
    """Return the stored form of an API key (keys are 256-bit random, so SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """Creates, revokes and lists keys, and looks up who holds a live one."""

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

    async def create(self, name: str) -> str:
        """Create a key for ``name`` and return it; only its hash is kept."""
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._sessions.begin() as session:
            session.add(ApiKey(name=name, key_sha256=hash_api_key(key)))
        return key

    async def revoke(self, name: str) -> bool:
        """Revoke the key named ``name``; False if there is no live key by that name."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey)
                .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
                .values(revoked_at=utcnow())
                .returning(ApiKey.id)
            )
            return result.first() is not None

    async def list(self) -> list[tuple[str, datetime, datetime | None]]:
        """Return (name, created, revoked) for every key."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ApiKey.name, ApiKey.created_at, ApiKey.revoked_at).order_by(ApiKey.name)
            )
            return [(r.name, r.created_at, r.revoked_at) for r in rows]
