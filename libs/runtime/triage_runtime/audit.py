"""The audit log: who did what, when, to which document; the ``audit_log`` table's one writer.

Rows are appended inside the caller's transaction, so an action and its record land together;
the table refuses updates and deletes (a trigger).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from triage_runtime.db.models import AuditLog

MAX_ACTOR_CHARS = 80


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    document_id: str | None = None,
    review_item_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one row in ``session``'s transaction; return its id."""
    values: dict[str, Any] = {
        "actor": actor[:MAX_ACTOR_CHARS],
        "action": action,
        "document_id": document_id,
        "review_item_id": review_item_id,
    }
    if detail is not None:  # omitted, not JSON null: SQL NULL when there is none
        values["detail"] = detail
    audit_id = await session.scalar(insert(AuditLog).values(**values).returning(AuditLog.id))
    return int(audit_id) if audit_id is not None else 0
