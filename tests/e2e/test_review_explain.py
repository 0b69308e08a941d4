"""Why the model thinks so, in a real browser: an item scored by a real (tiny) TF-IDF model
shows the words that pushed its label, marked in the text, and the threshold it needed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.reviewui import (
    ARTIFACTS,
    create_people,
    empty_review_tables,
    run_async,
    running_review_ui,
    signed_in,
)
from tests.helpers import REPO_ROOT, classified, small_examples
from tests.stack import Stack
from triage_contracts import Action, Explanation, utcnow
from triage_ml import model as model_lib
from triage_ml.model import LoadedModel
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, SendToReview

# Mostly legal words, one billing word; markup that must stay text.
TEXT = (
    "Dear team,\n\nplease find the Contract attached. Clause 4 (the NDA) was changed after\n"
    "our counsel read it; the <b>invoice</b> for the review follows separately.\n\nRegards,\nDana"
)
THRESHOLD = 0.85


def _scored() -> tuple[LoadedModel, Explanation]:
    """A tiny TF-IDF model, and its explanation of TEXT."""
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    model = LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )
    [(prediction, explanation)] = model.predict_explained([TEXT.lower()])
    assert explanation is not None and prediction.confidence < THRESHOLD
    return model, explanation


def _seed(database_url: str, blob_dir: Path, explanation: Explanation) -> None:
    async def run() -> None:
        engine = make_async_engine(database_url)
        await create_people(engine, [("alice", "reviewer")])
        blobs = LocalBlobStore(blob_dir)
        event = classified(
            sha256=blobs.put(TEXT.encode()),
            label=explanation.label,
            confidence=0.7,
            filename="contract-note.txt",
        )
        assert event.prediction is not None
        prediction = event.prediction.model_copy(
            update={"threshold": THRESHOLD, "action": Action.REVIEW}
        )
        event = event.model_copy(
            update={
                "prediction": prediction,
                "explanation": explanation,
            }
        )
        await OutcomeStore(engine).open_review(
            event, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, utcnow() + timedelta(hours=3))
        )
        await engine.dispose()

    run_async(run)


@pytest.fixture(scope="module")
def explained() -> Explanation:
    return _scored()[1]


@pytest.fixture(scope="module")
def review_ui(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory, explained: Explanation
) -> Iterator[str]:
    work = tmp_path_factory.mktemp("explain")
    empty_review_tables(stack.database_url)
    _seed(stack.database_url, work / "blobs", explained)
    with running_review_ui(stack, work, "explain") as url:
        yield url


def test_the_item_page_shows_the_words_and_the_threshold(
    browser: Browser, review_ui: str, explained: Explanation
) -> None:
    page = signed_in(browser, review_ui, "alice")
    page.click("text=contract-note.txt")
    why = page.locator(".explain")
    expect(why).to_contain_text("Why the model thinks so")
    expect(why.locator(".threshold")).to_contain_text(
        f"{explained.label} needs a confidence of at least 0.850"
    )
    toward = [t.term for t in explained.terms if t.weight > 0]
    [against] = [t.term for t in explained.terms if t.weight < 0]
    assert explained.label == "legal" and against == "invoice"
    expect(why.locator(".explain-terms li")).to_have_text(toward)
    expect(why.locator("mark.explain-against")).to_have_text(against)
    # Marked in the text, as written there; the document's markup stays text.
    text = page.locator("#document-text")
    marked = text.locator("mark.explain-toward")
    expect(marked.first).to_be_visible()
    seen = {m.lower() for m in marked.all_inner_texts()}
    assert seen and seen <= set(toward) | {t.replace(" ", "\n") for t in toward}
    assert {"contract", "clause", "nda"} & seen
    expect(text.locator("mark.explain-against")).to_have_text(["invoice"])
    expect(text.locator("b")).to_have_count(0)
    expect(text).to_contain_text("<b>invoice</b>")
    assert "0.7" not in (page.locator(".decision").inner_text())  # never the confidence
    page.screenshot(path=ARTIFACTS / "review-explain.png")
    shutil.copy(ARTIFACTS / "review-explain.png", REPO_ROOT / "docs/images/review-explain.png")
