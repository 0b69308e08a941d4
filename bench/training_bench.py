"""Training benchmark: how long `triage_ml.model.train` takes, and what it costs in quality.

The corpus is **synthetic**: built deterministically from the shipped sample set
(`data/sample/train`, itself synthetic) by recombining the lines of several documents of a
queue, mixing in a line from another queue now and then, and perturbing words (typos, words
swapped within the queue's vocabulary, invented names and numbers), so the vocabulary grows
as real text does and no two documents are alike. It is not real mail: the figures say where
the time goes and how it scales, not what a real corpus scores.

Each row runs in its own process; peak RSS is that process's tree (training workers
included), sampled from /proc every 50 ms. Rows:

- ``legacy``: what `train` did up to 2026-12: a 5-fold `cross_val_predict` over the pipeline
  whose classifier is `CalibratedClassifierCV(LogisticRegression, sigmoid, cv=5)` (25
  logistic-regression fits), then that pipeline fitted again (5 more), reproduced here;
- ``current``: `triage_ml.model.train` as it is (the whole of it: features, the five fold
  models in parallel, the calibrator chosen among three, thresholds, drift baseline,
  holdout scoring), serving the fold models (the default);
- ``refit``: the same, with ``serving="refit"`` (a sixth fit on the whole train split).

Each reports the logistic-regression fits it made (``fits``: counted in-process for
``legacy``, the metadata's ``calibration.models_fitted`` for the others), the macro-F1 of
its cross-validated predictions on the train split and the macro-F1 on the frozen holdout
split. Linux only (it reads /proc).

    uv run python -m bench.training_bench [--documents 10000] [--paths current,refit,legacy]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT
from triage_ml.dataset import iter_folder_dataset, load_examples
from triage_ml.model import (
    KIND_TFIDF_LR,
    SERVING_FOLD_ENSEMBLE,
    SERVING_REFIT,
    Example,
    split_of,
)

SAMPLE_TRAIN = ROOT / "data" / "sample" / "train"
PAGE = os.sysconf("SC_PAGE_SIZE")
FIRST_NAMES = ("ana", "ben", "chloe", "dmitri", "elif", "farid", "greta", "hugo", "ines", "noor")
MISFILED = 0.08
COMPANIES = ("acme", "borealis", "cobalt", "dunmore", "eastgate", "fenwick", "granta", "ivory")


def _sample() -> dict[str, list[str]]:
    by_label: dict[str, list[str]] = {}
    for path, label in iter_folder_dataset(SAMPLE_TRAIN):
        for example in load_examples(path, label):
            by_label.setdefault(label, []).append(example.text)
    return by_label


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    move = rng.randrange(3)
    if move == 0:  # swap two letters
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if move == 1:  # drop one
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]  # double one


def synthetic_corpus(documents: int, *, seed: int = 0) -> list[Example]:
    """``documents`` labelled examples, the same for the same arguments (see module doc)."""
    rng = random.Random(seed)
    by_label = _sample()
    labels = sorted(by_label)
    lines = {
        label: [line for text in texts for line in text.splitlines() if line.strip()]
        for label, texts in by_label.items()
    }
    vocab = {
        label: sorted({w for line in lines[label] for w in re.findall(r"[a-z]{4,}", line.lower())})
        for label in labels
    }
    out: list[Example] = []
    for i in range(documents):
        label = labels[i % len(labels)]
        base = rng.choice(by_label[label]).splitlines()
        picked = [line for line in base if line.strip()]
        picked += rng.sample(lines[label], k=min(len(lines[label]), rng.randint(2, 12)))
        other = rng.choice([x for x in labels if x != label])
        for _ in range(rng.choice((0, 0, 1, 2, 4))):  # lines from another queue: mail wanders
            picked.insert(rng.randrange(len(picked) + 1), rng.choice(lines[other]))
        rng.shuffle(picked)
        words: list[str] = []
        for word in " ".join(picked).split():
            roll = rng.random()
            if roll < 0.04:
                words.append(_typo(word, rng))
            elif roll < 0.09:
                words.append(rng.choice(vocab[label]))
            elif roll < 0.10:
                words.append(rng.choice(vocab[other]))
            elif roll < 0.11:
                words.append(f"{rng.choice(FIRST_NAMES)} {rng.choice(COMPANIES)}")
            elif roll < 0.12:
                words.append(str(rng.randrange(10**6)))
            else:
                words.append(word)
        if rng.random() < MISFILED:  # filed in the wrong queue, as some real documents are
            label = other
        out.append(Example(text=f"{' '.join(words)}\nref {seed}-{i}", label=label))
    return out


def _legacy(examples: list[Example]) -> dict[str, Any]:
    """The nested-CV training of before, fitted as it was; its fits and macro-F1 figures."""
    import numpy as np
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import Pipeline

    def make() -> Pipeline:
        return Pipeline(
            [
                ("features", TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)),
                (
                    "clf",
                    CalibratedClassifierCV(
                        LogisticRegression(C=4.0, max_iter=2000, random_state=0),
                        method="sigmoid",
                        cv=5,
                    ),
                ),
            ]
        )

    train = [e for e in examples if split_of(e) == "train"]
    holdout = [e for e in examples if split_of(e) == "holdout"]
    texts, truth = [e.text for e in train], [e.label for e in train]
    labels = np.asarray(sorted(set(truth)))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    fits = 0
    fit = LogisticRegression.fit

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal fits
        fits += 1
        return fit(self, *args, **kwargs)

    LogisticRegression.fit = counting
    try:
        proba = cross_val_predict(make(), texts, truth, cv=folds, method="predict_proba")
        pipeline = make().fit(texts, truth)
    finally:
        LogisticRegression.fit = fit
    cv_pred = labels[np.argmax(proba, axis=1)]
    return {
        "fits": fits,
        "cv_macro_f1": round(float(f1_score(truth, cv_pred, average="macro")), 4),
        "holdout_macro_f1": round(
            float(
                f1_score(
                    [e.label for e in holdout],
                    pipeline.predict([e.text for e in holdout]),
                    average="macro",
                )
            ),
            4,
        ),
    }


def _current(examples: list[Example], serving: str) -> dict[str, Any]:
    from triage_ml.model import train

    metadata = train(examples, seed=0, serving=serving).metadata
    return {"fits": metadata["calibration"]["models_fitted"], **metadata["metrics"]}


def run_one(path: str, documents: int) -> dict[str, Any]:
    """Build the corpus, train by ``path``, and return the timing and metrics (in-process)."""
    examples = synthetic_corpus(documents)
    started = time.perf_counter()
    if path == "legacy":
        metrics = _legacy(examples)
    else:
        metrics = _current(examples, SERVING_REFIT if path == "refit" else SERVING_FOLD_ENSEMBLE)
    return {"seconds": round(time.perf_counter() - started, 1), **metrics}


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and its descendants, now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def measure(path: str, documents: int) -> dict[str, Any]:
    """Run one row in a child process and sample its tree's peak RSS meanwhile."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.training_bench",
            "--one",
            path,
            "--documents",
            str(documents),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(child.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = child.communicate()
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{path} at {documents} documents failed ({child.returncode})")
    row: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    row["peak_rss_mib"] = round(peak / 2**20)
    return row


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", default="10000", help="comma-separated corpus sizes")
    parser.add_argument(
        "--paths", default="current", help="comma-separated: current, refit, legacy"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, int(args.documents))))
        return
    header = (
        f"{'documents':>9}  {'kind':<8}  {'path':<7}  {'seconds':>7}  {'peak RSS MiB':>12}  "
        f"{'fits':>4}  {'cv macro-F1':>11}  {'holdout macro-F1':>16}"
    )
    print(f"synthetic corpus from data/sample/train; {os.cpu_count()} CPUs")
    print(header)
    print("-" * len(header))
    for documents in (int(x) for x in args.documents.split(",")):
        for path in args.paths.split(","):
            row = measure(path, documents)
            print(
                f"{documents:>9}  {KIND_TFIDF_LR:<8}  {path:<7}  {row['seconds']:>7}  "
                f"{row['peak_rss_mib']:>12}  {row['fits']:>4}  {row['cv_macro_f1']:>11}  "
                f"{row.get('holdout_macro_f1', '-'):>16}",
                flush=True,
            )


if __name__ == "__main__":
    main()
