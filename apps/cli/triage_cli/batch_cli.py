"""``triage batch score``: offline scoring of a folder with the serving feature and model code."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import secrets
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import Progress

from triage_cli.console import console, progress_bar, stdout
from triage_cli.exit_codes import STOPPED, exit_if_skipped
from triage_cli.replay_cli import PROCESSES_HELP

batch_app = typer.Typer(
    help="Offline scoring (nightly backfills, re-scoring).", no_args_is_help=True
)

FIELDS = (
    "document_id",
    "path",
    "part",
    "source",
    "time",
    "media_type",
    "extraction",
    "label",
    "confidence",
    "threshold",
    "action",
    "model_version",
    "terms",
)
"""The output's columns; the first five say which document and where it came from, as
``model eval``'s predictions.csv and ``replay``'s report do, so outputs can be joined;
``terms`` is the prediction's explanation (``triage_ml.explain.terms_text``)."""
CHUNK = 64
T = TypeVar("T")


class RowWriter:
    """Writes the rows of each finished batch to .csv or .jsonl at once, flushed, so a run
    that stops keeps every batch it finished."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.count = 0
        self.routed = 0
        self._handle = path.open("w", newline="")
        self._csv: csv.DictWriter[str] | None = None
        if path.suffix.lower() == ".csv":
            self._csv = csv.DictWriter(self._handle, fieldnames=FIELDS)
            self._csv.writeheader()
            self._handle.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append a batch's rows and flush them to the file. A stop signal that comes while
        it writes takes effect once the batch is written and counted, so the count said on a
        stop is the rows in the file."""
        with _stop_signals_held():
            if self._csv is not None:
                self._csv.writerows(rows)
            else:
                self._handle.write("".join(json.dumps(row) + "\n" for row in rows))
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self.count += len(rows)
            self.routed += sum(1 for row in rows if row["action"] == "route")

    def close(self) -> None:
        """Close the file."""
        self._handle.close()


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block: one that comes meanwhile is handed to the
    handler it would have reached when the block ends. (Python runs a signal's handler
    between two bytecodes, so without this a stop could fall between writing a batch and
    counting it.) Signals are handled on the main thread only; elsewhere this holds none."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = [
        (signum, handler)
        for signum in (signal.SIGINT, signal.SIGTERM)
        if callable(handler := signal.getsignal(signum))  # an ignored signal stays ignored
    ]
    came: list[int] = []
    for signum, _ in held:
        signal.signal(signum, lambda number, _frame: came.append(number))
    try:
        yield
    finally:
        for signum, handler in held:
            signal.signal(signum, handler)
        for signum, handler in held:
            if signum in came:
                handler(signum, None)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[list[int]]:
    """Within the block, SIGTERM stops the run as Ctrl-C does (the finished batches are
    kept); the list says which signals came."""
    received: list[int] = []
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        received.append(signum)
        # As Ctrl-C: asyncio's runner cancels the scoring task cleanly; outside it, the
        # default handler raises KeyboardInterrupt. A run started with SIGINT ignored (`nohup
        # … &` from a script) has no such handler, and SIGTERM must still stop it.
        on_interrupt = signal.getsignal(signal.SIGINT)
        if not callable(on_interrupt):
            raise KeyboardInterrupt
        on_interrupt(signal.SIGINT, frame)

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rows(
    files: list[Path],
    model: Any,
    policy: Any,
    progress: Progress,
    *,
    sink: Callable[[list[dict[str, Any]]], None],
    batch_size: int,
) -> Counter[str]:
    """Score the documents the files become (an email: its body and each attachment), one
    row per document to ``sink`` batch by batch; return the documents without text, by
    reason."""
    from triage_contracts import ExtractionStatus
    from triage_ml.dataset import (
        document_count,
        file_documents,
        folder_source,
        modified_at,
        skip_reason,
    )
    from triage_ml.explain import terms_text
    from triage_text.extract import ExtractedText
    from triage_text.pool import ExtractionPool

    task = progress.add_task("counting documents", total=len(files))
    total = 0
    for path in files:
        total += document_count(path)
        progress.advance(task)
    progress.reset(task, total=total, description="scoring documents")
    skipped: Counter[str] = Counter()
    source = folder_source()

    async def extract(pool: ExtractionPool, documents: list[Any]) -> list[ExtractedText]:
        wanted = [d for d in documents if d.refused is None]
        found = iter(await pool.extract_many([(d.data, d.media_type) for d in wanted]))
        return [
            ExtractedText(d.refused) if d.refused is not None else next(found) for d in documents
        ]

    async def run() -> None:
        async with ExtractionPool() as pool:
            for start in range(0, len(files), batch_size):
                chunk = files[start : start + batch_size]
                documents = [d for path in chunk for d in file_documents(path)]
                extracted = await extract(pool, documents)
                readable = [e.text for e in extracted if e.status is ExtractionStatus.OK]
                scored = (
                    await asyncio.to_thread(model.predict_explained, readable) if readable else []
                )
                predictions = iter(scored)
                rows = []
                for document, result in zip(documents, extracted, strict=True):
                    row: dict[str, Any] = dict.fromkeys(FIELDS)
                    modified = modified_at(document.path)
                    row |= {
                        "document_id": document.document_id(),
                        "path": str(document.path),
                        "part": document.part,
                        "source": source,
                        "time": modified.isoformat() if modified else None,
                        "media_type": document.media_type,
                        "extraction": result.status.value,
                        "model_version": model.version,
                        "action": "review",
                    }
                    if result.status is ExtractionStatus.OK:
                        prediction, explanation = next(predictions)
                        prediction = policy.apply(model.version, prediction)
                        row |= {
                            "label": prediction.label,
                            "confidence": prediction.confidence,
                            "threshold": prediction.threshold,
                            "action": prediction.action.value,
                            "terms": terms_text(explanation),
                        }
                    else:
                        skipped[skip_reason(result.status)] += 1
                    rows.append(row)
                sink(rows)
                progress.advance(task, len(documents))

    asyncio.run(run())
    return skipped


def _topic_rows(
    since: str,
    until: str | None,
    model: Any,
    policy: Any,
    *,
    sink: Callable[[list[dict[str, Any]]], None],
    batch_size: int,
    pace: Any,
    processes: int,
) -> dict[str, int]:
    """Score a time window of the documents topic, rows to ``sink`` batch by batch; return
    the skipped counts."""
    from triage_cli.replay_cli import parse_window
    from triage_cli.rescore import scored_ahead, topic_rescorer, where_columns
    from triage_contracts import ModelRef, ModelRole
    from triage_ml.explain import terms_text
    from triage_runtime.service import producer_for

    start, end = parse_window(since, until)
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
                    rows = []
                    for event in done.events:
                        row: dict[str, Any] = dict.fromkeys(FIELDS)
                        prediction = event.prediction
                        row |= where_columns(event.document) | {
                            "document_id": event.document_id,
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
                                "terms": terms_text(event.explanation),
                            }
                        rows.append(row)
                    sink(rows)
                    progress.advance(task, len(batch))

    asyncio.run(run())
    return skipped


def _kept_on_stop(writer: RowWriter, score: Callable[[], T]) -> T:
    """Run ``score`` writing to ``writer``; if it stops (an error, Ctrl-C, SIGTERM), say how
    many documents the finished batches hold and where, and exit ``STOPPED``."""
    from triage_cli.services import unreachable

    try:
        with sigterm_as_interrupt() as signals:
            return score()
    except typer.Exit:
        raise
    except (KeyboardInterrupt, Exception) as exc:
        if writer.count == 0 and unreachable(exc):
            raise  # nothing was written: the command group says what was unreachable
        if isinstance(exc, KeyboardInterrupt):
            why = "SIGTERM" if signals else "interrupted"
        else:
            why = unreachable(exc) or f"{type(exc).__name__}: {exc}"
        console.print(
            f"[red]stopped ({escape(why)}): the {writer.count} documents of the finished "
            f"batches are in {escape(str(writer.path))}; exit status {STOPPED}[/red]",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(STOPPED) from exc
    finally:
        writer.close()


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
        int,
        typer.Option(
            min=1,
            max=1000,
            help="Files (--input) or documents (--topic-range) per batch; each finished "
            "batch is written to --output at once.",
        ),
    ] = CHUNK,
    processes: Annotated[
        int, typer.Option(min=1, max=64, help=f"With --topic-range: {PROCESSES_HELP}")
    ] = 1,
) -> None:
    """Score a folder, or a time range of the documents topic, with the serving code.

    Extraction, model and routing policy are the classifier's, so a score here is the score
    online. A file that cannot be read gets a row (extraction status, action review), as it
    would online; a topic record that cannot be read or scored gets none and is counted.
    Every row says which document (document_id: for a file, the id ingest's drop folder
    gives it), the file, the source and the time (a file's modification, a topic
    document's arrival). Each batch is written as it finishes: a run stopped by an error,
    Ctrl-C or SIGTERM keeps the finished batches' rows, says how many, and exits 6.
    Exit status 4 when records were skipped (the output holds the rest), else 0.
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
    files: list[Path] = []
    if input_dir is not None:
        files = sorted(
            p for p in input_dir.rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        if not files:
            console.print(f"[red]no files under {input_dir}[/red]")
            raise typer.Exit(2)
        loaded = load_model(model)
        policy = current_policy(required=False)
    else:
        assert topic_range is not None
        loaded = load_model(model, prepare=processes == 1)
        policy = current_policy()
    pace = Pace()
    writer = RowWriter(output)
    if input_dir is not None:

        def score_folder() -> Counter[str]:
            with progress_bar() as progress:
                return _rows(
                    files, loaded, policy, progress, sink=writer.write, batch_size=batch_size
                )

        unread = _kept_on_stop(writer, score_folder)
    else:
        assert topic_range is not None
        since, _, until = topic_range.partition("..")
        skipped = _kept_on_stop(
            writer,
            lambda: _topic_rows(
                since,
                until or None,
                loaded,
                policy,
                sink=writer.write,
                batch_size=batch_size,
                pace=pace,
                processes=processes,
            ),
        )
    rows = writer.count
    stdout.print(
        f"scored {rows} documents with {loaded.version}: {writer.routed} would be routed, "
        f"{rows - writer.routed} would go to review; results in {output}"
    )
    stdout.print(pace.summary(rows))
    for reason, count in sorted(skipped.items()):
        stdout.print(f"skipped {count} record(s): {reason}")
    if input_dir is not None:
        from triage_ml.dataset import describe_skipped

        stdout.print(
            f"{len(files)} files became {rows} documents; "
            f"{describe_skipped(unread)} (not scored: action review)",
            highlight=False,
        )
    exit_if_skipped(skipped)
