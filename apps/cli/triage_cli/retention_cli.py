"""``triage retention run``: remove raw documents and review data past their periods."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from rich.table import Table

from triage_cli.console import console, stdout

retention_app = typer.Typer(
    help="Data retention: raw documents, review data, sessions (docs/reliability.md).",
    no_args_is_help=True,
)


@retention_app.command("run")
def retention_run(
    document_days: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_RETENTION_DOCUMENT_DAYS",
            min=0,
            help="Keep raw bytes this long after the last document sharing them was received "
            "(documents still in review keep theirs).",
        ),
    ] = 90.0,
    review_days: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_RETENTION_REVIEW_DAYS",
            min=0,
            help="Keep decided and closed review items (sender, subject, note) this long.",
        ),
    ] = 365.0,
    operational_days: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_RETENTION_OPERATIONAL_DAYS",
            min=0,
            help="Keep expired sessions, sign-in attempts and idempotency records this long.",
        ),
    ] = 30.0,
    orphan_grace_hours: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_RETENTION_ORPHAN_GRACE_HOURS",
            # Shorter than an upload takes, and a write in progress would count as an orphan.
            min=1,
            help="Remove blobs nothing owns (left by crashed uploads) once this old.",
        ),
    ] = 24.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would go; remove nothing.")
    ] = False,
) -> None:
    """Remove what is past its retention period, and blobs nothing owns (safe to run
    repeatedly, e.g. nightly)."""
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.retention import RetentionPolicy, run_retention
    from triage_runtime.settings import CommonSettings

    settings = CommonSettings()
    policy = RetentionPolicy(
        document_days=document_days, review_days=review_days, operational_days=operational_days
    )

    async def run() -> object:
        engine = make_async_engine(settings.database_url, pool_size=1)
        try:
            return await run_retention(
                engine,
                settings.open_blob_store(),
                policy,
                now=datetime.now(UTC),
                dry_run=dry_run,
                orphan_grace=timedelta(hours=orphan_grace_hours),
            )
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    title = "retention (dry run: nothing removed)" if dry_run else "retention: removed"
    table = Table(title=title)
    table.add_column("what")
    table.add_column("count", justify="right")
    for name, label in (
        ("blobs", f"raw documents (blobs), older than {document_days:g} days"),
        ("documents_purged", "document rows marked purged"),
        ("review_items", f"review items decided over {review_days:g} days ago"),
        ("sessions", "expired sign-in sessions"),
        ("login_attempts", "sign-in attempts"),
        ("idempotency_records", "upload idempotency records"),
        ("known_devices", "known browsers unused for the sign-in back-off's days"),
        ("orphans", f"orphaned blobs, older than {orphan_grace_hours:g} hours"),
    ):
        table.add_row(label, str(getattr(report, name)))
    stdout.print(table)
    console.print("the audit log is append-only and is never removed")
