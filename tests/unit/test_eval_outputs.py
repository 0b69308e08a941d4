"""What ``triage model eval --out`` writes and prints, what training says about a queue it
never routes, and the progress training reports (real small models, files only)."""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.helpers import small_examples
from tests.unit.test_email_training import plain_mail
from triage_cli.main import app
from triage_cli.model_cli import class_picture_name, predictions_fields
from triage_contracts import derive_document_id
from triage_ml import model as model_lib
from triage_ml.dataset import document_count, load_examples
from triage_ml.model import Example

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LEGAL_KEPT = 12


def _number(example: Example) -> int:
    return int(example.text.rsplit(" ", 1)[1])


def uneven_examples() -> list[Example]:
    """Plenty of billing and technical, a dozen legal: legal's threshold stays at 1.0."""
    return [e for e in small_examples(100) if e.label != "legal" or _number(e) < LEGAL_KEPT]


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def uneven_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(uneven_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unseen documents of the three queues, an email, and a scan without text."""
    root = tmp_path_factory.mktemp("golden")
    unseen = {"billing": range(100, 108), "technical": range(100, 106), "legal": range(12, 16)}
    for example in small_examples(120):
        if _number(example) in unseen[example.label]:
            folder = root / example.label
            folder.mkdir(exist_ok=True)
            (folder / f"{_number(example):03d}.txt").write_text(example.text)
    (root / "billing" / "mail.eml").write_bytes(plain_mail())
    (root / "legal" / "scan.pdf").write_bytes(make_pdf(""))
    return root


@pytest.fixture(scope="module")
def evaluated(
    uneven_model: Path, golden: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Any, Path]:
    out = tmp_path_factory.mktemp("eval") / "out"
    result = _cli("model", "eval", "--golden", str(golden), "--model", str(uneven_model))
    assert result.exit_code == 0, result.output
    with_out = _cli(
        "model", "eval", "--golden", str(golden), "--model", str(uneven_model), "--out", str(out)
    )
    assert with_out.exit_code == 0, with_out.output
    return with_out, out


def test_eval_writes_the_reliability_diagrams(evaluated: tuple[Any, Path]) -> None:
    import matplotlib.image

    _, out = evaluated
    labels = json.loads((out / "report.json").read_text())["labels"]
    assert labels == ["billing", "legal", "technical"]
    names = ["calibration.png", *(class_picture_name(label) for label in labels)]
    assert names[1:] == [f"calibration-{label}.png" for label in ("billing", "legal", "technical")]
    for name in [*names, "confusion_matrix.png"]:
        assert (out / name).read_bytes().startswith(PNG_MAGIC), name
        assert matplotlib.image.imread(out / name).shape == (600, 800, 4)


def test_eval_writes_a_prediction_row_per_document_scored(
    evaluated: tuple[Any, Path], golden: Path, uneven_model: Path
) -> None:
    _, out = evaluated
    with (out / "predictions.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames or ()) == predictions_fields()
        rows = list(reader)
    # every .txt and the mail's body; the scan has no text and is not scored
    expected = sorted(
        (str(p), "body" if p.suffix == ".eml" else "")
        for p in golden.rglob("*")
        if p.is_file() and p.suffix != ".pdf"
    )
    assert sorted((r["path"], r["part"]) for r in rows) == expected
    assert len(rows) == 8 + 6 + 4 + 1
    model = model_lib.load(uneven_model)
    for row in rows:
        path = Path(row["path"])
        assert row["true_label"] == path.parent.name
        [example] = load_examples(path, row["true_label"])
        [served] = model.predict([example.text])
        assert row["predicted_label"] == served.label
        assert float(row["confidence"]) == served.confidence
        assert float(row["threshold"]) == served.threshold
        assert row["action"] == served.action.value
        assert row["correct"] == str(row["true_label"] == row["predicted_label"])
    actions = {r["action"] for r in rows}
    assert actions == {"route", "review"}  # legal (threshold 1.0) always goes to review
    assert all(r["action"] == "review" for r in rows if r["predicted_label"] == "legal")


def test_eval_and_batch_rows_join_on_document_id_file_source_and_time(
    evaluated: tuple[Any, Path], golden: Path, uneven_model: Path, tmp_path: Path
) -> None:
    """The same files scored by ``batch score`` and ``model eval`` give rows that join: the
    same document id (the one ingest's drop folder gives), file, part, source and time."""
    _, out = evaluated
    scores = tmp_path / "scores.csv"
    batch = _cli(
        *("batch", "score", "--input", str(golden), "--model", str(uneven_model)),
        *("--output", str(scores)),
    )
    assert batch.exit_code == 0, batch.output
    keys = ("document_id", "path", "part", "source", "time")
    with scores.open(newline="") as handle:
        scored = {r["document_id"]: r for r in csv.DictReader(handle)}
    with (out / "predictions.csv").open(newline="") as handle:
        predicted = list(csv.DictReader(handle))
    assert len(scored) == len(predicted) + 1  # the scan has a batch row (no text), no eval row
    for row in predicted:
        match = scored[row["document_id"]]
        assert {k: match[k] for k in keys} == {k: row[k] for k in keys}
        assert match["label"] == row["predicted_label"]
        assert row["source"] == "folder:drop-folder"
        assert datetime.fromisoformat(row["time"]).tzinfo is not None
    mail = next(r for r in predicted if r["path"].endswith("mail.eml"))
    raw = hashlib.sha256((golden / "billing" / "mail.eml").read_bytes()).hexdigest()
    assert mail["document_id"] == derive_document_id("folder", "drop-folder", raw, "body")
    text = next(r for r in predicted if r["path"].endswith("100.txt"))
    content = hashlib.sha256(Path(text["path"]).read_bytes()).hexdigest()
    assert text["document_id"] == derive_document_id("folder", "drop-folder", content)


def test_eval_prints_the_confusion_matrix_and_per_class_ece(
    evaluated: tuple[Any, Path],
) -> None:
    result, out = evaluated
    report = json.loads((out / "report.json").read_text())
    lines = result.output.splitlines()
    start = lines.index("confusion matrix (documents; true label down, predicted across)")
    header, rule, *body = lines[start + 1 : start + 7]
    assert header.split() == ["true", "\\", "predicted", "billing", "legal", "technical", "total"]
    assert set(rule) <= {"-", " "}
    printed = {cells[0]: [int(x) for x in cells[1:]] for cells in map(str.split, body)}
    for label, counts in zip(report["labels"], report["confusion"], strict=True):
        assert printed[label] == [*counts, sum(counts)]
    assert printed["total"][-1] == report["n"] == 19
    assert printed["billing"][-1] == 9 and printed["legal"][-1] == 4
    # the per-class table has each label's one-vs-rest ECE, as report.json does
    for entry in report["per_class"]:
        assert 0.0 <= entry["ece"] <= 1.0
        # the first line of a label is its per-class row (the confusion table comes after)
        row = next(line.split() for line in lines if line.startswith(f"{entry['label']} "))
        assert row[-1] == f"{entry['ece']:.3f}"
    assert "wrote to" in result.output and "predictions.csv" in result.output


def test_a_queue_never_routed_is_named_in_the_output_and_the_metadata(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for i, example in enumerate(uneven_examples()):
        folder = root / example.label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.txt").write_text(example.text)
    result = _cli("model", "train", "--data", str(root), "--out", str(tmp_path / "m"))
    assert result.exit_code == 0, result.output
    [artifact] = (tmp_path / "m").iterdir()
    metadata = json.loads((artifact / "metadata.json").read_text())
    assert metadata["thresholds"]["legal"] == 1.0
    assert metadata["thresholds"]["billing"] < 1.0 and metadata["thresholds"]["technical"] < 1.0
    train_legal = metadata["never_routed"][0]["train_examples"]
    assert metadata["never_routed"] == [{"label": "legal", "train_examples": train_legal}]
    assert 0 < train_legal <= LEGAL_KEPT
    output = " ".join(result.output.split())  # the console may wrap a long line
    assert (
        f"warning: queue legal is never routed: its threshold stays at 1.0, as "
        f"cross-validation never reached 0.95 precision on its {train_legal} training "
        "examples; everything predicted as legal goes to review"
    ) in output
    assert "queue billing is never routed" not in output
    assert "queue technical is never routed" not in output


def test_training_reports_each_cross_validation_fold() -> None:
    calls: list[tuple[str, int, int]] = []
    result = model_lib.train(
        small_examples(), progress=lambda phase, done, total: calls.append((phase, done, total))
    )
    folds = [c for c in calls if c[0] == model_lib.PHASE_CROSS_VALIDATION]
    assert folds == [(model_lib.PHASE_CROSS_VALIDATION, i, 5) for i in range(6)]
    assert calls.index((model_lib.PHASE_FEATURES, 1, 1)) < calls.index(folds[0])
    assert calls.index(folds[-1]) < calls.index((model_lib.PHASE_CALIBRATION, 0, 1))
    assert (model_lib.PHASE_CALIBRATION, 1, 1) in calls
    holdout = result.metadata["splits"]["holdout"]
    assert calls[-1] == (model_lib.PHASE_HOLDOUT, holdout, holdout)
    # every queue has a threshold of 1.0 on this tiny set
    assert [e["label"] for e in result.metadata["never_routed"]] == [
        "billing",
        "legal",
        "technical",
    ]


def test_batch_progress_counts_the_documents_an_email_becomes(tmp_path: Path) -> None:
    mail = tmp_path / "mail.eml"
    mail.write_bytes(plain_mail())
    text = tmp_path / "a.txt"
    text.write_text("hello")
    assert document_count(text) == 1
    assert document_count(mail) == 1
    from tests.unit.test_email_training import multipart_mail

    mail.write_bytes(multipart_mail())
    assert document_count(mail) == 4
