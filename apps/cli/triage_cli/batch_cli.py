"""``triage batch score``: offline scoring of a folder with the serving feature and model code."""

from __future__ import annotations

import asyncio
import csv
import json
import secrets
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress

from triage_cli.console import console, progress_bar, stdout
from triage_cli.exit_codes import exit_if_skipped
from triage_cli.replay_cli import PROCESSES_HELP

batch_app = typer.Typer(
    help="Offline scoring (nightly backfills, re-scoring).", no_args_is_help=True
)

FIELDS = (
    "path",
    "part",
    "document_id",
    "media_type",
    "extraction",
    "label",
    "confidence",
    "threshold",
    "action",
    "model_version",
)
CHUNK = 64


def _rows(
    files: list[Path], model: Any, policy: Any, progress: Progress
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """Score the documents the files become (an email: its body and each attachment);
    return one row per document and the documents without text, by reason."""
    from triage_contracts import ExtractionStatus
    from triage_ml.dataset import document_count, file_documents, skip_reason
    from triage_text.extract import ExtractedText
    from triage_text.pool import ExtractionPool

    task = progress.add_task("counting documents", total=len(files))
    total = 0
    for path in files:
        total += document_count(path)
        progress.advance(task)
    progress.reset(task, total=total, description="scoring documents")
    rows: list[dict[str, Any]] = []
    skipped: Counter[str] = Counter()

    async def extract(pool: ExtractionPool, documents: list[Any]) -> list[ExtractedText]:
        wanted = [d for d in documents if d.refused is None]
        found = iter(await pool.extract_many([(d.data, d.media_type) for d in wanted]))
        return [
            ExtractedText(d.refused) if d.refused is not None else next(found) for d in documents
        ]

    async def run() -> None:
        async with ExtractionPool() as pool:
            for start in range(0, len(files), CHUNK):
                chunk = files[start : start + CHUNK]
                documents = [d for path in chunk for d in file_documents(path)]
                extracted = await extract(pool, documents)
                readable = [e.text for e in extracted if e.status is ExtractionStatus.OK]
                scored = await asyncio.to_thread(model.predict, readable) if readable else []
                predictions = iter(scored)
                for document, result in zip(documents, extracted, strict=True):
                    row: dict[str, Any] = dict.fromkeys(FIELDS)
                    row |= {
                        "path": str(document.path),
                        "part": document.part,
                        "media_type": document.media_type,
                        "extraction": result.status.value,
                        "model_version": model.version,
                        "action": "review",
                    }
                    if result.status is ExtractionStatus.OK:
                        prediction = policy.apply(model.version, next(predictions))
                        row |= {
                            "label": prediction.label,
                            "confidence": prediction.confidence,
                            "threshold": prediction.threshold,
                            "action": prediction.action.value,
                        }
                    else:
                        skipped[skip_reason(result.status)] += 1
                    rows.append(row)
                progress.advance(task, len(documents))

    asyncio.run(run())
    return rows, skipped


def _topic_rows(
    since: str,
    until: str | None,
    model: Any,
    policy: Any,
    *,
    batch_size: int,
    pace: Any,
    processes: int,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Score a time window of the documents topic; return rows and skipped counts."""
    from triage_cli.replay_cli import parse_window
    from triage_cli.rescore import scored_ahead, topic_rescorer
    from triage_contracts import ModelRef, ModelRole
    from triage_runtime.service import producer_for

    start, end = parse_window(since, until)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}

    async def run() -> None:
        async with topic_rescorer(
            since=start,
            until=end,
            group_id=f"triage-batch-{secrets.token_hex(4)}",
            batch_size=batch_size,
            model=model,
            model_ref=ModelRef(version=model.version, role=ModelRole.CHAMPION),
            producer=producer_for("batch", "triage-cli"),
            policy=policy,
            processes=processes,
        ) as rescorer:
            with progress_bar() as progress:
                task = progress.add_task("scoring", total=rescorer.window.total)
                async for batch, done in scored_ahead(
                    pace.watch(rescorer.window.batches()), rescorer.score, ahead=rescorer.ahead
                ):
                    for reason, count in done.skipped.items():
                        skipped[reason] = skipped.get(reason, 0) + count
                    for event in done.events:
                        row: dict[str, Any] = dict.fromkeys(FIELDS)
                        prediction = event.prediction
                        row |= {
                            "document_id": event.document_id,
                            "path": event.document.filename,
                            "part": email.part if (email := event.document.email) else None,
                            "media_type": event.document.blob.media_type,
                            "extraction": event.extraction.status.value,
                            "model_version": model.version,
                            "action": prediction.action.value if prediction else "review",
                        }
                        if prediction is not None:
                            row |= {
                                "label": prediction.label,
                                "confidence": prediction.confidence,
                                "threshold": prediction.threshold,
                            }
                        rows.append(row)
                    progress.advance(task, len(batch))

    asyncio.run(run())
    return rows, skipped


@batch_app.command("score")
def batch_score(
    output: Annotated[Path, typer.Option(help="Results: .jsonl or .csv (by extension).")],
    input_dir: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="A folder; every file below it is scored (an .eml: its body and each "
            "attachment, one row each).",
            exists=True,
        ),
    ] = None,
    topic_range: Annotated[
        str | None,
        typer.Option(
            "--topic-range",
            help=(
                "Score the documents topic between two times, SINCE..UNTIL (ISO 8601 or an "
                "age such as 2h; UNTIL may be left out: the topic's end)."
            ),
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="An artifact directory, a registered version, or an alias.")
    ] = "champion",
    batch_size: Annotated[
        int, typer.Option(min=1, max=1000, help="Documents per batch (--topic-range).")
    ] = CHUNK,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help=f"With --topic-range: {PROCESSES_HELP}")
    ] = 1,
) -> None:
    """Score a folder, or a time range of the documents topic, with the serving code.

    Extraction, model and routing policy are the classifier's, so a score here is the score
    online. A file that cannot be read gets a row (extraction status, action review), as it
    would online; a topic record that cannot be read or scored gets none and is counted.
    Exit status 4 when such records were skipped (the output holds the rest), else 0.
    """
    from triage_cli.policy_cli import current_policy
    from triage_cli.registry_support import load_model
    from triage_cli.rescore import Pace

    if (input_dir is None) == (topic_range is None):
        console.print("[red]give one of --input DIR or --topic-range SINCE..UNTIL[/red]")
        raise typer.Exit(2)
    if output.suffix.lower() not in {".jsonl", ".csv"}:
        console.print("[red]--output must end in .jsonl or .csv[/red]")
        raise typer.Exit(2)
    skipped: dict[str, int] = {}
    unread: Counter[str] = Counter()
    if input_dir is not None:
        files = sorted(
            p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if not files:
            console.print(f"[red]no files under {input_dir}[/red]")
            raise typer.Exit(2)
        loaded = load_model(model)
        pace = Pace()
        with progress_bar() as progress:
            rows, unread = _rows(files, loaded, current_policy(required=False), progress)
    else:
        assert topic_range is not None
        since, _, until = topic_range.partition("..")
        loaded = load_model(model, prepare=processes == 1)
        pace = Pace()
        rows, skipped = _topic_rows(
            since,
            until or None,
            loaded,
            current_policy(),
            batch_size=batch_size,
            pace=pace,
            processes=processes,
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() == ".csv":
        with output.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    else:
        output.write_text("".join(json.dumps(row) + "\n" for row in rows))
    routed = sum(1 for r in rows if r["action"] == "route")
    stdout.print(
        f"scored {len(rows)} documents with {loaded.version}: {routed} would be routed, "
        f"{len(rows) - routed} would go to review; results in {output}"
    )
    stdout.print(pace.summary(len(rows)))
    for reason, count in sorted(skipped.items()):
        stdout.print(f"skipped {count} record(s): {reason}")
    if input_dir is not None:
        from triage_ml.dataset import describe_skipped

        stdout.print(
            f"{len(files)} files became {len(rows)} documents; "
            f"{describe_skipped(unread)} (not scored: action review)",
            highlight=False,
        )
    exit_if_skipped(skipped)
