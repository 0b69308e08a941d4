"""What the item page shows of why the model thinks so: terms with their direction, never
their weights (docs/review.md#why-the-model-thinks-so says why)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from triage_contracts import Explanation


@dataclass(frozen=True, slots=True)
class ShownExplanation:
    """The terms that pushed toward the label, strongest first, and the one that pushed most
    toward the runner-up (``versus``), if any."""

    label: str
    versus: str
    toward: tuple[str, ...]
    against: str | None


def shown_explanation(stored: dict[str, Any] | None) -> ShownExplanation | None:
    """A review item's stored explanation as the page shows it; None when there is none (or
    it is not one this version can read)."""
    if stored is None:
        return None
    try:
        explanation = Explanation.model_validate(stored)
    except ValidationError:
        return None
    against = [t.term for t in explanation.terms if t.weight < 0]
    return ShownExplanation(
        label=explanation.label,
        versus=explanation.versus,
        toward=tuple(t.term for t in explanation.terms if t.weight > 0),
        against=against[0] if against else None,
    )
