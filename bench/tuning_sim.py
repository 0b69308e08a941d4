"""How often ``triage policy tune`` proposes a threshold whose true precision misses the target.

A simulated label: confidences uniform on [0.5, 1), the chance a prediction is right rising
with its confidence (``--shape``); every document below the current threshold is reviewed,
a ``--share`` quality sample of those above it. Each trial draws a window, tunes, and checks
the proposal against the true precision above it (computed exactly from the curve).

    python -m bench.tuning_sim --trials 100 --documents 100000 --share 0.02 --current 0.7
"""

from __future__ import annotations

import argparse
import random
import statistics

from triage_runtime.threshold_tuning import Reviewed, TuningTarget, tune_label

GRID = 20_000


def right_chance(confidence: float, shape: float) -> float:
    """The chance a prediction at ``confidence`` is right: 0.6 at 0.5, 1.0 at 1, bent by shape."""
    return 0.6 + 0.4 * float(((confidence - 0.5) / 0.5) ** shape)


def true_precision(threshold: float, shape: float) -> float:
    """The precision of everything at or above ``threshold`` (confidences uniform on [0.5, 1))."""
    start = max(threshold, 0.5)
    points = [start + (1.0 - start) * (i + 0.5) / GRID for i in range(GRID)]
    return statistics.fmean(right_chance(c, shape) for c in points)


def trial(
    rng: random.Random,
    *,
    documents: int,
    share: float,
    current: float,
    shape: float,
    confidence: float,
) -> tuple[float | None, str]:
    """One window: the proposal and the verdict (``confidence``: the bound's)."""
    reviewed: list[Reviewed] = []
    confidences: list[float] = []
    for _ in range(documents):
        score = rng.uniform(0.5, 1.0)
        confidences.append(score)
        right = rng.random() < right_chance(score, shape)
        if score < current:
            reviewed.append(Reviewed(score, right))
        elif rng.random() < share:
            reviewed.append(Reviewed(score, right, 1.0 / share, sampled=True))
    tuned = tune_label(
        "x",
        reviewed,
        confidences,
        current=current,
        target=TuningTarget(precision=0.95, confidence=confidence, min_samples=30),
        days=30.0,
    )
    return tuned.proposed, tuned.verdict.value


def main() -> None:
    """Run the trials and print how the proposals fared."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--share", type=float, default=0.02)
    parser.add_argument("--current", type=float, default=0.7)
    parser.add_argument("--shape", type=float, default=1.0)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    # The lowest threshold that truly holds 95 %, on a 0.001 grid.
    lowest = next(
        t / 1000 for t in range(500, 1001) if true_precision(t / 1000, args.shape) >= 0.95
    )
    proposals: list[float] = []
    verdicts: dict[str, int] = {}
    misses = 0
    for _ in range(args.trials):
        proposed, verdict = trial(
            rng,
            documents=args.documents,
            share=args.share,
            current=args.current,
            shape=args.shape,
            confidence=args.confidence,
        )
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
        if proposed is not None:
            proposals.append(proposed)
            misses += true_precision(proposed, args.shape) < 0.95
    print(
        f"true lowest threshold holding 95%: {lowest:.3f}; current {args.current}; "
        f"true precision now {true_precision(args.current, args.shape):.4f}"
    )
    print(f"verdicts over {args.trials} windows: {verdicts}")
    if proposals:
        print(
            f"proposals: median {statistics.median(proposals):.3f}, "
            f"min {min(proposals):.3f}, max {max(proposals):.3f}; "
            f"true precision below 95% in {misses} of {len(proposals)} "
            f"({misses / len(proposals):.1%})"
        )


if __name__ == "__main__":
    main()
