"""``triage batch score``: offline scoring with the serving extraction and model code."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts.pdfgen import make_pdf
from tests.helpers import small_examples
from triage_cli.exit_codes import STOPPED
from triage_cli.main import app
from triage_ml import model as model_lib
from triage_ml.explain import terms_text
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
    text = extract_text((folder / "a.txt").read_bytes(), "text/plain").text
    [(expected, explanation)] = model.predict_explained([text])
    assert rows["a.txt"]["label"] == expected.label == "billing"
    assert rows["a.txt"]["confidence"] == expected.confidence
    # The explanation the classifier would carry, as text: the label's words first.
    assert explanation is not None
    assert rows["a.txt"]["terms"] == terms_text(explanation)
    assert rows["a.txt"]["terms"].startswith(f"{explanation.terms[0].term} +")
    assert rows["broken.pdf"]["terms"] is None
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


@pytest.mark.parametrize(
    ("stop", "suffix"), [(signal.SIGINT, ".csv"), (signal.SIGTERM, ".jsonl")], ids=["int", "term"]
)
def test_a_stopped_run_keeps_the_finished_batches(
    artifact: Path, tmp_path: Path, stop: signal.Signals, suffix: str
) -> None:
    """The real command in a process of its own, stopped by a signal once batches are on
    disk: every finished row is there, whole, and the command says how many."""
    folder = tmp_path / "many"
    folder.mkdir()
    words = ["invoice refund charge payment", "api outage login error", "contract clause term"]
    for i in range(1500):
        (folder / f"{i:05d}.txt").write_text(f"{words[i % 3]} number {i}")
    out = tmp_path / f"scores{suffix}"
    command = [str(Path(sys.executable).with_name("triage")), "batch", "score"]
    args = ["--input", str(folder), "--output", str(out), "--model", str(artifact)]
    # Ctrl-C reaches a run in the foreground; SIGTERM stops one started as `nohup … &` from a
    # script, with SIGINT ignored. Set here, so neither depends on how pytest was started.
    interrupt = signal.SIG_DFL if stop == signal.SIGINT else signal.SIG_IGN
    process = subprocess.Popen(
        [*command, *args, "--batch-size", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"COLUMNS": "200"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, interrupt),  # noqa: PLW1509
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and len(out.read_bytes().splitlines()) > 5:
            break
        time.sleep(0.02)
    process.send_signal(stop)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == STOPPED, stderr
    if suffix == ".csv":
        with out.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert 5 <= len(rows) < 1500, "stopped partway, after some batches"
    said = re.search(
        r"stopped \((\w+)\): the (\d+) documents of the finished batches are in", stderr
    )
    assert said is not None, stderr
    assert said[1] == ("SIGTERM" if stop == signal.SIGTERM else "interrupted")
    assert int(said[2]) == len(rows)
    # whole rows, in order, each saying which document, where from and when
    assert [Path(str(r["path"])).name for r in rows] == [f"{i:05d}.txt" for i in range(len(rows))]
    for row in rows:
        assert str(row["document_id"]).startswith("doc_") and row["source"] == "folder:drop-folder"
        assert row["time"] and row["label"] in {"billing", "technical", "legal"}
