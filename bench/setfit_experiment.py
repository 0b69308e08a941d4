"""SetFit-style experiment: fine-tune the sentence embedder on labelled pairs, then measure.

The packaged all-MiniLM-L6-v2 is tuned contrastively on pairs of documents of the train
split (``triage_ml.model.split_of``) of the training folder: a pair of the same label
should have cosine similarity 1, a pair of different labels 0 (mean squared error of the
cosine, one epoch, plain torch loop; the sentence-transformers trainer needs ``datasets``
and ``accelerate``, which are not installed). The tuned model is saved to a temporary
directory; ``embed-lr`` and ``tfidf-embed-lr`` are then trained with it and with the
untuned model, and scored on every golden set by ``bench.model_quality.measure``.

    uv run python -m bench.setfit_experiment --train data/sample/train \
        --golden data/sample/golden --golden ../shared/data/dev-eval/clinc150 \
        [--pairs 512] [--seed 0] [--no-untuned]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.model_quality import measure, read_folder
from triage_ml.embeddings import default_model_path
from triage_ml.model import (
    KIND_EMBED_LR,
    KIND_TFIDF_EMBED_LR,
    SERVING_FOLD_ENSEMBLE,
    Example,
    split_of,
)

VARIANTS = (
    f"{KIND_EMBED_LR}:{SERVING_FOLD_ENSEMBLE}",
    f"{KIND_TFIDF_EMBED_LR}:{SERVING_FOLD_ENSEMBLE}",
)


def draw_pairs(
    examples: list[Example], count: int, rng: random.Random
) -> list[tuple[str, str, float]]:
    """Return ``count`` pairs of texts, half of one label (target 1.0), half of two (0.0)."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example.text)
    labels = sorted(by_label)
    if len(labels) < 2:
        raise ValueError("pairs need at least two labels")
    pairs = []
    for index in range(count):
        first = rng.choice(labels)
        if index % 2 == 0:
            a, b = rng.sample(by_label[first], 2)
            pairs.append((a, b, 1.0))
        else:
            second = rng.choice([label for label in labels if label != first])
            pairs.append((rng.choice(by_label[first]), rng.choice(by_label[second]), 0.0))
    rng.shuffle(pairs)
    return pairs


def fine_tune(
    pairs: list[tuple[str, str, float]],
    out_dir: Path,
    *,
    seed: int,
    batch_size: int,
    learning_rate: float,
    max_seq_length: int,
) -> None:
    """Tune the packaged embedder on ``pairs`` for one epoch and save it to ``out_dir``."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(seed)
    model = SentenceTransformer(str(default_model_path()), device="cpu", local_files_only=True)
    serving_length = model.max_seq_length
    model.max_seq_length = max_seq_length  # bounds the cost of a step; restored for saving
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    steps = (len(pairs) + batch_size - 1) // batch_size
    for step in range(steps):
        batch = pairs[step * batch_size : (step + 1) * batch_size]
        embeddings = []
        for side in (0, 1):
            features = model.preprocess([pair[side] for pair in batch])
            embeddings.append(model(features)["sentence_embedding"])
        target = torch.tensor([pair[2] for pair in batch], dtype=torch.float32)
        cosine = torch.nn.functional.cosine_similarity(embeddings[0], embeddings[1])
        loss = torch.nn.functional.mse_loss(cosine, target)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if step % 10 == 0 or step == steps - 1:
            print(f"  step {step + 1}/{steps}: loss {loss.item():.4f}", flush=True)
    model.eval()
    model.max_seq_length = serving_length
    model.save(str(out_dir))


def print_row(row: dict[str, Any], embedder: str) -> None:
    """Print one row of ``bench.model_quality.measure``, with the embedder it used."""
    print(
        f"{row['set']:<15} {row['variant']:<26} {embedder:<8} {row['calibrator']:<11} "
        f"{row['n']:>4} {row['macro_f1']:>8.3f} {row['ece']:>6.3f} {row['routed']:>6.3f} "
        f"{row['routed_precision']:>6.3f} {row['coverage_at_target']:>7.3f} "
        f"{row['docs_per_s']:>7.0f} {row['train_s']:>7.1f}",
        flush=True,
    )


def main() -> None:
    """Fine-tune, then print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--golden", type=Path, action="append", required=True)
    parser.add_argument("--pairs", type=int, default=512, help="pairs to tune on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument(
        "--max-seq-length", type=int, default=64, help="word pieces read while tuning"
    )
    parser.add_argument(
        "--no-untuned", action="store_true", help="skip the rows of the untuned embedder"
    )
    args = parser.parse_args()
    random.seed(args.seed)
    rng = random.Random(args.seed)
    examples = [e for e in read_folder(args.train).examples if split_of(e) == "train"]
    pairs = draw_pairs(examples, args.pairs, rng)
    positives = sum(1 for pair in pairs if pair[2] == 1.0)
    print(
        f"tuning on {len(pairs)} pairs ({positives} same-label) from {len(examples)} "
        f"train-split documents of {args.train}; seed {args.seed}; {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="setfit-") as tmp:
        tuned = Path(tmp) / "tuned-minilm"
        started = time.perf_counter()
        fine_tune(
            pairs,
            tuned,
            seed=args.seed,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_seq_length=args.max_seq_length,
        )
        print(f"fine-tune seconds: {time.perf_counter() - started:.1f}", flush=True)
        header = (
            f"{'set':<15} {'variant':<26} {'embedder':<8} {'calibrator':<11} {'n':>4} "
            f"{'macro-F1':>8} {'ECE':>6} {'routed':>6} {'prec.':>6} {'cov@tgt':>7} "
            f"{'docs/s':>7} {'train s':>7}"
        )
        print(header)
        print("-" * len(header))
        embedders: list[tuple[str, str | None]] = [("tuned", str(tuned))]
        if not args.no_untuned:
            embedders.append(("untuned", None))
        for variant in VARIANTS:
            for name, path in embedders:
                rows = measure(
                    variant, args.train, args.golden, per_class=False, embedding_model_path=path
                )
                for row in rows:
                    print_row(row, name)


if __name__ == "__main__":
    main()
