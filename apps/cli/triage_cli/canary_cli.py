"""``triage canary report``: should the canary be promoted or rolled back?

Compares the champion and the canary over a time window: what each scored (read back from
the classified topic: low-confidence rate, label distribution, receipt-to-score latency) and
how often reviewers overrode each one (from the review queue in PostgreSQL), with
confidence intervals (``triage_ml.canary``). The thresholds (options, or ``TRIAGE_CANARY_*``)
decide ``promote``, ``rollback`` or ``wait``; ``--apply`` carries the verdict out (promote
moves ``champion`` to the canary's version and clears ``canary``; rollback clears
``canary``), so the command can run on a schedule. Every verdict is written to the audit log,
applied or not, and alias moves to the registry's history. A rollback verdict exits with
status 3 (``triage_cli.exit_codes.ROLLBACK``), applied or not, so a scheduler sees it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from triage_cli.console import console, progress_bar, stdout
from triage_cli.database import default_actor
from triage_cli.replay_cli import SinceOption, UntilOption, parse_window

canary_app = typer.Typer(
    help="Canary analysis: compare the canary with the champion, then promote or roll back.",
    no_args_is_help=True,
)


@canary_app.command("report")
def canary_report(
    since: SinceOption = "1h",
    until: UntilOption = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Carry the verdict out (promote or roll back).")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write a PNG comparing the two arms here.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report as JSON here.")
    ] = None,
    min_documents: Annotated[
        int,
        typer.Option(envvar="TRIAGE_CANARY_MIN_DOCUMENTS", help="Per arm, before deciding."),
    ] = 100,
    max_low_confidence_increase: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_CANARY_MAX_LOW_CONFIDENCE_INCREASE",
            help="Largest rise in the share sent to review (absolute).",
        ),
    ] = 0.05,
    min_reviewed: Annotated[
        int,
        typer.Option(
            envvar="TRIAGE_CANARY_MIN_REVIEWED",
            help="Decided reviews per arm for the override check.",
        ),
    ] = 20,
    max_override_increase: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_CANARY_MAX_OVERRIDE_INCREASE",
            help="Largest rise in the reviewer override rate (absolute).",
        ),
    ] = 0.10,
    max_label_psi: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_CANARY_MAX_LABEL_PSI", help="Largest label-distribution shift (PSI)."
        ),
    ] = 0.25,
    max_latency_ratio: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_CANARY_MAX_LATENCY_RATIO", help="Largest canary/champion p95 latency."
        ),
    ] = 1.5,
    actor: Annotated[str | None, typer.Option(help="Who acts (default: your OS user).")] = None,
) -> None:
    """Compare champion and canary over a window and say: promote, rollback or wait.

    Exit status: 0 for promote or wait; 3 for rollback (with --apply the canary has then been
    cleared: replay its window with the champion, docs/runbook.md); 1 or 2 on errors.
    """
    from triage_cli.exit_codes import ROLLBACK
    from triage_ml.canary import CanaryThresholds, Verdict, analyse, canary_png, render_table

    start, end = parse_window(since, until)
    thresholds = CanaryThresholds(
        min_documents=min_documents,
        max_low_confidence_increase=max_low_confidence_increase,
        min_reviewed=min_reviewed,
        max_override_increase=max_override_increase,
        max_label_psi=max_label_psi,
        max_latency_ratio=max_latency_ratio,
    )
    scored, reviewed = asyncio.run(_observations(start, end))
    report = analyse(scored, reviewed, thresholds)
    stdout.print(render_table(report), markup=False, highlight=False)
    if plot is not None:
        canary_png(report, plot, title=f"canary vs champion, {start:%Y-%m-%d %H:%M}Z onwards")
        console.print(f"wrote {plot}")
    detail: dict[str, Any] = {
        "window": {"since": start.isoformat(), "until": end.isoformat() if end else None},
        "report": report.to_dict(),
        "applied": None,
    }
    who = actor or default_actor()
    if apply:
        detail["applied"] = asyncio.run(_apply(report, actor=who))
    if json_out is not None:
        json_out.write_text(json.dumps(detail, indent=2) + "\n")
    asyncio.run(_audit(who, detail))
    if report.verdict is Verdict.ROLLBACK:
        raise typer.Exit(ROLLBACK)


async def _observations(start: datetime, end: datetime | None) -> tuple[list[Any], list[Any]]:
    """What each arm scored (classified topic) and which of its reviews were overridden."""
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.settings import CommonSettings

    settings = CommonSettings()
    engine = make_async_engine(settings.database_url, pool_size=1)
    try:
        return await _scored(settings, engine, start, end), await _reviewed(engine, start, end)
    finally:
        await engine.dispose()


ROLES = ("champion", "canary")


async def classified_events(
    settings: Any, topic: str, start: datetime, end: datetime | None, *, reader: str
) -> AsyncIterator[list[Any]]:
    """The decodable DocumentClassified events of a classified topic in the window, a batch at
    a time, with a progress bar (the canary and shadow reports read scores this way)."""
    from triage_contracts import DocumentClassifiedV1
    from triage_runtime.kafka import UnprocessableError, decode_event
    from triage_runtime.topic_window import TopicWindow

    window = TopicWindow(
        settings,
        settings.topic(topic),
        since=start,
        until=end,
        group_id=f"triage-{reader}-{default_actor()}",
        batch_size=500,
    )
    async with window:
        with progress_bar() as progress:
            task = progress.add_task(f"reading {topic}", total=window.total)
            async for batch in window.batches():
                events = []
                for record in batch:
                    try:
                        events.append(decode_event(record.value, DocumentClassifiedV1))
                    except UnprocessableError:
                        continue
                yield events
                progress.advance(task, len(batch))


async def _scored(settings: Any, engine: Any, start: datetime, end: datetime | None) -> list[Any]:
    """Each arm's scores in the window, routed or not as the router decided them: under the
    routing policy each event names."""
    from triage_contracts import topics
    from triage_ml.canary import Scored
    from triage_runtime import routing
    from triage_runtime.policy_store import PolicyCache, PolicyStore

    policies = PolicyCache(PolicyStore(engine))
    scored: list[Scored] = []
    async for batch in classified_events(
        settings, topics.CLASSIFIED, start, end, reader="canary-report"
    ):
        events = [event for event in batch if event.model.role.value in ROLES]
        named = await policies.named({event.policy_version for event in events})
        for event in events:
            policy = named.get(event.policy_version)
            if policy is None:
                continue  # the router dead-letters it too
            prediction = event.prediction
            latency = (event.occurred_at - event.document.received_at).total_seconds()
            scored.append(
                Scored(
                    role=event.model.role.value,
                    version=event.model.version,
                    label=prediction.label if prediction else None,
                    routed=isinstance(routing.decide(event, policy), routing.RouteTo),
                    latency_seconds=max(0.0, latency),
                )
            )
    return scored


async def _reviewed(engine: Any, start: datetime, end: datetime | None) -> list[Any]:
    """Each arm's decided review items in the window (the reviewer's label beside the model's)."""
    from sqlalchemy import select

    from triage_ml.canary import Reviewed
    from triage_runtime.db.models import ReviewItem

    async with engine.connect() as conn:
        query = select(
            ReviewItem.model_role,
            ReviewItem.model_version,
            ReviewItem.predicted_label,
            ReviewItem.decided_label,
        ).where(
            ReviewItem.status == "decided",
            ReviewItem.model_role.in_(ROLES),
            ReviewItem.received_at >= start,
        )
        if end is not None:
            query = query.where(ReviewItem.received_at < end)
        rows = (await conn.execute(query)).all()
    return [
        Reviewed(role=r[0] or "", version=r[1] or "", predicted_label=r[2], decided_label=r[3])
        for r in rows
        if r[3] is not None
    ]


async def _apply(report: Any, *, actor: str) -> dict[str, Any] | None:
    """Carry out a promote or rollback verdict; return what moved."""
    from triage_cli.registry_cli import open_store
    from triage_ml.canary import Verdict
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.registry import ModelRegistry
    from triage_runtime.settings import CommonSettings

    if report.verdict is Verdict.WAIT:
        console.print("verdict is wait: nothing to apply")
        return None
    engine = make_async_engine(CommonSettings().database_url, pool_size=1)
    registry = ModelRegistry(engine, open_store())
    reason = "canary report: " + "; ".join(report.reasons)
    try:
        canary = await registry.resolve("canary")
        if canary is None:
            console.print("[red]the canary alias points at no model: nothing to apply[/red]")
            return None
        if canary not in report.canary.versions:
            console.print(
                f"[yellow]the canary is now {canary}, not what the window scored "
                f"({', '.join(report.canary.versions)}): not applying[/yellow]"
            )
            return None
        moves = []
        if report.verdict is Verdict.PROMOTE:
            moved = await registry.move_alias(
                "champion",
                canary,
                actor=actor,
                action="promote",
                reason=reason,
                gate_report={"canary_report": report.to_dict()},
            )
            moves.append({"alias": "champion", "from": moved.from_version, "to": canary})
        await registry.clear("canary", actor=actor, reason=reason)
        moves.append({"alias": "canary", "from": canary, "to": None})
    finally:
        await engine.dispose()
    for move in moves:
        stdout.print(f"{move['alias']}: {move['from'] or '(none)'} → {move['to'] or '(none)'}")
    return {"verdict": report.verdict.value, "moves": moves}


async def _audit(actor: str, detail: dict[str, Any]) -> None:
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from triage_runtime import audit
    from triage_runtime.db.engine import make_async_engine
    from triage_runtime.settings import CommonSettings

    engine = make_async_engine(CommonSettings().database_url, pool_size=1)
    try:
        async with async_sessionmaker(engine).begin() as session:
            await audit.record(session, actor=actor, action="canary_verdict", detail=detail)
    finally:
        await engine.dispose()
