"""``triage batch score``: offline scoring of a folder with the serving feature and model code."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from triage_cli.console import console, stdout

batch_app = typer.Typer(
    help="Offline scoring (nightly backfills, re-scoring).", no_args_is_help=True
)

FIELDS = (
    "path",
    "media_type",
    "extraction",
    "label",
    "confidence",
    "threshold",
    "action",
    "model_version",
)
CHUNK = 64


def _rows(files: list[Path], model: Any, progress: Progress) -> list[dict[str, Any]]:
    from triage_contracts import ExtractionStatus
    from triage_ml.dataset import media_type_of
    from triage_ml.extraction_pool import ExtractionPool

    task = progress.add_task("scoring", total=len(files))
    rows: list[dict[str, Any]] = []

    async def run() -> None:
        async with ExtractionPool() as pool:
            for start in range(0, len(files), CHUNK):
                chunk = files[start : start + CHUNK]
                types = [media_type_of(p) for p in chunk]
                extracted = await pool.extract_many(
                    [(p.read_bytes(), t) for p, t in zip(chunk, types, strict=True)]
                )
                readable = [e.text for e in extracted if e.status is ExtractionStatus.OK]
                predictions = iter(await asyncio.to_thread(model.predict, readable))
                for path, media_type, result in zip(chunk, types, extracted, strict=True):
                    row: dict[str, Any] = dict.fromkeys(FIELDS)
                    row |= {
                        "path": str(path),
                        "media_type": media_type,
                        "extraction": result.status.value,
                        "model_version": model.version,
                        "action": "review",
                    }
                    if result.status is ExtractionStatus.OK:
                        prediction = next(predictions)
                        row |= {
                            "label": prediction.label,
                            "confidence": prediction.confidence,
                            "threshold": prediction.threshold,
                            "action": prediction.action.value,
                        }
                    rows.append(row)
                progress.advance(task, len(chunk))

    asyncio.run(run())
    return rows


@batch_app.command("score")
def batch_score(
    input_dir: Annotated[
        Path, typer.Option("--input", help="A folder; every file below it is scored.", exists=True)
    ],
    output: Annotated[Path, typer.Option(help="Results: .jsonl or .csv (by extension).")],
    model: Annotated[
        str, typer.Option(help="An artifact directory, a registered version, or an alias.")
    ] = "champion",
) -> None:
    """Score every document under a folder with the same extraction and model as serving."""
    from triage_cli.registry_support import load_model

    if output.suffix.lower() not in {".jsonl", ".csv"}:
        console.print("[red]--output must end in .jsonl or .csv[/red]")
        raise typer.Exit(2)
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        console.print(f"[red]no files under {input_dir}[/red]")
        raise typer.Exit(2)
    loaded = load_model(model)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        rows = _rows(files, loaded, progress)
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
