"""Train, register, promote through golden-set gates, force with a reason, roll back."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import REPO_ROOT
from tests.stack import Stack
from triage_cli.main import app

SAMPLE = REPO_ROOT / "data" / "sample"


@pytest.fixture
def cli_env(
    isolated: Stack, clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", isolated.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", isolated.topic_prefix)  # the routed topics
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    monkeypatch.setenv("TRIAGE_MODEL_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("TRIAGE_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _small_training_set(tmp_path: Path) -> Path:
    """A deliberately poor training set: 12 documents per label."""
    rng = random.Random(1)
    target = tmp_path / "small"
    for label_dir in sorted((SAMPLE / "train").iterdir()):
        (target / label_dir.name).mkdir(parents=True)
        for path in rng.sample(sorted(label_dir.iterdir()), 12):
            (target / label_dir.name / path.name).write_bytes(path.read_bytes())
    return target


def test_gates_refuse_a_worse_model_and_force_is_audited(cli_env: Path) -> None:
    models = cli_env / "models"
    code, out = _run("model", "train", "--data", str(SAMPLE / "train"), "--out", str(models))
    assert code == 0, out
    good = Path(out.strip().splitlines()[-1])
    assert (good / "confusion_matrix.png").stat().st_size > 1000
    assert (good / "calibration.png").stat().st_size > 1000
    code, out = _run(
        "model", "train", "--data", str(_small_training_set(cli_env)), "--out", str(models)
    )
    assert code == 0, out
    worse = Path(out.strip().splitlines()[-1])

    for artifact in (good, worse):
        code, out = _run("model", "register", str(artifact))
        assert code == 0, out

    golden = str(SAMPLE / "golden")
    code, out = _run("model", "promote", good.name, "--golden", golden)
    assert code == 0, out
    assert f"champion: (none) → {good.name} (gates passed)" in out

    code, out = _run("model", "promote", worse.name, "--golden", golden)
    assert code == 1
    assert "gate failed" in out and "refused" in out

    code, out = _run("model", "promote", worse.name, "--golden", golden, "--force")
    assert code == 2 and "--force needs --reason" in out

    code, out = _run(
        "model", "promote", worse.name, "--golden", golden, "--force", "--reason", "incident 42"
    )
    assert code == 0, out
    assert "FORCED" in out

    code, out = _run("model", "history", "champion")
    assert code == 0
    assert "incident 42" in out

    code, out = _run("model", "rollback", "champion", "--reason", "forced model misroutes")
    assert code == 0, out
    assert f"{worse.name} → {good.name}" in out
    code, out = _run("model", "list")
    assert good.name in out and "champion" in out


def test_eval_prints_the_report_and_writes_pictures(cli_env: Path) -> None:
    models = cli_env / "models"
    code, out = _run("model", "train", "--data", str(SAMPLE / "train"), "--out", str(models))
    assert code == 0, out
    artifact = out.strip().splitlines()[-1]
    report_dir = cli_env / "report"
    code, out = _run(
        "model",
        "eval",
        "--golden",
        str(SAMPLE / "golden"),
        "--model",
        artifact,
        "--out",
        str(report_dir),
    )
    assert code == 0, out
    for metric in ("macro_f1", "ece", "coverage", "routed_precision", "latency_p95_ms"):
        assert metric in out
    assert (report_dir / "report.json").exists()
    assert (report_dir / "confusion_matrix.png").exists()


@pytest.fixture
def no_topics_cli(
    no_topics: Stack, clean_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Stack:
    """The CLI pointed at a topic prefix with no topic yet, an empty database and a model
    store of its own, on the one-broker stack."""
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", no_topics.kafka_bootstrap)
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", no_topics.topic_prefix)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    monkeypatch.setenv("TRIAGE_MODEL_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("TRIAGE_MODEL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TRIAGE_TOPICS_REPLICATION_FACTOR", "1")  # one broker
    return no_topics


def test_promote_refuses_a_label_without_its_routed_topic_and_names_the_command(
    no_topics_cli: Stack, small_model: Path
) -> None:
    """The broker does not create topics: a model whose labels have no routed topic on the
    cluster is refused, with the one command that makes them; run as printed, it works."""
    code, out = _run("model", "register", str(small_model))
    assert code == 0, out
    code, out = _run("topics", "apply", "--no-registry", "--queue", "billing")
    assert code == 0, out
    promote = ("model", "promote", small_model.name, "--golden", str(SAMPLE / "golden"))
    forced = ("--force", "--reason", "the gates are not what this test is about")

    code, out = _run(*promote, *forced)
    assert code == 1, out
    [line] = [line for line in out.splitlines() if line.startswith("refused")]
    command = "triage topics apply --queue legal --queue technical"
    assert line == (
        f"refused: {small_model.name} stays out of champion: no routed topic on the "
        f"cluster for legal, technical; create them first: {command}"
    )
    code, out = _run("model", "list")
    assert "champion" not in out, "a refused promotion moves no alias"

    code, out = _run(*command.split()[1:])
    assert code == 0, out
    code, out = _run(*promote, *forced)
    assert code == 0, out
    assert f"champion: (none) → {small_model.name}" in out
    code, out = _run("topics", "plan", "--check")  # the champion's labels: all there
    assert code == 0 and "no difference" in out, out


def test_topics_apply_by_model_version_makes_every_label_s_routed_topic(
    no_topics_cli: Stack, small_model: Path
) -> None:
    """Before a version is promoted, no alias names its labels: ``--model-version`` does, so
    the topics exist when the promotion checks for them; an unknown version is one line."""
    code, out = _run("model", "register", str(small_model))
    assert code == 0, out
    version = ("--no-registry", "--model-version", small_model.name)

    code, out = _run("topics", "plan", *version)
    assert code == 0, out
    labels = json.loads((small_model / "metadata.json").read_text())["labels"]
    for label in labels:
        assert f"triage.routed.{label}.v1" in out, out

    code, out = _run("topics", "apply", *version)
    assert code == 0, out
    code, out = _run("topics", "plan", "--check", *version)
    assert code == 0 and "no difference" in out, out
    promote = ("model", "promote", small_model.name, "--golden", str(SAMPLE / "golden"))
    code, out = _run(*promote, "--force", "--reason", "the gates are not what this test is about")
    assert code == 0, out

    code, out = _run("topics", "plan", "--no-registry", "--model-version", "no-such-version")
    assert code == 1
    assert "no registered model version 'no-such-version'" in out, out
