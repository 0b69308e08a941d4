"""``triage replay``: re-score what a time window of the documents topic holds, and re-route.

After a rollback, the documents a bad model scored are read back from the documents topic
(from the offsets for ``--since``, in a consumer group of the replay's own), re-scored in
batches with the serving extraction and model code, and their outcomes corrected
(``triage_runtime.outcomes.corrections``): a document whose queue changes is withdrawn from the old
queue's topic and routed to the new one, review items are opened, updated or closed to
match, and a human decision is never touched. The same replay run twice changes nothing
the second time. It ends with a table of old → new outcomes and a CSV of every change.
"""

from __future__ import annotations

import asyncio
import csv
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from triage_cli.console import console, progress_bar, stdout
from triage_cli.exit_codes import exit_if_skipped

CSV_FIELDS = (
    "document_id",
    "path",
    "part",
    "source",
    "time",
    "outcome",
    "old",
    "new",
    "old_model_version",
    "new_model_version",
    "confidence",
)

PROCESSES_HELP = (
    "Score in N processes, each with its own copy of the model and "
    "TRIAGE_CLASSIFIER_TORCH_THREADS torch threads (default 1); on a host of its own, one per "
    "core is fastest (docs/performance.md). 1: in this process, with torch's threads."
)

SinceOption = Annotated[
    str,
    typer.Option(
        "--since",
        help="Start of the window: ISO 8601 (UTC unless an offset is given), or an age: 2h, 1d.",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until", help="End of the window (excluded); default: the topic's end when it starts."
    ),
]


def parse_window(since: str, until: str | None) -> tuple[datetime, datetime | None]:
    """Parse --since/--until, or exit 2 with the accepted forms."""
    from triage_runtime.topic_window import parse_time

    now = datetime.now(UTC)
    try:
        start = parse_time(since, now=now)
        end = parse_time(until, now=now) if until else None
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if end is not None and end <= start:
        console.print("[red]--until must be after --since[/red]")
        raise typer.Exit(2)
    return start, end


def replay(
    since: SinceOption,
    until: UntilOption = None,
    model: Annotated[
        str,
        typer.Option(help="Re-score with: an alias, a registered version, or an artifact path."),
    ] = "champion",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Re-score and report, but change and send nothing.")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(help="CSV of changed documents (default: replay-<id>.csv here)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Documents per batch.")] = 64,
    processes: Annotated[int, typer.Option(min=1, max=64, help=PROCESSES_HELP)] = 1,
) -> None:
    """Re-score a window of the documents topic and correct routing to match (after a rollback).

    Human decisions are never overwritten; running the same replay again changes nothing.
    Exit status 4 when records were skipped (unreadable or unscorable: counted by reason in
    the table; the rest is corrected and in the CSV), 0 when every record was re-scored.
    """
    from triage_cli.registry_support import load_model
    from triage_contracts import ModelRole
    from triage_runtime.registry import ALIASES

    start, end = parse_window(since, until)
    loaded = load_model(model, prepare=processes == 1)
    role = ModelRole(model) if model in ALIASES else ModelRole.CHAMPION
    replay_id = f"replay-{datetime.now(UTC):%Y%m%d%H%M%S}-{secrets.token_hex(2)}"
    report = report or Path(f"{replay_id}.csv")
    console.print(
        f"{replay_id}: re-scoring documents from {start:%Y-%m-%d %H:%M:%S}Z to "
        f"{f'{end:%Y-%m-%d %H:%M:%S}Z' if end else 'the end of the topic'} with "
        f"{loaded.version} ({role.value}){' — dry run, nothing changes' if dry_run else ''}",
        highlight=False,
    )
    from triage_cli.rescore import Pace

    pace = Pace()
    changes, where, skipped, total = asyncio.run(
        _run(
            replay_id,
            pace=pace,
            start=start,
            end=end,
            model=loaded,
            role=role,
            dry_run=dry_run,
            batch_size=batch_size,
            processes=processes,
        )
    )
    _print_summary(changes, skipped, total=total, pace=pace, dry_run=dry_run)
    changed = [c for c in changes if c.outcome.value in {"changed", "review_updated"}]
    with report.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for change in changed:
            fields = {name: getattr(change, name, None) for name in CSV_FIELDS}
            writer.writerow(fields | where[change.document_id] | {"outcome": change.outcome.value})
    console.print(f"{len(changed)} changed document(s) listed in {report}")
    exit_if_skipped(skipped)


async def _run(
    replay_id: str,
    *,
    pace: Any,
    start: datetime,
    end: datetime | None,
    model: Any,
    role: Any,
    dry_run: bool,
    batch_size: int,
    processes: int,
) -> tuple[list[Any], dict[str, dict[str, str | None]], Counter[str], int]:
    """Re-score the window; return the changes, where each re-scored document came from
    (``where_columns``, by document id), what was skipped and how many records were read."""
    from triage_cli.rescore import scored_ahead, topic_rescorer, where_columns
    from triage_contracts import ModelRef, topics
    from triage_runtime import routing
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.kafka import make_broker
    from triage_runtime.outbox import Outbox
    from triage_runtime.outcomes.corrections import CorrectionStore
    from triage_runtime.policy_store import PolicyStore
    from triage_runtime.service import producer_for
    from triage_runtime.settings import CommonSettings

    settings = CommonSettings()
    producer = producer_for("replay", "triage-cli")
    engine = make_async_engine(settings.database_url, pool_size=2)
    # The policy in force: re-scores are decided as the classifier decides them now.
    policy = await PolicyStore(engine).current()
    store = CorrectionStore(
        engine,
        producer=producer,
        review_sla=policy.review_sla,
        topic_for=lambda queue: settings.topic(topics.routed_topic(queue)),
    )
    broker = make_broker(settings, client_id="triage-replay")
    outbox = Outbox(engine, broker, service="replay", topic_prefix=settings.topic_prefix)
    changes: list[Any] = []
    where: dict[str, dict[str, str | None]] = {}
    skipped: Counter[str] = Counter()

    try:
        if not dry_run:
            await broker.start()
            # Whatever an earlier run (or a service) left unpublished goes out first.
            await outbox.relay(grace=timedelta(0), wait=True)
        async with topic_rescorer(
            since=start,
            until=end,
            group_id=f"triage-{replay_id}",
            batch_size=batch_size,
            model=model,
            model_ref=ModelRef(version=model.version, role=role),
            producer=producer,
            policy=policy,
            processes=processes,
        ) as rescorer:
            window = rescorer.window
            with progress_bar() as progress:
                task = progress.add_task("re-scoring", total=window.total)
                async for batch, rescored in scored_ahead(
                    pace.watch(window.batches()), rescorer.score, ahead=rescorer.ahead
                ):
                    skipped.update(rescored.skipped)
                    for event in rescored.events:
                        where[event.document_id] = where_columns(event.document)
                    # One transaction per batch: a row lock and a commit per document
                    # would cost as much as the model on a fast backend.
                    decided = [(event, routing.decide(event, policy)) for event in rescored.events]
                    applied = await store.apply_many(decided, replay_id=replay_id, dry_run=dry_run)
                    changes += applied
                    if not dry_run:
                        await outbox.publish([e for change in applied for e in change.event_ids])
                        await window.commit(batch)
                    progress.advance(task, len(batch))
            total = window.total
    finally:
        if not dry_run:
            await broker.stop()
        await engine.dispose()
    return changes, where, skipped, total


def _print_summary(
    changes: list[Any], skipped: Counter[str], *, total: int, pace: Any, dry_run: bool
) -> None:
    outcomes = Counter(c.outcome.value for c in changes)
    verb = "would change" if dry_run else "changed"
    table = Table(title=f"replay: {total} record(s) read, {len(changes)} re-scored")
    table.add_column("outcome")
    table.add_column("documents", justify="right")
    for name in ("changed", "review_updated", "unchanged", "kept_human_decision", "not_yet_routed"):
        table.add_row(name.replace("_", " "), str(outcomes.get(name, 0)))
    for reason, count in sorted(skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    stdout.print(table)
    moves = Counter((c.old, c.new) for c in changes if c.outcome.value == "changed")
    if moves:
        diff = Table(title=f"{verb}: old → new outcome")
        diff.add_column("old")
        diff.add_column("new")
        diff.add_column("documents", justify="right")
        for (old, new), count in sorted(moves.items()):
            diff.add_row(old, new, str(count))
        stdout.print(diff)
    stdout.print(pace.summary(len(changes)))
