"""``triage batch score``: offline scoring with the serving extraction and model code."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.helpers import small_examples
from triage_cli.main import app
from triage_ml import model as model_lib
from triage_text.extract import extract_text


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("the invoice payment is overdue, refund the charge")
    (root / "sub" / "b.pdf").write_bytes(make_pdf("api server outage, login error, timeout"))
    (root / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    return root


def test_scores_every_file_and_agrees_with_the_model(
    artifact: Path, folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(
        app,
        ["batch", "score", "--input", str(folder), "--output", str(out), "--model", str(artifact)],
    )
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"a.txt", "b.pdf", "broken.pdf"}
    assert rows["broken.pdf"]["extraction"] == "corrupt"
    assert rows["broken.pdf"]["action"] == "review" and rows["broken.pdf"]["label"] is None
    model = model_lib.load(artifact)
    [expected] = model.predict([extract_text((folder / "a.txt").read_bytes(), "text/plain").text])
    assert rows["a.txt"]["label"] == expected.label == "billing"
    assert rows["a.txt"]["confidence"] == expected.confidence
    assert rows["b.pdf"]["label"] == "technical"
    assert {r["model_version"] for r in rows.values()} == {artifact.name}


def test_csv_output_and_refusals(artifact: Path, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    args = ["batch", "score", "--input", str(folder), "--model", str(artifact)]
    assert CliRunner().invoke(app, [*args, "--output", str(out)]).exit_code == 0
    with out.open() as handle:
        assert len(list(csv.DictReader(handle))) == 3
    refused = CliRunner().invoke(app, [*args, "--output", str(tmp_path / "scores.xlsx")])
    assert refused.exit_code == 2
