"""Golden-set gates that cannot be fooled: every queue counts, and a candidate for any alias
is judged against the champion (``triage model eval`` / ``promote`` scoring, real small models).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.helpers import small_examples
from triage_cli import registry_support
from triage_cli.main import app
from triage_cli.model_cli import evaluate_model
from triage_ml import model as model_lib
from triage_ml.evaluation import GateConfig, check_gates
from triage_ml.model import Example, LoadedModel

# The toy models are too small to route anything at their own thresholds (1.0), so the
# routing gates are opened: only macro-F1 (and regressions) decide here.
ONLY_F1 = GateConfig(min_coverage=0.0, min_routed_precision=0.0, max_ece=1.0)
LOOSE_FLAGS = ("--min-coverage", "0", "--min-routed-precision", "0", "--max-ece", "1")


def _train(examples: list[Example], out: Path, seed: int = 0) -> Path:
    pipeline, metadata, *_ = model_lib.train(examples, seed=seed)
    return model_lib.save(pipeline, metadata, out_dir=out)


def _golden() -> tuple[list[str], list[str]]:
    """Documents the models were not trained on (numbers 30 and up): ten billing, ten
    technical and, as a small queue is in real golden sets, two legal."""
    wanted = {"billing": 10, "technical": 10, "legal": 2}
    picked = [
        e for e in small_examples(40) if 30 <= int(e.text.rsplit(" ", 1)[1]) < 30 + wanted[e.label]
    ]
    return [e.text for e in picked], [e.label for e in picked]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(small_examples(), tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def without_legal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained without the legal queue at all."""
    examples = [e for e in small_examples() if e.label != "legal"]
    return _train(examples, tmp_path_factory.mktemp("without-legal"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model whose legal examples were labelled billing (a few odd legal ones remain)."""
    examples = [
        Example(text=e.text, label="billing" if e.label == "legal" else e.label)
        for e in small_examples()
    ]
    examples += [Example(text=f"notary seal stamp {i}", label="legal") for i in range(10)]
    return _train(examples, tmp_path_factory.mktemp("bad"), seed=1)


class _NeverLegal:
    """A model's pipeline with the legal column zeroed: it knows the label, never predicts it."""

    def __init__(self, inner: Any, legal: int) -> None:
        self.inner = inner
        self.legal = legal

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.asarray(self.inner.predict_proba(list(texts)), dtype=np.float64)
        rows[:, self.legal] = 0.0
        normalised: np.ndarray = rows / rows.sum(axis=1, keepdims=True)
        return normalised


def _f1(report: Any) -> dict[str, float]:
    return {c.label: c.f1 for c in report.per_class}


def test_a_model_lacking_a_queue_fails_the_gates(without_legal: Path) -> None:
    texts, truth = _golden()
    report = evaluate_model(model_lib.load(without_legal), texts, truth)
    f1 = _f1(report)
    assert f1["legal"] == 0.0 and report.per_class[-1].support == truth.count("legal")
    # Over the two queues it has, it looks fine (what the gates used to average over) ...
    assert (f1["billing"] + f1["technical"]) / 2 >= ONLY_F1.min_macro_f1
    # ... over every queue of the golden set it is not.
    assert report.macro_f1 == pytest.approx(sum(f1.values()) / 3)
    result = check_gates(report, champion=None, config=ONLY_F1)
    assert not result.passed
    assert [f.split()[0] for f in result.failures] == ["macro_f1"]


def test_a_model_that_never_predicts_a_queue_fails_the_gates(good: Path) -> None:
    texts, truth = _golden()
    loaded = model_lib.load(good)
    assert check_gates(evaluate_model(loaded, texts, truth), champion=None, config=ONLY_F1).passed

    never = LoadedModel(
        version="never-legal",
        labels=loaded.labels,
        thresholds=loaded.thresholds,
        metadata=loaded.metadata,
        _pipeline=_NeverLegal(loaded._pipeline, loaded.labels.index("legal")),
    )
    report = evaluate_model(never, texts, truth)
    f1 = _f1(report)
    assert f1["legal"] == 0.0
    assert (f1["billing"] + f1["technical"]) / 2 >= ONLY_F1.min_macro_f1
    assert report.macro_f1 == pytest.approx(sum(f1.values()) / 3)
    result = check_gates(report, champion=None, config=ONLY_F1)
    assert [f.split()[0] for f in result.failures] == ["macro_f1"]


@pytest.fixture
def golden_dir(tmp_path: Path) -> Path:
    root = tmp_path / "golden"
    texts, truth = _golden()
    for i, (text, label) in enumerate(zip(texts, truth, strict=True)):
        (root / label).mkdir(parents=True, exist_ok=True)
        (root / label / f"{i:03d}.txt").write_text(text)
    return root


def _aliases(monkeypatch: pytest.MonkeyPatch, **aliases: Path | None) -> list[str]:
    """Point aliases at artifact paths (no registry needed); return the aliases asked for."""
    asked: list[str] = []

    def resolve(alias: str) -> str | None:
        asked.append(alias)
        path = aliases.get(alias)
        return str(path) if path else None

    monkeypatch.setattr(registry_support, "resolve_alias", resolve)
    return asked


@pytest.mark.parametrize("to", ["canary", "shadow", "champion"])
def test_a_candidate_is_judged_against_the_champion_not_the_alias_it_takes(
    monkeypatch: pytest.MonkeyPatch, golden_dir: Path, good: Path, bad: Path, to: str
) -> None:
    # The alias being moved holds the bad model too: against it the candidate would not
    # regress at all; against the champion it does.
    asked = _aliases(monkeypatch, champion=good, canary=bad, shadow=bad)
    args = ["model", "promote", str(bad), "--golden", str(golden_dir), "--to", to]
    result = CliRunner().invoke(app, [*args, *LOOSE_FLAGS, "--min-macro-f1", "0"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "macro_f1" in output and "against champion" in output
    assert f"refused: {bad} stays out of {to}" in output
    assert asked == ["champion"]
