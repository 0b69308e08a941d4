"""The statistics drift, canary and evaluation share: PSI, Newcombe intervals, calibration error.

Wilson intervals live in ``triage_contracts.intervals`` (the services measure live precision
with them too, without numpy); newcombe_difference builds on them.

Pure numpy and math, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from triage_contracts.intervals import wilson_interval

# Added to the count of every bin either side has a document in, so a bin the other side never
# saw gives a large but finite term; bins empty on both sides are left out.
PSI_PSEUDOCOUNT = 0.5
# Equal-width bins of the expected calibration error, unless a caller asks for others.
ECE_BINS = 15


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray) -> float:
    """PSI: sum((a - e) * ln(a / e)) over shares, after adding 0.5 to each bin with any count."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError("both histograms need the same bins")
    if (e < 0).any() or (a < 0).any():
        raise ValueError("counts must not be negative")
    if e.sum() == 0 or a.sum() == 0:
        raise ValueError("both histograms need at least one count")
    used = (e + a) > 0
    p = (e[used] + PSI_PSEUDOCOUNT) / (e[used] + PSI_PSEUDOCOUNT).sum()
    q = (a[used] + PSI_PSEUDOCOUNT) / (a[used] + PSI_PSEUDOCOUNT).sum()
    return float(np.sum((q - p) * np.log(q / p)))


def psi_by_key(expected: Mapping[str, int], actual: Mapping[str, int]) -> float:
    """``psi`` of two count mappings (e.g. per label), their keys aligned; a missing key is 0."""
    keys = sorted(set(expected) | set(actual))
    return psi([expected.get(k, 0) for k in keys], [actual.get(k, 0) for k in keys])


def newcombe_difference(
    k1: int, n1: int, k2: int, n2: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Return the interval of ``k2/n2 - k1/n1`` by Newcombe's hybrid score method (method 10).

    Each proportion gets a Wilson interval, and the distances from each estimate to its
    bounds combine in quadrature. With no trials in either arm the interval is (-1, 1).
    """
    l1, u1 = wilson_interval(k1, n1, confidence)
    l2, u2 = wilson_interval(k2, n2, confidence)
    if n1 == 0 or n2 == 0:
        return -1.0, 1.0
    p1 = k1 / n1
    p2 = k2 / n2
    difference = p2 - p1
    low = difference - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = difference + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return max(-1.0, low), min(1.0, high)


def _bin_index(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Map confidences to equal-width bins over [0, 1]: bin i is (i/bins, (i+1)/bins]."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.searchsorted(edges, confidence, side="left") - 1
    return np.clip(index, 0, bins - 1)


def calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, *, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: document count, mean confidence and accuracy (0 where empty)."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(correct, dtype=np.float64)
    if conf.shape != hits.shape or conf.ndim != 1:
        raise ValueError("confidence and correct must be 1-D arrays of the same length")
    index = _bin_index(conf, bins)
    counts = np.bincount(index, minlength=bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    hit_sum = np.bincount(index, weights=hits, minlength=bins)
    safe = np.maximum(counts, 1)
    return counts, conf_sum / safe, hit_sum / safe


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, *, bins: int = ECE_BINS
) -> float:
    """Return the count-weighted mean |accuracy - confidence| over equal-width bins (i/b, (i+1)/b].

    Bins split [0, 1] into ``bins`` equal intervals, each open on the left and closed on the
    right (a confidence of exactly 0 goes into the first); empty bins contribute nothing. An
    empty input gives 0.0.
    """
    counts, mean_conf, accuracy = calibration_bins(confidence, correct, bins=bins)
    total = int(counts.sum())
    if total == 0:
        return 0.0
    return float(np.sum(counts * np.abs(accuracy - mean_conf)) / total)
