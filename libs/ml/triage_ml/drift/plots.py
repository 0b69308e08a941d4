"""Drift pictures: baseline against live histograms, and the centroid distance against its limit.

matplotlib is imported inside the functions, so importing the drift package does not load it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage_ml.drift.comparison import (
    CENTROID,
    CONFIDENCE,
    LABEL,
    LENGTH,
    DriftReport,
    Signal,
    Status,
    compare,
    format_number,
    shares,
)
from triage_ml.plots import new_figure, save_png

if TYPE_CHECKING:
    from triage_ml.drift.baseline import Baseline
    from triage_ml.drift.window import Window

PNG_FILES = {
    CONFIDENCE: "drift-confidence.png",
    LENGTH: "drift-length.png",
    LABEL: "drift-labels.png",
    CENTROID: "drift-centroid.png",
}


def _length_label(low: float, high: float | None) -> str:
    """Name a length bin [low, high) compactly: '256-512', '1k-2k', '128k+'."""

    def short(value: float) -> str:
        """1024 and up in k."""
        return f"{int(value) // 1024}k" if value >= 1024 else str(int(value))

    return f"{short(low)}+" if high is None else f"{short(low)}-{short(high)}"


def _title(signal: Signal, what: str) -> str:
    """A picture's title line: the signal's value against its limit, and its status."""
    if signal.value is None:
        return f"{what}: {signal.status.value}"
    value, limit = format_number(signal.value), format_number(signal.limit)
    return f"{what}: {signal.status.value} ({value}, limit {limit})"


def _overlaid(
    path: Path,
    *,
    categories: Sequence[str],
    baseline: np.ndarray,
    live: np.ndarray,
    live_documents: int,
    baseline_documents: int,
    xlabel: str,
    title: str,
    side_by_side: bool,
) -> Path:
    """Draw baseline and live shares per category, overlaid or side by side."""
    from matplotlib import style

    positions = np.arange(len(categories))
    with style.context("default"):
        figure = new_figure()
        axes = figure.add_subplot()
        if side_by_side:
            width = 0.4
            axes.bar(positions - width / 2, baseline, width=width, color="tab:blue")
            axes.bar(positions + width / 2, live, width=width, color="tab:orange")
        else:
            axes.bar(positions, baseline, width=0.9, color="tab:blue", alpha=0.55)
            axes.bar(positions, live, width=0.9, color="tab:orange", alpha=0.55)
        axes.legend(
            [
                f"baseline ({baseline_documents} training documents)",
                f"live ({live_documents} documents)",
            ],
            loc="upper left",
        )
        rotation = 0 if len(categories) <= 6 else 45
        axes.set_xticks(
            positions,
            labels=list(categories),
            rotation=rotation,
            ha="right" if rotation else "center",
            rotation_mode="anchor",
        )
        top = max(float(baseline.max(initial=0.0)), float(live.max(initial=0.0)))
        axes.set_ylim(0.0, max(0.05, min(1.0, top * 1.2)))
        axes.set_ylabel("share of documents")
        axes.set_xlabel(xlabel)
        axes.set_title(title)
        return save_png(figure, path)


def _centroid_png(path: Path, baseline: Baseline, report: DriftReport, title: str) -> Path:
    """Draw the live centroid's distance as a bar, with its limit and the baseline spread."""
    from matplotlib import style

    signal = report.signal(CENTROID)
    centroid = baseline.centroid
    with style.context("default"):
        figure = new_figure()
        axes = figure.add_subplot()
        if centroid is None or signal.value is None or signal.limit is None:
            axes.text(0.5, 0.5, signal.detail, ha="center", va="center", wrap=True)
            axes.set_axis_off()
        else:
            colour = "tab:red" if signal.status is Status.DRIFT else "tab:green"
            if signal.status is Status.INSUFFICIENT:
                colour = "tab:grey"
            chance = centroid.expected_distance(signal.documents)
            axes.barh(
                [0],
                [signal.value],
                height=0.5,
                color=colour,
                label=f"live centroid distance {signal.value:.3f}",
            )
            axes.axvline(
                signal.limit,
                color="black",
                linestyle="--",
                linewidth=2,
                label=f"limit {signal.limit:.3f}",
            )
            axes.axvline(
                centroid.spread,
                color="tab:blue",
                linestyle=":",
                linewidth=2,
                label=f"baseline spread {centroid.spread:.3f} (a training document's mean)",
            )
            axes.axvline(
                chance,
                color="tab:grey",
                linestyle="-.",
                linewidth=1.5,
                label=f"chance distance of {signal.documents} training-like documents {chance:.3f}",
            )
            axes.legend(loc="upper right")
            axes.set_xlim(0.0, max(1.0, signal.value * 1.1))
            axes.set_ylim(-0.6, 1.4)
            axes.set_yticks([0], labels=[f"live\n({signal.documents} documents)"])
            axes.set_xlabel("cosine distance to the baseline centroid")
        axes.set_title(title)
        return save_png(figure, path)


def drift_pngs(
    baseline: Baseline,
    window: Window,
    out_dir: Path,
    *,
    report: DriftReport | None = None,
    title: str = "",
) -> list[Path]:
    """Write the drift pictures into ``out_dir`` and return their paths.

    drift-confidence.png and drift-length.png overlay the baseline and live histograms,
    drift-labels.png puts the label shares side by side, and drift-centroid.png shows the
    live centroid distance against its limit.
    """
    report = report or compare(baseline, window)
    prefix = f"{title}\n" if title else ""
    edges = baseline.confidence_edges
    confidence_bins = [f"{lo:.1f}-{hi:.1f}" for lo, hi in itertools.pairwise(edges)]
    lengths = baseline.length_edges
    length_bins = [
        _length_label(lo, hi if i < len(lengths) - 2 else None)
        for i, (lo, hi) in enumerate(itertools.pairwise(lengths))
    ]
    common = {"live_documents": window.documents, "baseline_documents": baseline.documents}
    return [
        _overlaid(
            out_dir / PNG_FILES[CONFIDENCE],
            categories=confidence_bins,
            baseline=shares(baseline.confidence_counts),
            live=shares(window.confidence_counts),
            xlabel="top-class confidence",
            title=prefix + _title(report.signal(CONFIDENCE), "confidence PSI"),
            side_by_side=False,
            **common,
        ),
        _overlaid(
            out_dir / PNG_FILES[LENGTH],
            categories=length_bins,
            baseline=shares(baseline.length_counts),
            live=shares(window.length_counts),
            xlabel="text length (characters, log-spaced bins)",
            title=prefix + _title(report.signal(LENGTH), "length PSI"),
            side_by_side=False,
            **common,
        ),
        _overlaid(
            out_dir / PNG_FILES[LABEL],
            categories=list(baseline.labels),
            baseline=shares(baseline.label_counts),
            live=shares(window.label_counts),
            xlabel="predicted label",
            title=prefix + _title(report.signal(LABEL), "label PSI"),
            side_by_side=True,
            **common,
        ),
        _centroid_png(
            out_dir / PNG_FILES[CENTROID],
            baseline,
            report,
            prefix + _title(report.signal(CENTROID), "centroid distance"),
        ),
    ]
