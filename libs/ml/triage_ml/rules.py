"""The rules model: keywords and regular expressions per label, for degraded mode.

When no trained model can be loaded, the classifier scores with rules instead (role
``rules``) so documents keep flowing; rules rarely clear their thresholds, so most go to
human review, which is the safe failure. The rules live in a TOML file::

    [settings]
    version = "rules-2026-11-26"   # recorded on every event scored with these rules
    default_threshold = 0.9

    [labels.billing]
    keywords = ["invoice", "refund"]          # whole words, case-insensitive; 1 point each
    patterns = ['\\bINV-\\d{4,}\\b']            # regular expressions; 2 points each
    threshold = 0.85                          # optional, overrides the default
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

KIND_RULES = "rules"
KEYWORD_POINTS = 1.0
PATTERN_POINTS = 2.0
SMOOTHING = 0.5
"""Added to every label's score, so a document with no matches gets a flat distribution."""


class RulesError(ValueError):
    """A rules file that cannot be used, with the reason."""


@dataclass(frozen=True)
class _LabelRules:
    label: str
    keywords: tuple[re.Pattern[str], ...]
    patterns: tuple[re.Pattern[str], ...]
    threshold: float


class RulesModel:
    """Scores texts by weighted keyword and pattern matches; scikit-learn-like interface."""

    def __init__(self, *, version: str, rules: Sequence[_LabelRules]) -> None:
        if len(rules) < 2:
            raise RulesError("a rules model needs at least two labels")
        self.version = version
        self._rules = sorted(rules, key=lambda r: r.label)
        self.classes_ = np.array([r.label for r in self._rules])
        self.thresholds = {r.label: r.threshold for r in self._rules}

    def scores(self, text: str) -> np.ndarray:
        """Return the raw points per label for one text."""
        return np.array(
            [
                KEYWORD_POINTS * sum(len(k.findall(text)) for k in r.keywords)
                + PATTERN_POINTS * sum(len(p.findall(text)) for p in r.patterns)
                for r in self._rules
            ],
            dtype=np.float64,
        )

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Return smoothed, normalised points as probabilities, one row per text."""
        rows = [self.scores(t) + SMOOTHING for t in texts]
        matrix: np.ndarray = np.vstack(rows) if rows else np.zeros((0, len(self._rules)))
        normalised: np.ndarray = matrix / matrix.sum(axis=1, keepdims=True)
        return normalised


def _compile(label: str, spec: dict[str, Any], default_threshold: float) -> _LabelRules:
    try:
        keywords = tuple(
            re.compile(rf"\b{re.escape(str(word))}\b", re.IGNORECASE)
            for word in spec.get("keywords", [])
        )
        patterns = tuple(re.compile(str(p), re.IGNORECASE) for p in spec.get("patterns", []))
    except re.error as exc:
        raise RulesError(f"label {label!r}: bad pattern: {exc}") from exc
    threshold = float(spec.get("threshold", default_threshold))
    if not 0.0 <= threshold <= 1.0:
        raise RulesError(f"label {label!r}: threshold {threshold} is not between 0 and 1")
    if not keywords and not patterns:
        raise RulesError(f"label {label!r} has neither keywords nor patterns")
    return _LabelRules(label, keywords, patterns, threshold)


def parse_rules(text: str, *, source: str = "<rules>") -> RulesModel:
    """Build a rules model from TOML text, or raise RulesError saying what is wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{source}: not valid TOML: {exc}") from exc
    settings = data.get("settings", {})
    labels = data.get("labels", {})
    if not isinstance(labels, dict) or not labels:
        raise RulesError(f"{source}: no [labels.<name>] tables")
    default_threshold = float(settings.get("default_threshold", 0.9))
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    version = str(settings.get("version") or f"{KIND_RULES}-{digest}")
    return RulesModel(
        version=version,
        rules=[_compile(str(k), v, default_threshold) for k, v in labels.items()],
    )


def load_rules(path: Path | None = None) -> RulesModel:
    """Load a rules file; without a path, the default rules shipped with Triage."""
    if path is None:
        text = resources.files("triage_ml").joinpath("data/default_rules.toml").read_text()
        return parse_rules(text, source="default_rules.toml")
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc}") from exc
    return parse_rules(text, source=str(path))
