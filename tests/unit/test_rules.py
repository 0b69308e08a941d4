"""The rules model: the degraded-mode fallback scores through the same interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage_contracts import Action
from triage_ml.model import LoadedModel
from triage_ml.rules import RulesError, load_rules, parse_rules

RULES = """
[settings]
version = "rules-test"
default_threshold = 0.6

[labels.billing]
keywords = ["invoice", "refund"]
patterns = ['\\bINV-\\d{3,}\\b']

[labels.technical]
keywords = ["outage", "error"]
threshold = 0.9
"""


def test_matches_drive_the_probabilities() -> None:
    rules = parse_rules(RULES)
    proba = rules.predict_proba(["Invoice INV-2024 is overdue, please refund", "nothing here"])
    assert list(rules.classes_) == ["billing", "technical"]
    assert proba[0][0] > 0.8
    assert proba[1].tolist() == [0.5, 0.5], "no match is a flat distribution"
    assert proba.sum(axis=1).tolist() == pytest.approx([1.0, 1.0])


def test_rules_predict_with_their_own_thresholds() -> None:
    model = LoadedModel.from_rules(parse_rules(RULES))
    assert model.kind == "rules" and model.version == "rules-test"
    sure, unsure = model.predict(["invoice invoice refund INV-123", "an error, an invoice"])
    assert (sure.label, sure.action) == ("billing", Action.ROUTE)
    assert sure.threshold == 0.6
    assert unsure.action is Action.REVIEW


def test_the_shipped_rules_load_and_cover_the_starter_queues() -> None:
    model = LoadedModel.from_rules(load_rules())
    assert set(model.labels) == {"billing", "legal", "other", "technical"}
    [prediction] = model.predict(["Please find the GDPR data subject erasure request, Article 17"])
    assert prediction.label == "legal"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("[settings]\n", "no \\[labels"),
        ("[labels.a]\nkeywords=['x']\n", "at least two labels"),
        ("[labels.a]\npatterns=['(']\n[labels.b]\nkeywords=['y']\n", "bad pattern"),
        (
            "[labels.a]\nkeywords=['x']\nthreshold=2\n[labels.b]\nkeywords=['y']\n",
            "between 0 and 1",
        ),
        ("[labels.a]\n[labels.b]\nkeywords=['y']\n", "neither keywords nor patterns"),
    ],
)
def test_bad_rules_files_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(text)


def test_a_missing_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read rules file"):
        load_rules(tmp_path / "missing.toml")
