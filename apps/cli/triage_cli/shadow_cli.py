"""``triage shadow report``: is the shadow model better than the champion?

Pairs, over a time window, each document's champion score (the classified topic) with its
shadow score (the shadow classified topic), and the label a person decided where one did
(decided review items in PostgreSQL); the statistics are ``triage_ml.shadow``. A "shadow
worse" verdict exits with status 7 (``triage_cli.exit_codes.SHADOW_WORSE``).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from triage_cli.console import console, stdout
from triage_cli.replay_cli import SinceOption, UntilOption, parse_window

shadow_app = typer.Typer(
    help="Shadow analysis: compare the shadow model with the champion on the same documents.",
    no_args_is_help=True,
)


@shadow_app.command("report")
def shadow_report(
    since: SinceOption = "1d",
    until: UntilOption = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Write a PNG of the label counts and the accuracies here."),
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report as JSON here.")
    ] = None,
    min_decided: Annotated[
        int,
        typer.Option(
            min=0,
            envvar="TRIAGE_SHADOW_MIN_DECIDED",
            help="Documents both scored that people decided, before a verdict.",
        ),
    ] = 20,
) -> None:
    """Compare shadow and champion over a window: agreement, per-label agreement, accuracy
    where people decided, and a verdict (shadow better, no evidence, shadow worse).

    Exit status: 0 for better or no evidence; 7 when the shadow is measurably worse; 1, 2
    or 5 on errors.
    """
    from triage_cli.exit_codes import SHADOW_WORSE
    from triage_ml.shadow import ShadowVerdict, compare, render_table, shadow_png

    start, end = parse_window(since, until)
    pairs, champion_versions, shadow_versions = asyncio.run(_pairs(start, end))
    report = compare(
        pairs,
        champion_versions=champion_versions,
        shadow_versions=shadow_versions,
        min_decided=min_decided,
    )
    stdout.print(render_table(report), markup=False, highlight=False)
    if plot is not None:
        title = f"shadow vs champion, {start:%Y-%m-%d %H:%M}Z onwards"
        shadow_png(report, plot, title=title)
        console.print(f"wrote {plot}")
    if json_out is not None:
        window = {"since": start.isoformat(), "until": end.isoformat() if end else None}
        detail = {"window": window, "report": report.to_dict()}
        json_out.write_text(json.dumps(detail, indent=2) + "\n")
    if report.verdict is ShadowVerdict.WORSE:
        raise typer.Exit(SHADOW_WORSE)


async def _pairs(start: datetime, end: datetime | None) -> tuple[list[Any], set[str], set[str]]:
    """The documents both models scored in the window, with any decided label; and the
    versions seen of each."""
    from sqlalchemy import select

    from triage_cli.canary_cli import classified_events
    from triage_contracts import ModelRole, topics
    from triage_ml.shadow import Pair
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.db.models import ReviewItem
    from triage_runtime.settings import CommonSettings

    settings = CommonSettings()
    scores: dict[ModelRole, dict[str, str | None]] = {ModelRole.CHAMPION: {}, ModelRole.SHADOW: {}}
    versions: dict[ModelRole, set[str]] = {ModelRole.CHAMPION: set(), ModelRole.SHADOW: set()}
    for topic, role in (
        (topics.CLASSIFIED_SHADOW, ModelRole.SHADOW),
        (topics.CLASSIFIED, ModelRole.CHAMPION),
    ):
        async for batch in classified_events(settings, topic, start, end, reader="shadow-report"):
            for event in batch:
                if event.model.role is not role:
                    continue  # the canary's scores are the canary report's
                prediction = event.prediction
                scores[role][event.document_id] = prediction.label if prediction else None
                versions[role].add(event.model.version)
        if not scores[ModelRole.SHADOW]:
            break  # nothing to pair: the classified topic need not be read
    both = scores[ModelRole.CHAMPION].keys() & scores[ModelRole.SHADOW].keys()
    decided: dict[str, str] = {}
    if both:
        engine = make_async_engine(settings.database_url, pool_size=1)
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(
                    select(ReviewItem.document_id, ReviewItem.decided_label).where(
                        ReviewItem.status == "decided",
                        ReviewItem.decided_label.is_not(None),
                        ReviewItem.document_id.in_(sorted(both)),
                    )
                )
                decided = {str(r[0]): str(r[1]) for r in rows}
        finally:
            await engine.dispose()
    pairs = [
        Pair(
            document_id=doc,
            champion=scores[ModelRole.CHAMPION][doc],
            shadow=scores[ModelRole.SHADOW][doc],
            decided=decided.get(doc),
        )
        for doc in sorted(both)
    ]
    return pairs, versions[ModelRole.CHAMPION], versions[ModelRole.SHADOW]
