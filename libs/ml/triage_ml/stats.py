"""The statistics drift, canary and evaluation share: PSI, Wilson intervals, calibration error.

Pure numpy and math, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

# Added to the count of every bin either side has a document in, so a bin the other side never
# saw gives a large but finite term; bins empty on both sides are left out.
PSI_PSEUDOCOUNT = 0.5


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
