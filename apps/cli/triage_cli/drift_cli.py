"""``triage drift report``: has the input moved away from what the model was trained on?

Reads a time window of the documents topic (in a consumer group of its own, committing
nothing), re-scores up to ``--sample`` documents with the classifier's extraction and model
code (``triage_cli.rescore``), counts them into a drift window from the feature vectors the
model computes while scoring, and compares the window with the baseline stored in the model
at training time (``triage_ml.drift``): PSI of confidence, predicted label and text length,
and the distance of the feature centroid. Prints a table, optionally writes pictures, and
exits 0 whatever it finds: it is a report. A model without a baseline is reported as
unavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from triage_cli.console import console, progress_bar, stdout
from triage_cli.replay_cli import SinceOption, UntilOption, parse_window

drift_app = typer.Typer(
    help="Input drift: compare live documents with the model's training baseline.",
    no_args_is_help=True,
)


def in_sample(record: Any, share: float) -> bool:
    """Whether a record is in the sample: decided by its key (the document id), so the same
    window and share always give the same documents, spread evenly over time."""
    if share >= 1.0:
        return True
    key = record.key if record.key is not None else f"{record.partition}:{record.offset}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") < share * 2**64


@drift_app.command("report")
def drift_report(
    since: SinceOption,
    until: UntilOption = None,
    model: Annotated[
        str,
        typer.Option(help="Compare with: an alias, a registered version, or an artifact path."),
    ] = "champion",
    sample: Annotated[
        int, typer.Option(min=1, help="Re-score at most this many documents of the window.")
    ] = 2000,
    plots: Annotated[
        Path | None, typer.Option(help="Write the drift pictures (PNG) into this directory.")
    ] = None,
    max_psi: Annotated[
        float,
        typer.Option(envvar="TRIAGE_DRIFT_MAX_PSI", help="PSI above this is drift."),
    ] = 0.2,
    min_documents: Annotated[
        int,
        typer.Option(
            envvar="TRIAGE_DRIFT_MIN_DOCUMENTS", min=1, help="Fewer documents: insufficient."
        ),
    ] = 100,
    distance_factor: Annotated[
        float,
        typer.Option(
            envvar="TRIAGE_DRIFT_DISTANCE_FACTOR",
            help="Centroid limit, as a share of the baseline spread (plus sampling noise).",
        ),
    ] = 0.25,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Documents per batch.")] = 64,
) -> None:
    """Compare a window of the documents topic with the model's training baseline."""
    from triage_cli.registry_support import load_model
    from triage_contracts import ModelRole
    from triage_ml import drift
    from triage_runtime.registry import ALIASES

    start, end = parse_window(since, until)
    loaded = load_model(model)
    try:
        baseline = drift.Baseline.from_metadata(loaded.metadata)
    except drift.BaselineUnavailableError as exc:
        stdout.print(
            drift.render_table(drift.unavailable_report(str(exc))), markup=False, highlight=False
        )
        return
    try:
        thresholds = drift.DriftThresholds(
            max_psi=max_psi, min_documents=min_documents, distance_factor=distance_factor
        )
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    role = ModelRole(model) if model in ALIASES else ModelRole.CHAMPION
    console.print(
        f"drift of {loaded.version} ({role.value}) over documents from "
        f"{start:%Y-%m-%d %H:%M:%S}Z to "
        f"{f'{end:%Y-%m-%d %H:%M:%S}Z' if end else 'the end of the topic'}",
        highlight=False,
    )
    window = baseline.window()
    try:
        read, skipped, unscored = asyncio.run(
            _observe(
                window,
                start=start,
                end=end,
                model=loaded,
                role=role,
                sample=sample,
                batch_size=batch_size,
            )
        )
    except LookupError as exc:
        if type(exc) is not LookupError:  # a KeyError or IndexError is a bug: show it
            raise
        console.print(f"[red]{exc}[/red]")  # TopicWindow: the documents topic does not exist
        raise typer.Exit(1) from exc
    notes = [f"{read} record(s) in the window, {window.documents} re-scored"]
    if unscored:
        notes.append(f"{unscored} without text (not counted)")
    notes += [f"{count} skipped: {reason}" for reason, count in sorted(skipped.items())]
    console.print("; ".join(notes), highlight=False)
    report = drift.compare(baseline, window, thresholds)
    stdout.print(f"model {loaded.version} ({role.value})", markup=False, highlight=False)
    stdout.print(drift.render_table(report), markup=False, highlight=False)
    if plots is not None:
        title = f"{loaded.version} ({role.value}), {start:%Y-%m-%d %H:%M}Z onwards"
        for path in drift.drift_pngs(baseline, window, plots, report=report, title=title):
            console.print(f"wrote {path}", highlight=False)


async def _observe(
    window: Any,
    *,
    start: datetime,
    end: datetime | None,
    model: Any,
    role: Any,
    sample: int,
    batch_size: int,
) -> tuple[int, Counter[str], int]:
    """Re-score a sample of the window into ``window``; return records read, skips, no-text."""
    from triage_cli.rescore import topic_rescorer
    from triage_contracts import ModelRef
    from triage_runtime.routing import DEFAULT_POLICY
    from triage_runtime.service import producer_for

    # Counted from the features the model computes to score, in the scoring thread.
    tapped = model.tapped(
        lambda texts, features, probabilities: window.observe_scores(texts, probabilities, features)
    )
    skipped: Counter[str] = Counter()
    unscored = 0
    async with topic_rescorer(
        since=start,
        until=end,
        group_id=f"triage-drift-report-{secrets.token_hex(4)}",
        batch_size=batch_size,
        model=tapped,
        model_ref=ModelRef(version=model.version, role=role),
        producer=producer_for("drift-report", "triage-cli"),
        # Drift is measured on scores and features; thresholds and actions play no part.
        policy=DEFAULT_POLICY,
    ) as rescorer:
        total = rescorer.window.total
        share = min(1.0, sample / total) if total else 1.0
        taken = 0
        with progress_bar() as progress:
            task = progress.add_task("re-scoring", total=total)
            async for batch in rescorer.window.batches():
                chosen = [r for r in batch if in_sample(r, share)][: sample - taken]
                taken += len(chosen)
                if chosen:
                    rescored = await rescorer.score(chosen)
                    skipped.update(rescored.skipped)
                    unscored += sum(1 for e in rescored.events if e.prediction is None)
                progress.advance(task, len(batch))
                if taken >= sample:
                    break
    return total, skipped, unscored
