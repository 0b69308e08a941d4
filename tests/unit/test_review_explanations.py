"""What the item page makes of a stored explanation: terms and direction, never weights."""

from __future__ import annotations

from triage_review_ui.explanations import ShownExplanation, shown_explanation


def test_a_stored_explanation_is_shown_as_terms_with_their_direction() -> None:
    stored = {
        "method": "tfidf-margin",
        "label": "legal",
        "versus": "billing",
        "terms": [
            {"term": "clause", "weight": 0.52},
            {"term": "contract", "weight": 0.47},
            {"term": "invoice", "weight": -0.45},
        ],
    }
    shown = shown_explanation(stored)
    assert shown == ShownExplanation(
        label="legal", versus="billing", toward=("clause", "contract"), against="invoice"
    )
    assert "0.52" not in repr(shown)  # the page is given no weight to show


def test_none_and_what_this_version_cannot_read_show_nothing() -> None:
    assert shown_explanation(None) is None
    assert shown_explanation({"method": "shap", "label": "legal", "terms": []}) is None
    only_toward = shown_explanation(
        {"label": "legal", "versus": "other", "terms": [{"term": "nda", "weight": 1.0}]}
    )
    assert only_toward is not None and only_toward.against is None
