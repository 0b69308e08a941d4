"""Explanations of TF-IDF models: the term that drives a label comes first, bounded, stable."""

from __future__ import annotations

import random

import numpy as np
import pytest

from triage_contracts import DocumentClassifiedV1
from triage_contracts.events import MAX_EXPLANATION_TERMS
from triage_ml import model as model_lib
from triage_ml.calibration import aligned_logits
from triage_ml.model import Example, LoadedModel

FILLER = [
    "dear",
    "team",
    "please",
    "see",
    "the",
    "attached",
    "note",
    "about",
    "this",
    "week",
    "thanks",
    "and",
    "regards",
]
CUES = {"billing": "invoice", "legal": "contract", "hr": "vacation"}


def _examples(labels: dict[str, str], per_label: int = 40) -> list[Example]:
    """Documents of filler words shared by every label, each with its label's one cue word."""
    rng = random.Random(7)
    out = []
    for label, cue in labels.items():
        for i in range(per_label):
            words = rng.sample(FILLER, 8)
            words.insert(rng.randrange(len(words) + 1), cue)
            out.append(Example(text=f"{' '.join(words)} ref {i}", label=label))
    return out


def _model(labels: dict[str, str]) -> LoadedModel:
    pipeline, metadata, *_ = model_lib.train(_examples(labels), seed=3)
    return LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )


@pytest.fixture(scope="module")
def three_labels() -> LoadedModel:
    return _model(CUES)


def _margin(model: LoadedModel, text: str, label: str, versus: str) -> float:
    """The mean over the fold models of the label's logit minus the runner-up's."""
    x = model.features([text])
    labels = list(model.labels)
    margins = []
    for estimator in model._pipeline.named_steps["clf"].estimators:
        logits = aligned_logits(estimator.decision_function(x), estimator.classes_, labels)[0]
        margins.append(logits[labels.index(label)] - logits[labels.index(versus)])
    return float(np.mean(margins))


def _intercepts(model: LoadedModel, label: str, versus: str) -> float:
    """The margin of a document with no known term: the intercepts' alone."""
    assert model.features(["zzz"]).nnz == 0
    return _margin(model, "zzz", label, versus)


def test_the_cue_word_comes_first_and_the_runner_ups_cue_is_against(
    three_labels: LoadedModel,
) -> None:
    text = "dear team the invoice and the invoice again, see the contract, regards"
    [(prediction, explanation)] = three_labels.predict_explained([text])
    assert prediction.label == "billing"
    assert explanation is not None
    assert (explanation.label, explanation.versus) == ("billing", "legal")
    assert explanation.terms[0].term == "invoice"
    assert explanation.terms[0].weight > 0
    against = [t for t in explanation.terms if t.weight < 0]
    assert len(against) == 1
    assert against[0].term == "contract"
    # The event carries it, and refuses an explanation of another label.
    assert explanation.label == prediction.label


def test_the_terms_add_up_to_the_models_margin(three_labels: LoadedModel) -> None:
    # Few enough terms that the explanation keeps all of them.
    text = "invoice contract thanks"
    [(prediction, explanation)] = three_labels.predict_explained([text])
    assert explanation is not None
    x = three_labels.features([text])
    assert x.nnz == len(explanation.terms) <= MAX_EXPLANATION_TERMS
    margin = _margin(three_labels, text, explanation.label, explanation.versus)
    intercepts = _intercepts(three_labels, explanation.label, explanation.versus)
    total = sum(t.weight for t in explanation.terms)
    assert total + intercepts == pytest.approx(margin, abs=1e-3)
    assert prediction.label == explanation.label


def test_a_binary_model_is_explained_on_the_same_scale() -> None:
    model = _model({"billing": "invoice", "legal": "contract"})
    text = "invoice invoice contract thanks"
    [(prediction, explanation)] = model.predict_explained([text])
    assert explanation is not None
    assert prediction.label == "billing"
    assert explanation.terms[0].term == "invoice"
    assert explanation.terms[-1].term == "contract"
    margin = _margin(model, text, "billing", "legal")
    total = sum(t.weight for t in explanation.terms) + _intercepts(model, "billing", "legal")
    assert total == pytest.approx(margin, abs=1e-3)


def test_an_explanation_is_bounded_and_stable(three_labels: LoadedModel) -> None:
    long_text = " ".join(FILLER * 3) + " invoice contract vacation " + " ".join(FILLER)
    texts = [long_text, "vacation vacation dear team", long_text]
    scored = three_labels.predict_explained(texts)
    for _, explanation in scored:
        assert explanation is not None
        assert len(explanation.terms) <= MAX_EXPLANATION_TERMS
        assert sum(1 for t in explanation.terms if t.weight < 0) <= 1
        toward = [t.weight for t in explanation.terms if t.weight > 0]
        assert toward == sorted(toward, reverse=True)
    assert len(scored[0][1].terms) == MAX_EXPLANATION_TERMS  # type: ignore[union-attr]
    # The same text alone, in a batch, or again: the same explanation.
    assert scored[0][1] == scored[2][1]
    assert three_labels.predict_explained([long_text])[0][1] == scored[0][1]
    # The prediction is the one predict gives.
    assert [p for p, _ in scored] == three_labels.predict(texts)


def test_an_explanation_travels_in_the_event_only_for_its_label(
    three_labels: LoadedModel,
) -> None:
    from tests.helpers import classified

    [(prediction, explanation)] = three_labels.predict_explained(["the vacation days"])
    assert explanation is not None
    event = classified(label=prediction.label)
    assert event.explanation is None
    with_it = event.model_copy(update={"explanation": explanation})
    again = DocumentClassifiedV1.model_validate_json(with_it.model_dump_json())
    assert again.explanation == explanation
    other = explanation.model_copy(update={"label": "legal"})
    with pytest.raises(ValueError, match="explain the prediction's label"):
        DocumentClassifiedV1.model_validate({**with_it.model_dump(), "explanation": other})


def test_the_rules_model_and_embed_lr_have_no_explainer() -> None:
    from triage_ml.explain import explainer_for
    from triage_ml.rules import load_rules

    rules = LoadedModel.from_rules(load_rules())
    assert rules.explainer is None
    [(_, explanation)] = rules.predict_explained(["an invoice"])
    assert explanation is None
    assert explainer_for("embed-lr", object(), ("a", "b")) is None


def test_tfidf_embed_lr_itemises_its_tfidf_part() -> None:
    from tests.helpers import small_examples

    pipeline, metadata, *_ = model_lib.train(small_examples(), kind="tfidf-embed-lr")
    model = LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )
    text = "the invoice payment is overdue, see the contract"
    [(prediction, explanation)] = model.predict_explained([text])
    assert explanation is not None and explanation.label == prediction.label == "billing"
    toward = {t.term for t in explanation.terms if t.weight > 0}
    assert {"invoice", "payment", "overdue"} <= toward
    assert [t.term for t in explanation.terms if t.weight < 0] == ["contract"]
    # Only TF-IDF columns are terms: the embedding's columns follow them and are not itemised.
    explainer = model.explainer
    assert explainer is not None
    tfidf = dict(pipeline.named_steps["features"].transformer_list)["tfidf"]
    assert explainer.weights.shape == (len(model.labels), len(tfidf.vocabulary_))
    assert model.features([text]).shape[1] > len(tfidf.vocabulary_)


def test_a_term_too_long_for_the_contract_is_left_out() -> None:
    from triage_contracts.events import MAX_TERM_CHARS

    long_cue = "x" * 199  # one word fits; the bigrams it makes with its neighbours do not
    model = _model({"billing": long_cue, "legal": "contract"})
    explainer = model.explainer
    assert explainer is not None
    # The vocabulary's columns are in alphabetical order: ties are broken by it.
    assert list(explainer.terms) == sorted(explainer.terms)
    assert any(len(t) > MAX_TERM_CHARS for t in explainer.terms)
    [(prediction, explanation)] = model.predict_explained([f"dear team {long_cue} thanks"])
    assert explanation is not None and prediction.label == "billing"
    assert explanation.terms[0].term == long_cue
    assert all(len(t.term) <= MAX_TERM_CHARS for t in explanation.terms)
