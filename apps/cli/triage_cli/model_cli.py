"""``triage model``: train, evaluate on the golden set, promote through gates, and the registry."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, TaskID
from rich.table import Table

from triage_cli.console import console, progress_bar, stdout

if TYPE_CHECKING:
    import numpy as np

    from triage_ml.dataset import LabelledData

model_app = typer.Typer(
    help="Train, evaluate, promote and roll back models (artifacts and registry aliases).",
    no_args_is_help=True,
)

KindOption = Annotated[
    str,
    typer.Option(
        "--kind",
        help="tfidf-lr; embed-lr (sentence-transformers embeddings); or tfidf-embed-lr "
        "(both joined: better on text unlike the training data, far slower).",
    ),
]


def predictions_fields() -> tuple[str, ...]:
    """The columns of ``predictions.csv`` that ``model eval --out`` writes: which document
    and where it came from (as ``batch score`` writes them, to join), its slice, then
    evaluation's per-document columns."""
    from triage_ml.evaluation import PREDICTION_FIELDS

    return ("document_id", "path", "part", "source", "time", "slice", *PREDICTION_FIELDS)


class PhaseBars:
    """``model.train``'s progress callback: a bar per phase (one step per fold)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        task = self._tasks.get(phase)
        if task is None:
            task = self._tasks[phase] = self._progress.add_task(phase, total=total)
        self._progress.update(task, completed=done, total=total)


def _link(out: Path, artifact: Path, link: str | None) -> None:
    """Point ``out/link`` at ``artifact`` atomically (a relative symlink, then rename)."""
    if not link:
        return
    tmp = out / f".{link}.tmp"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(artifact.name)
    tmp.replace(out / link)


def _pictures(result: Any) -> Any:
    """Write the confusion matrix and calibration curve (cross-validated) into an artifact."""
    from triage_ml.evaluation import evaluate
    from triage_ml.plots import calibration_png, confusion_matrix_png

    metadata = result.metadata
    labels = metadata["labels"]

    def write(directory: Path) -> None:
        report = evaluate(
            truth=result.cv_truth,
            probabilities=result.cv_probabilities,
            labels=labels,
            thresholds=metadata["thresholds"],
            target_precision=metadata["target_precision"],
        )
        title = f"{metadata['version']} (5-fold cross-validated, train split)"
        confusion_matrix_png(report, directory / "confusion_matrix.png", title=title)
        calibration_png(
            result.cv_truth,
            result.cv_probabilities,
            labels,
            directory / "calibration.png",
            title=title,
        )

    return write


def read_examples(sources: list[Path], *, description: str) -> LabelledData:
    """Read every source with a progress bar, then say what emails became and what was
    skipped (by reason)."""
    from triage_cli.training_data import count_items, read_source
    from triage_ml.dataset import DatasetError, LabelledData, describe_skipped

    data = LabelledData()
    try:
        total = sum(count_items(s) for s in sources)
        with progress_bar() as progress:
            task = progress.add_task(description, total=total)
            for source in sources:
                read_source(source, data, advance=lambda: progress.advance(task))
    except (DatasetError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if data.email_documents:
        console.print(data.describe_emails(), highlight=False, soft_wrap=True)
    skipped = data.skipped_by_reason
    console.print(
        f"{len(data.examples)} documents with text; {describe_skipped(skipped)}",
        highlight=False,
        soft_wrap=True,
    )
    return data


def lost_labels_message(data: LabelledData) -> str | None:
    """One line naming each queue none of whose documents had text, or None."""
    from triage_ml.dataset import describe_skipped

    lost = data.lost_labels()
    if not lost:
        return None
    return "; ".join(
        f"no document with text in queue {label} ({describe_skipped(reasons)})"
        for label, reasons in lost.items()
    )


@model_app.command("train")
def model_train(
    data: Annotated[
        list[Path],
        typer.Option(
            help="Labelled data: a folder of DATA/<label>/<files> (PDF, text, HTML, .eml: an "
            "email is its body and each attachment, as ingest makes it), or a .csv / .jsonl "
            "with text and label. Repeat for several sources.",
            exists=True,
        ),
    ],
    from_reviews: Annotated[
        bool,
        typer.Option(
            help="Add human review decisions from TRIAGE_DATABASE_URL (those for one of the "
            "model's labels; not spam, not-a-document or other queues)."
        ),
    ] = False,
    kind: KindOption = "tfidf-lr",
    out: Annotated[Path, typer.Option(help="Directory that receives the artifact.")] = Path(
        ".stack/models"
    ),
    seed: Annotated[int, typer.Option(help="Random seed for folds and the classifier.")] = 0,
    target_precision: Annotated[
        float, typer.Option(min=0.5, max=1.0, help="Precision that auto-routing must reach.")
    ] = 0.95,
    holdout_percent: Annotated[
        int, typer.Option(min=0, max=50, help="Share kept out by the frozen hashed split.")
    ] = 10,
    embedding_model: Annotated[
        Path | None,
        typer.Option(
            help="Sentence-transformers model directory for the embedding kinds (default: "
            "$TRIAGE_EMBEDDING_MODEL_PATH, else the packaged all-MiniLM-L6-v2)."
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="embed-lr and tfidf-embed-lr: torch-fp32 (default) or torch-bf16 (bfloat16 matrix "
            "products; fast on CPUs with AVX-512 BF16 or AMX). Recorded in the metadata.",
        ),
    ] = None,
    changelog: Annotated[str, typer.Option(help="One line saying what changed.")] = "",
    link: Annotated[
        str | None,
        typer.Option(help="Also point OUT/<LINK> (e.g. champion) at the new artifact."),
    ] = None,
) -> None:
    """Train a model: calibrated probabilities, per-label thresholds, pictures; print its path."""
    from triage_ml import model as model_lib

    if kind not in model_lib.KINDS:
        console.print(
            f"[red]unknown kind {kind!r}; choose one of {', '.join(model_lib.KINDS)}[/red]"
        )
        raise typer.Exit(2)
    try:
        backend = model_lib.embedding_backend(kind, backend)
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if kind in model_lib.EMBEDDING_KINDS:
        from triage_ml.embeddings import embeddings_installed

        if not embeddings_installed():
            console.print(
                f"[red]{kind} needs the embeddings extra (sentence-transformers, torch), which "
                "is not installed here: install triage-cli\\[embeddings], or train tfidf-lr[/red]",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2)
    read = read_examples(data, description="extracting text")
    if from_reviews:
        from triage_cli.training_data import review_decisions
        from triage_runtime.settings import CommonSettings

        settings = CommonSettings()
        reviewed = review_decisions(settings.database_url, settings.open_blob_store)
        console.print(f"added {len(reviewed)} human review decisions")
        read.extend(reviewed)
    examples = read.examples
    if not examples:
        console.print("[red]no labelled documents with text in the given sources[/red]")
        raise typer.Exit(2)
    lost = lost_labels_message(read)
    if lost is not None:
        console.print(f"[red]training stopped: {lost}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2)

    embedder = str(embedding_model) if embedding_model else None
    fingerprint = ""
    if kind in model_lib.EMBEDDING_KINDS:
        from triage_ml.embeddings import default_model_path, model_fingerprint

        fingerprint = model_fingerprint(embedding_model or default_model_path())
    version = model_lib.version_for(
        examples,
        kind=kind,
        seed=seed,
        target_precision=target_precision,
        holdout_percent=holdout_percent,
        embedding_fingerprint=fingerprint,
        backend=backend,
    )
    if (out / version).exists():
        _link(out, out / version, link)
        console.print(f"{version} is already trained on exactly this data; nothing to do")
        stdout.print(str(out / version))
        return
    with progress_bar() as progress:
        result = model_lib.train(
            examples,
            kind=kind,
            seed=seed,
            target_precision=target_precision,
            holdout_percent=holdout_percent,
            embedding_model_path=embedder,
            backend=backend,
            changelog=changelog,
            progress=PhaseBars(progress),
        )
    metadata = result.metadata
    for line in never_routed_warnings(metadata):
        console.print(f"[yellow]{line}[/yellow]", highlight=False, soft_wrap=True)
    path = model_lib.save(result.pipeline, metadata, out_dir=out, extras=_pictures(result))
    _link(out, path, link)
    skipped = sum(read.skipped.values())
    _print_trained(metadata, path, f"{len(examples)} ({skipped} documents without text skipped)")
    stdout.print(str(path))


def never_routed_warnings(metadata: dict[str, Any]) -> list[str]:
    """A warning line per queue whose threshold stayed at 1.0 (``never_routed``)."""
    target = float(metadata["target_precision"])
    return [
        f"warning: queue {entry['label']} is never routed: its threshold stays at 1.0, "
        f"as cross-validation never reached {target:.2f} precision on its "
        f"{entry['train_examples']} training examples; everything predicted as "
        f"{entry['label']} goes to review"
        for entry in metadata.get("never_routed", [])
    ]


def describe_calibration(calibration: dict[str, Any]) -> str:
    """``temperature (log-loss 0.081, ECE 0.012); sigmoid (…); …; serving fold-ensemble``:
    the chosen calibrator, then each candidate's held-out figures."""
    chosen = calibration["method"]
    candidates = "; ".join(
        f"{method} log-loss {figures['log_loss']:.4f}, ECE {figures['ece']:.4f}"
        for method, figures in calibration["candidates"].items()
    )
    return (
        f"{chosen}, chosen by {calibration['selected_by']} ({candidates}); "
        f"serving {calibration['serving']}"
    )


def _print_trained(metadata: dict[str, Any], path: Path, examples: str) -> None:
    """The table `model train` prints about the artifact it wrote."""
    table = Table(title=f"model {metadata['version']}", show_header=False)
    table.add_row("artifact", str(path))
    table.add_row("examples", examples)
    splits = metadata["splits"]
    table.add_row("splits", f"train {splits['train']}, holdout {splits['holdout']} (hashed)")
    table.add_row("labels", ", ".join(metadata["labels"]))
    if "embedding" in metadata:
        embedding = metadata["embedding"]
        table.add_row("embedder", f"{embedding['model_name']} ({embedding['backend']})")
    table.add_row("training data sha256", metadata["training_data_sha256"])
    for name, value in metadata["metrics"].items():
        table.add_row(name, str(value))
    if "calibration" in metadata:
        chosen = metadata["calibration"]
        table.add_row("calibration", f"{chosen['method']}, serving {chosen['serving']}")
    table.add_row("thresholds", json.dumps(metadata["thresholds"]))
    never = [entry["label"] for entry in metadata.get("never_routed", [])]
    table.add_row("never routed", ", ".join(never) if never else "none")
    table.add_row("pictures", "confusion_matrix.png, calibration.png")
    console.print(table)
    if "calibration" in metadata:
        console.print(
            f"calibration: {describe_calibration(metadata['calibration'])}",
            highlight=False,
            soft_wrap=True,
        )


def _golden(golden: list[Path]) -> LabelledData:
    read = read_examples(golden, description="reading the golden set")
    lost = lost_labels_message(read)
    if lost is not None:
        console.print(f"[yellow]golden set: {lost}[/yellow]", highlight=False, soft_wrap=True)
    if not read.examples:
        console.print("[red]no golden document with text in the given sources[/red]")
        raise typer.Exit(2)
    return read


def score_one_by_one(
    model: Any, texts: list[str], *, description: str = "scoring the golden set"
) -> tuple[np.ndarray, list[float]]:
    """Score texts one at a time (for latency) with a progress bar; return the
    probabilities and each document's seconds."""
    import time

    import numpy as np

    latencies = []
    rows = []
    with progress_bar() as progress:
        task = progress.add_task(description, total=len(texts))
        for text in texts:
            started = time.perf_counter()
            rows.append(model.predict_proba([text])[0])
            latencies.append(time.perf_counter() - started)
            progress.advance(task)
    return np.vstack(rows), latencies


def _report(model: Any, truth: list[str], probabilities: np.ndarray, latencies: list[float]) -> Any:
    from triage_ml.evaluation import evaluate

    return evaluate(
        truth=truth,
        probabilities=probabilities,
        labels=list(model.labels),
        thresholds=model.thresholds,
        target_precision=float(model.metadata.get("target_precision", 0.95)),
        latencies_s=latencies,
    )


def evaluate_model(model: Any, texts: list[str], truth: list[str]) -> Any:
    """Score the golden set one document at a time (for latency), then report."""
    probabilities, latencies = score_one_by_one(model, texts)
    return _report(model, truth, probabilities, latencies)


def class_picture_name(label: str) -> str:
    """``calibration-<label>.png``, the label made safe for a file name."""
    return f"calibration-{re.sub(r'[^A-Za-z0-9._-]+', '_', label)}.png"


def _write_eval_outputs(
    out: Path,
    *,
    model: Any,
    report: Any,
    read: LabelledData,
    probabilities: np.ndarray,
) -> list[str]:
    """Write report.json, the pictures and predictions.csv into ``out``; return their names."""
    from triage_ml.dataset import folder_source
    from triage_ml.evaluation import prediction_rows
    from triage_ml.plots import calibration_png, class_calibration_png, confusion_matrix_png

    truth = [e.label for e in read.examples]
    labels = list(model.labels)
    title = f"{model.version} (golden)"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    confusion_matrix_png(report, out / "confusion_matrix.png", title=title)
    calibration_png(truth, probabilities, labels, out / "calibration.png", title=title)
    written = ["report.json", "confusion_matrix.png", "calibration.png"]
    for label in labels:
        name = class_picture_name(label)
        class_calibration_png(truth, probabilities, labels, label, out / name, title=title)
        written.append(name)
    rows = prediction_rows(
        truth=truth, probabilities=probabilities, labels=labels, thresholds=model.thresholds
    )
    with (out / "predictions.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=predictions_fields())
        writer.writeheader()
        for origin, row in zip(read.origins, rows, strict=True):
            where = {
                "document_id": origin.document_id,
                "path": origin.path,
                "part": origin.part,
                "source": folder_source(),
                "time": origin.time.isoformat() if origin.time else None,
                "slice": origin.slice,
            }
            writer.writerow(where | row)
    written.append("predictions.csv")
    return written


@model_app.command("eval")
def model_eval(
    golden: Annotated[
        list[Path],
        typer.Option(
            help="The golden set: a folder of GOLDEN/<label>/<files> (.eml as in training; "
            "GOLDEN/<label>/<slice>/<files> for results per slice), .csv or .jsonl (an "
            "optional source column: the slice).",
            exists=True,
        ),
    ],
    model: Annotated[
        str, typer.Option(help="An artifact directory, a registered version, or an alias.")
    ] = "champion",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write here report.json, confusion_matrix.png, reliability diagrams "
            "(calibration.png, and calibration-LABEL.png per label), predictions.csv "
            "(a row per document scored) and, when the golden set has slices, slices.csv.",
        ),
    ] = None,
) -> None:
    """Evaluate a model on the golden set: F1, per-class P/R and ECE, the confusion
    matrix, coverage, latency.

    When the golden set has slices (sub-folders below the label folders, GOLDEN/LABEL/
    SLICE/..., or a source column in a CSV/JSONL), also macro-F1, accuracy, ECE, coverage
    and count per slice.
    """
    from triage_cli.registry_support import load_model
    from triage_ml.evaluation import (
        SLICE_FIELDS,
        evaluate_slices,
        render_confusion,
        render_slices,
        render_table,
        slice_rows,
    )

    loaded = load_model(model)
    read = _golden(golden)
    texts = [e.text for e in read.examples]
    truth = [e.label for e in read.examples]
    probabilities, latencies = score_one_by_one(loaded, texts)
    report = _report(loaded, truth, probabilities, latencies)

    stdout.print(f"model {loaded.version} on {len(texts)} golden documents")
    stdout.print(render_table(report), markup=False, highlight=False)
    stdout.print("confusion matrix (documents; true label down, predicted across)")
    stdout.print(render_confusion(report), markup=False, highlight=False)
    slices = evaluate_slices(
        slices=[origin.slice for origin in read.origins],
        truth=truth,
        probabilities=probabilities,
        labels=list(loaded.labels),
        thresholds=loaded.thresholds,
        target_precision=report.target_precision,
    )
    if slices:
        stdout.print("per slice (sub-folder below the label folder, or the source column)")
        stdout.print(render_slices(slices), markup=False, highlight=False)
    if out is not None:
        written = _write_eval_outputs(
            out, model=loaded, report=report, read=read, probabilities=probabilities
        )
        if slices:
            with (out / "slices.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=SLICE_FIELDS)
                writer.writeheader()
                writer.writerows(slice_rows(slices))
            written.append("slices.csv")
        console.print(f"wrote to {out}: {', '.join(written)}", highlight=False, soft_wrap=True)


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="The registered version to promote.")],
    golden: Annotated[
        list[Path], typer.Option(help="The golden set the gates are checked on.", exists=True)
    ],
    to: Annotated[str, typer.Option("--to", help="champion, canary or shadow.")] = "champion",
    partitions: Annotated[
        str | None,
        typer.Option(
            help="With --to canary: the documents-topic partitions it scores, e.g. 0,3 "
            "(set in the routing policy with the promotion)."
        ),
    ] = None,
    sample: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="With --to shadow: the share of documents it also scores (routing policy).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Promote even if gates fail (needs --reason; audited).")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why; required with --force.")] = None,
    min_macro_f1: Annotated[float, typer.Option(help="Gate: lowest macro-F1.")] = 0.85,
    max_ece: Annotated[float, typer.Option(help="Gate: highest calibration error.")] = 0.15,
    min_coverage: Annotated[float, typer.Option(help="Gate: lowest auto-routed share.")] = 0.5,
    min_routed_precision: Annotated[
        float, typer.Option(help="Gate: lowest precision of auto-routed documents.")
    ] = 0.95,
    max_regression: Annotated[
        float,
        typer.Option(
            help="Gate: largest drop against the champion (on macro-F1, coverage, routed "
            "precision), whatever the alias."
        ),
    ] = 0.01,
    actor: Annotated[str | None, typer.Option(help="Who is acting (default: OS user).")] = None,
) -> None:
    """Move an alias to VERSION if it passes the golden-set gates (or with --force and a reason).

    The gates count every queue of the golden set and of the model; the regression gate
    compares with the champion, evaluated on the same golden set, whichever alias is moved
    (a canary or shadow is judged against what it would replace, not against the last canary).
    Exit status: 0 moved (or already there), 1 refused by the gates, or because a label
    has no routed topic on the cluster (it says the `triage topics apply` to run first).

    A canary takes traffic on the partitions given with --partitions, a shadow on the sample
    given with --sample: both are set in the routing policy, in the same transaction as the
    move, and running classifiers take them without a restart.
    """
    from triage_cli.database import default_actor
    from triage_cli.policy_cli import change_for, current_policy
    from triage_cli.registry_cli import run_with_registry
    from triage_cli.registry_support import load_model, resolve_alias
    from triage_cli.topics_cli import apply_command, missing_routed_topics
    from triage_ml.evaluation import GateConfig, check_gates, render_table

    if force and not reason:
        console.print("[red]--force needs --reason: a forced promotion is audited[/red]")
        raise typer.Exit(2)
    traffic = change_for(to, partitions=partitions, sample=sample)
    read = _golden(golden)
    texts = [e.text for e in read.examples]
    truth = [e.label for e in read.examples]
    candidate_model = load_model(version)
    candidate = evaluate_model(candidate_model, texts, truth)
    # Every candidate is judged against the champion, never against the alias's current
    # holder: a canary usually has none, and the last canary is no standard.
    champion_version = resolve_alias("champion")
    champion = None
    if champion_version and champion_version != candidate_model.version:
        champion = evaluate_model(load_model(champion_version), texts, truth)
    gates = GateConfig(
        min_macro_f1=min_macro_f1,
        max_ece=max_ece,
        min_coverage=min_coverage,
        min_routed_precision=min_routed_precision,
        max_regression=max_regression,
    )
    result = check_gates(candidate, champion=champion, config=gates)
    stdout.print(render_table(candidate, champion=champion), markup=False, highlight=False)
    gate_report = {
        "golden_documents": len(texts),
        "candidate": candidate.to_dict(),
        "champion": champion.to_dict() if champion else None,
        "champion_version": champion_version,
        "config": gates.__dict__,
        "passed": result.passed,
        "failures": list(result.failures),
    }
    if not result.passed:
        for failure in result.failures:
            console.print(f"[red]gate failed:[/red] {failure}", highlight=False)
        if not force:
            console.print(
                f"refused: {version} stays out of {to} (use --force --reason to override)"
            )
            raise typer.Exit(1)
    # The router publishes each label's documents to its queue's topic, which the cluster
    # does not make on first use: they must exist before a model that predicts it serves.
    missing = missing_routed_topics(candidate_model.labels)
    if missing:
        console.print(
            f"refused: {version} stays out of {to}: no routed topic on the cluster for "
            f"{', '.join(missing)}; create them first: {apply_command(missing)}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)

    async def move(registry: Any) -> Any:
        await registry.set_eval(candidate_model.version, candidate.to_dict())
        return await registry.move_alias(
            to,
            candidate_model.version,
            actor=actor or default_actor(),
            action="promote",
            reason=reason,
            forced=not result.passed,
            gate_report=gate_report,
            policy=traffic,
        )

    moved = run_with_registry(move)
    if not moved.changed:
        console.print(f"{to} already points at {candidate_model.version}; nothing changed")
    else:
        note = " (FORCED past failing gates)" if not result.passed else " (gates passed)"
        stdout.print(f"{to}: {moved.from_version or '(none)'} → {candidate_model.version}{note}")
    policy = current_policy()
    if to == "canary":
        shown = ", ".join(str(p) for p in sorted(policy.canary_partitions))
        console.print(
            f"the canary scores partitions {shown} (routing policy v{policy.version})"
            if shown
            else "[yellow]the canary takes no traffic: no partitions in the routing policy "
            "(promote with --partitions, or `triage policy set --canary-partitions`)[/yellow]"
        )
    elif to == "shadow":
        console.print(
            f"the shadow also scores {policy.shadow_sample:.0%} of documents"
            if policy.shadow_sample
            else "[yellow]the shadow scores nothing: its sample is 0 (promote with --sample, "
            "or `triage policy set --shadow-sample`)[/yellow]"
        )


def _mount_registry_commands() -> None:
    from triage_cli.registry_cli import registry_app

    model_app.registered_commands.extend(registry_app.registered_commands)


_mount_registry_commands()
