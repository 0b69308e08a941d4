"""Engines and migrations. Nothing here connects until called."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from triage_runtime.db.models import Base

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_async_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """Return an async engine (psycopg 3) that checks connections before use."""
    return create_async_engine(url, pool_size=pool_size, pool_pre_ping=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker:  # type: ignore[type-arg]
    """Return a session factory whose objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def database_reachable(engine: AsyncEngine) -> bool:
    """Say whether a trivial query succeeds."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return True


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for Triage's migrations against ``url``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    command.upgrade(alembic_config(url), revision)


__all__ = ["Base", "alembic_config", "database_reachable", "make_async_engine", "upgrade"]
