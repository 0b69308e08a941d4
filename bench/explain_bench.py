"""Explanation benchmark: what explaining each prediction costs the classifier.

Trains each kind on one labelled folder (as ``triage model train`` does) and scores a golden
set's texts in micro-batches, once with ``LoadedModel.predict`` (scoring alone, as before
explanations) and once with ``predict_explained`` (what the classifier, batch scoring and
POST /v1/classify now call), taking turns, several rounds; prints the median time per
document of each, the difference, and the size of an explanation in the event's JSON.
embed-lr has no explainer: its ``predict_explained`` is ``predict`` (docs/models.md).

    uv run python -m bench.explain_bench --train data/sample/train --golden data/sample/golden \
        [--kinds tfidf-lr,tfidf-embed-lr] [--batch 32] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.model_quality import read_folder
from triage_ml.embeddings import clear_cache
from triage_ml.model import KIND_TFIDF_LR, LoadedModel, train


def _per_document_ms(score: Callable[[Sequence[str]], Any], texts: list[str], batch: int) -> float:
    """Milliseconds per document to score ``texts`` in batches of ``batch``."""
    clear_cache()  # an embedding of these texts from the last pass would be free
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        score(texts[start : start + batch])
    return (time.perf_counter() - started) * 1000 / len(texts)


def measure(kind: str, train_dir: Path, golden: Path, *, batch: int, rounds: int) -> dict[str, Any]:
    """One kind's row: median ms per document scoring alone and explained, and sizes."""
    result = train(read_folder(train_dir).examples, kind=kind)
    metadata = result.metadata
    model = LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=result.pipeline,
    )
    # Made unique, so no cache of the embedder helps either pass.
    texts = [f"{e.text} {i}" for i, e in enumerate(read_folder(golden).examples)]
    model.predict_explained(texts[:batch])  # warm up: the explainer is built once per model
    plain: list[float] = []
    explained: list[float] = []
    for _ in range(rounds):
        plain.append(_per_document_ms(model.predict, texts, batch))
        explained.append(_per_document_ms(model.predict_explained, texts, batch))
    sizes = [len(e.model_dump_json()) for _, e in model.predict_explained(texts) if e is not None]
    return {
        "kind": kind,
        "documents": len(texts),
        "predict_ms": statistics.median(plain),
        "explained_ms": statistics.median(explained),
        "json_bytes_mean": statistics.mean(sizes) if sizes else 0.0,
        "json_bytes_max": max(sizes, default=0),
    }


def main() -> None:
    """Parse arguments, measure each kind, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--train", type=Path, required=True, help="labelled training folder")
    parser.add_argument("--golden", type=Path, required=True, help="labelled folder to score")
    parser.add_argument("--kinds", default=KIND_TFIDF_LR, help="comma-separated model kinds")
    parser.add_argument("--batch", type=int, default=32, help="documents per scoring call")
    parser.add_argument("--rounds", type=int, default=7, help="turns of each, median kept")
    args = parser.parse_args()
    print(
        "| kind | documents | predict ms/doc | predict_explained ms/doc | added ms/doc |"
        " explanation JSON bytes (mean / max) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in args.kinds.split(","):
        row = measure(kind, args.train, args.golden, batch=args.batch, rounds=args.rounds)
        print(
            f"| {row['kind']} | {row['documents']} | {row['predict_ms']:.3f} |"
            f" {row['explained_ms']:.3f} | {row['explained_ms'] - row['predict_ms']:+.3f} |"
            f" {row['json_bytes_mean']:.0f} / {row['json_bytes_max']} |"
        )


if __name__ == "__main__":
    main()
