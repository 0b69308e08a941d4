"""Contract: training and online serving see identical features for the same document."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from scripts.pdfgen import make_pdf
from tests.helpers import REPO_ROOT, small_examples
from triage_ml import model as model_lib
from triage_ml.dataset import load_examples, media_type_of
from triage_text.pool import ExtractionLimits, ExtractionPool

INBOX = REPO_ROOT / "data" / "sample" / "inbox"


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The shipped demo documents (PDF and text) plus an HTML letter."""
    extra = tmp_path_factory.mktemp("docs")
    html = extra / "letter.html"
    html.write_text(
        "<html><body><p>Dear team,</p><p>the invoice is <b>overdue</b>.</p>"
        "<script>track()</script></body></html>"
    )
    pdf = extra / "scan.pdf"
    pdf.write_bytes(make_pdf("Please cancel  the contract\u00a0clause 4.2 — thank you."))
    readable = [p for p in sorted(INBOX.iterdir()) if p.name != "scanned-letter-no-text.pdf"]
    return [*readable, html, pdf]


def test_online_extraction_equals_training_extraction(documents: list[Path]) -> None:
    async def online() -> list[str]:
        async with ExtractionPool(workers=2, limits=ExtractionLimits(timeout_seconds=30)) as pool:
            results = await pool.extract_many(
                [(p.read_bytes(), media_type_of(p)) for p in documents]
            )
        return [r.text for r in results]

    served = asyncio.run(online())
    trained = []
    for path in documents:
        [example] = load_examples(path, "any")
        trained.append(example.text)
    assert served == trained


def test_online_and_training_features_are_identical(documents: list[Path]) -> None:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    features = pipeline.named_steps["features"]
    texts = [e.text for p in documents for e in load_examples(p, "any")]

    async def online() -> list[str]:
        async with ExtractionPool(workers=1) as pool:
            results = await pool.extract_many(
                [(p.read_bytes(), media_type_of(p)) for p in documents]
            )
        return [r.text for r in results]

    served = asyncio.run(online())
    training_matrix = features.transform(texts).toarray()
    serving_matrix = features.transform(served).toarray()
    assert np.array_equal(training_matrix, serving_matrix)
    assert metadata["feature_code_version"] == "2"
