"""Wilson score intervals: the one definition the model tools and the services share.

Pure stdlib math, no I/O: evaluation and thresholds in ``triage_ml``, live precision and
threshold tuning in the services and the CLI all bound a proportion the same way.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def two_sided_z(confidence: float) -> float:
    """Return the standard normal quantile for a two-sided ``confidence`` (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(
    successes: int, n: int, confidence: float = 0.95, *, z: float | None = None
) -> tuple[float, float]:
    """Return the Wilson score interval (no continuity correction) of ``successes / n``.

    ``z``, when given, replaces the quantile of ``confidence``. The lower end alone is a
    one-sided bound at (1 + confidence) / 2: the two-sided 90 % interval's is the one-sided 95 %
    lower bound. With no trials nothing is known, so the interval is (0, 1).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if z is None:
        z = two_sided_z(confidence)
    elif not z > 0.0:
        raise ValueError(f"z must be positive, got {z}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = p + z2 / (2.0 * n)
    margin = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))
    # At 0 and n the bound is exactly the end of [0, 1]; skip the float noise.
    low = 0.0 if successes == 0 else max(0.0, (centre - margin) / denominator)
    high = 1.0 if successes == n else min(1.0, (centre + margin) / denominator)
    return low, high
