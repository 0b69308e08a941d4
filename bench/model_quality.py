"""Model quality benchmark: train model variants on one labelled folder, evaluate each on
golden sets, side by side (what ``triage model eval`` computes), with documents per second.

A variant is ``KIND:SERVING`` (``triage_ml.model.KINDS``, ``SERVINGS``), or
``KIND:SERVING:CALIBRATOR`` to train with that calibrator alone. Each is trained in
this process with ``triage_ml.model.train`` (the calibrator chosen by measurement, as
``triage model train`` does) and scored on every golden set in one batch; documents per
second is that batch's, features included, after one warm-up call. A golden set with queues
the model lacks is also judged on the documents of the queues it has (``SET/known``).

    uv run python -m bench.model_quality --train data/sample/train \
        --golden data/sample/golden --golden ../shared/data/dev-eval/clinc150 \
        [--variants tfidf-lr:fold-ensemble,tfidf-lr:refit] [--per-class]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from triage_ml.dataset import LabelledData, iter_folder_dataset
from triage_ml.embeddings import clear_cache
from triage_ml.evaluation import evaluate
from triage_ml.model import (
    KIND_TFIDF_LR,
    SERVING_FOLD_ENSEMBLE,
    SERVING_REFIT,
    LoadedModel,
    train,
)


def read_folder(root: Path) -> LabelledData:
    """The labelled documents of a folder, read as training and eval read them."""
    data = LabelledData()
    for path, label in iter_folder_dataset(root):
        data.add_file(path, label)
    return data


def measure(
    variant: str,
    train_dir: Path,
    goldens: list[Path],
    *,
    per_class: bool,
    embedding_model_path: str | None = None,
) -> list[dict[str, Any]]:
    """Train one variant (with the embedding model at ``embedding_model_path``, default the
    packaged one); return a row per golden set."""
    kind, serving, *calibrator = variant.split(":")
    examples = read_folder(train_dir).examples
    started = time.perf_counter()
    result = train(
        examples,
        kind=kind,
        serving=serving,
        calibrators=calibrator or None,
        embedding_model_path=embedding_model_path,
    )
    seconds = time.perf_counter() - started
    metadata = result.metadata
    model = LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=result.pipeline,
    )
    rows = []
    for golden in goldens:
        data = read_folder(golden)
        texts = [e.text for e in data.examples]
        truth = [e.label for e in data.examples]
        model.predict_proba(texts[:1])
        clear_cache()  # embeddings of these texts from an earlier variant would be free
        scored = time.perf_counter()
        probabilities = model.predict_proba(texts)
        rate = len(texts) / (time.perf_counter() - scored)
        subsets = [(golden.name, np.ones(len(truth), dtype=bool))]
        known = np.array([t in model.labels for t in truth])
        if not known.all():  # also judged on the queues the model has
            subsets.append((f"{golden.name}/known", known))
        for name, keep in subsets:
            report = evaluate(
                truth=[t for t, k in zip(truth, keep, strict=True) if k],
                probabilities=probabilities[keep],
                labels=list(model.labels),
                thresholds=model.thresholds,
                target_precision=float(metadata["target_precision"]),
            )
            row: dict[str, Any] = {
                "set": name,
                "variant": f"{kind}:{serving}",
                "calibrator": metadata["calibration"]["method"],
                "n": report.n,
                "macro_f1": report.macro_f1,
                "ece": report.ece,
                "routed": report.coverage,
                "routed_precision": report.routed_precision,
                "coverage_at_target": report.coverage_at_target,
                "docs_per_s": rate,
                "train_s": seconds,
            }
            if per_class:
                row["class_ece"] = {c.label: c.ece for c in report.per_class if c.ece is not None}
            rows.append(row)
    return rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--golden", type=Path, action="append", required=True)
    parser.add_argument(
        "--variants",
        default=f"{KIND_TFIDF_LR}:{SERVING_FOLD_ENSEMBLE},{KIND_TFIDF_LR}:{SERVING_REFIT}",
    )
    parser.add_argument("--per-class", action="store_true", help="also print ECE per class")
    args = parser.parse_args()
    print(f"trained on {args.train}; {os.cpu_count()} CPUs")
    header = (
        f"{'set':<15} {'variant':<26} {'calibrator':<11} {'n':>4} {'macro-F1':>8} {'ECE':>6} "
        f"{'routed':>6} {'prec.':>6} {'cov@tgt':>7} {'docs/s':>7} {'train s':>7}"
    )
    print(header)
    print("-" * len(header))
    for variant in args.variants.split(","):
        for row in measure(variant, args.train, args.golden, per_class=args.per_class):
            print(
                f"{row['set']:<15} {row['variant']:<26} {row['calibrator']:<11} {row['n']:>4} "
                f"{row['macro_f1']:>8.3f} {row['ece']:>6.3f} {row['routed']:>6.3f} "
                f"{row['routed_precision']:>6.3f} {row['coverage_at_target']:>7.3f} "
                f"{row['docs_per_s']:>7.0f} {row['train_s']:>7.1f}",
                flush=True,
            )
            if "class_ece" in row:
                shown = ", ".join(f"{k} {v:.3f}" for k, v in row["class_ece"].items())
                print(f"{'':<15} ECE per class: {shown}", flush=True)


if __name__ == "__main__":
    main()
