"""``triage model eval`` per slice: sub-folders below the label folders, or a CSV/JSONL
``source`` column, give a table per slice (a small real model; golden sets built here)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import small_examples
from triage_cli.main import app
from triage_ml import model as model_lib
from triage_ml.dataset import LabelledData
from triage_ml.evaluation import NO_SLICE, evaluate, evaluate_slices
from triage_ml.model import Example

WRONG = {"billing": "the api server is down, login error", "technical": "refund the invoice"}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


def _examples() -> dict[str, list[Example]]:
    """Clean examples for slice "email", mislabelled ones (text of the other queue) for "pdf"."""
    clean = [e for e in small_examples(140) if e.label in WRONG][-12:]
    wrong = [Example(text=f"{WRONG[label]} {i}", label=label) for label in WRONG for i in range(3)]
    return {"email": clean, "pdf": wrong}


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def _slice_table(output: str) -> dict[str, list[str]]:
    lines = output.splitlines()
    start = lines.index("per slice (sub-folder below the label folder, or the source column)")
    header = lines[start + 1].split()
    assert header == ["slice", "documents", "macro_f1", "accuracy", "ece", "coverage"]
    table = {}
    for line in lines[start + 3 :]:
        if not line.strip():
            break
        cells = line.split()
        table[cells[0]] = cells[1:]
    return table


def test_sub_folders_below_the_labels_are_slices(artifact: Path, tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    for name, examples in _examples().items():
        for i, example in enumerate(examples):
            folder = golden / example.label / name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.txt").write_text(example.text)
    (golden / "billing" / "loose.txt").write_text("invoice payment overdue, refund please")
    out = tmp_path / "out"
    result = _cli(
        "model", "eval", "--golden", str(golden), "--model", str(artifact), "--out", str(out)
    )
    table = _slice_table(result.output)
    assert set(table) == {"email", "pdf", NO_SLICE}
    assert table["email"][:3] == ["12", "1.000", "1.000"]  # documents, macro-F1, accuracy
    assert table["pdf"][0] == "6" and float(table["pdf"][2]) < 0.5  # mostly wrong
    assert table[NO_SLICE][0] == "1"
    with (out / "slices.csv").open(newline="") as handle:
        rows = {r["slice"]: r for r in csv.DictReader(handle)}
    assert set(rows) == set(table)
    for name, cells in table.items():
        assert f"{float(rows[name]['ece']):.3f}" == cells[3]
        assert f"{float(rows[name]['coverage']):.3f}" == cells[4]
    with (out / "predictions.csv").open(newline="") as handle:
        slices = {r["path"]: r["slice"] for r in csv.DictReader(handle)}
    assert slices[str(golden / "billing" / "loose.txt")] == ""
    assert slices[str(golden / "billing" / "pdf" / "0.txt")] == "pdf"


def test_a_source_column_gives_slices_and_no_slices_no_table(
    artifact: Path, tmp_path: Path
) -> None:
    table_file = tmp_path / "golden.jsonl"
    lines = [
        json.dumps({"text": e.text, "label": e.label, "source": name})
        for name, examples in _examples().items()
        for e in examples
    ]
    table_file.write_text("\n".join(lines) + "\n")
    result = _cli("model", "eval", "--golden", str(table_file), "--model", str(artifact))
    table = _slice_table(result.output)
    assert set(table) == {"email", "pdf"}
    assert table["email"][0] == "12" and table["pdf"][0] == "6"

    plain = tmp_path / "plain.csv"
    with plain.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerows((e.text, e.label) for e in _examples()["email"])
    result = _cli("model", "eval", "--golden", str(plain), "--model", str(artifact))
    assert "per slice" not in result.output


def test_each_slice_is_evaluated_as_a_test_set_of_its_own() -> None:
    labels = ["a", "b"]
    truth = ["a", "a", "b", "b", "a"]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.99, 0.01]])
    thresholds = {"a": 0.5, "b": 0.5}
    slices = ["x", "x", "y", "y", None]
    reports = evaluate_slices(
        slices=slices,
        truth=truth,
        probabilities=probabilities,
        labels=labels,
        thresholds=thresholds,
    )
    assert list(reports) == [NO_SLICE, "x", "y"]
    alone = evaluate(
        truth=truth[2:4], probabilities=probabilities[2:4], labels=labels, thresholds=thresholds
    )
    assert reports["y"] == alone
    assert reports["x"].n == 2 and reports["x"].accuracy == 0.5
    assert (
        evaluate_slices(
            slices=[None] * 5,
            truth=truth,
            probabilities=probabilities,
            labels=labels,
            thresholds=thresholds,
        )
        == {}
    )


def test_the_dataset_keeps_each_examples_slice(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("refund the invoice")
    data = LabelledData()
    data.add_file(path, "billing", slice_name="email")
    data.add_text("the api is down", "technical", origin="t.csv:1", slice_name="forum")
    assert [o.slice for o in data.origins] == ["email", "forum"]
