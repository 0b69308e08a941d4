"""PNG pictures of an evaluation, and the figure helpers the canary and drift pictures use too.

matplotlib is imported inside the functions, so importing this module stays cheap. Figures are
drawn on the Agg canvas with matplotlib's default style (a user's matplotlibrc is ignored) and
saved without a "Software" entry, so the same input gives byte-identical 800x600 PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from triage_ml.evaluation import EvalReport, class_outcomes, top_class_outcomes
from triage_ml.stats import ECE_BINS, calibration_bins, expected_calibration_error

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE_IN = (8.0, 6.0)
DPI = 100


def new_figure() -> Figure:
    """Return an 800x600 figure attached to an Agg canvas, independent of pyplot's state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Figure, path: Path) -> Path:
    """Write the figure as a PNG with no metadata that varies between runs or versions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def confusion_matrix_png(report: EvalReport, path: Path, *, title: str) -> Path:
    """Draw the confusion matrix (true rows, predicted columns) annotated with counts."""
    from matplotlib import style

    counts = np.asarray(report.confusion, dtype=np.int64).reshape(len(report.labels), -1)
    k = len(report.labels)
    row_totals = counts.sum(axis=1, keepdims=True)
    share = counts / np.maximum(row_totals, 1)
    fontsize = max(5, min(12, 100 // max(k, 1)))
    rotation = 30 if k <= 5 else 60 if k <= 10 else 90
    unknown = report.n - int(counts.sum())

    with style.context("default"):
        figure = new_figure()
        axes = figure.add_subplot()
        image = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        colorbar = figure.colorbar(image, ax=axes)
        colorbar.set_label("share of the true label's documents")
        ticks = np.arange(k)
        axes.set_xticks(
            ticks, labels=list(report.labels), rotation=rotation, ha="right", rotation_mode="anchor"
        )
        axes.set_yticks(
            ticks,
            labels=[
                f"{label} ({int(total)})"
                for label, total in zip(report.labels, row_totals[:, 0], strict=True)
            ],
        )
        axes.tick_params(axis="both", labelsize=fontsize)
        axes.set_xticks(np.arange(k + 1) - 0.5, minor=True)
        axes.set_yticks(np.arange(k + 1) - 0.5, minor=True)
        axes.grid(which="minor", color="white", linewidth=1.5)
        axes.tick_params(which="minor", length=0)
        for i in range(k):
            for j in range(k):
                axes.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    fontsize=fontsize,
                    color="white" if share[i, j] > 0.5 else "black",
                )
        xlabel = "predicted label"
        if unknown:
            noun = "document" if unknown == 1 else "documents"
            xlabel += f"\n({unknown} {noun} with a true label outside the model's labels not shown)"
        axes.set_xlabel(xlabel)
        axes.set_ylabel("true label (documents)")
        axes.set_title(f"{title}\nn={report.n}, accuracy {report.accuracy:.3f}")
        return save_png(figure, path)


def calibration_png(
    truth: Sequence[str],
    probabilities: np.ndarray,
    labels: Sequence[str],
    path: Path,
    *,
    title: str,
) -> Path:
    """Draw a reliability diagram of top-class confidence, with per-bin counts underneath."""
    confidence, correct = top_class_outcomes(truth, probabilities, labels)
    return _reliability_png(
        confidence,
        correct,
        path,
        title=title,
        what="top-class confidence",
        accuracy_label="accuracy",
    )


def class_calibration_png(
    truth: Sequence[str],
    probabilities: np.ndarray,
    labels: Sequence[str],
    label: str,
    path: Path,
    *,
    title: str,
) -> Path:
    """Draw the one-vs-rest reliability diagram of one label: every document's probability of
    ``label`` against the share of documents that are of it."""
    probability, outcome = class_outcomes(truth, probabilities, labels, label)
    return _reliability_png(
        probability,
        outcome,
        path,
        title=f"{title}\n{label} against the rest",
        what=f"probability of {label}",
        accuracy_label=f"share that is {label}",
    )


def _reliability_png(
    confidence: np.ndarray,
    correct: np.ndarray,
    path: Path,
    *,
    title: str,
    what: str,
    accuracy_label: str,
) -> Path:
    """A reliability diagram in ``ECE_BINS`` bins, the bins' document counts underneath."""
    from matplotlib import style

    bins = ECE_BINS
    counts, mean_conf, accuracy = calibration_bins(confidence, correct, bins=bins)
    ece = expected_calibration_error(confidence, correct, bins=bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins
    filled = counts > 0

    with style.context("default"):
        figure = new_figure()
        grid = figure.add_gridspec(2, 1, height_ratios=(3, 1))
        axes = figure.add_subplot(grid[0])
        below = figure.add_subplot(grid[1], sharex=axes)

        axes.bar(
            edges[:-1][filled],
            accuracy[filled],
            width=width,
            align="edge",
            color="tab:blue",
            alpha=0.85,
            edgecolor="black",
            label=accuracy_label,
        )
        axes.hlines(
            mean_conf[filled],
            edges[:-1][filled],
            edges[1:][filled],
            color="tab:red",
            linewidth=2.5,
            zorder=3,
            label=f"mean {what}",
        )
        axes.plot(
            [0, 1],
            [0, 1],
            linestyle="--",
            color="grey",
            zorder=4,
            label="perfect calibration",
        )
        axes.set_xlim(0.0, 1.0)
        axes.set_ylim(0.0, 1.0)
        axes.set_ylabel(accuracy_label)
        axes.legend(loc="upper left")
        axes.tick_params(labelbottom=False)
        axes.set_title(
            f"{title}\nECE {ece:.3f} ({bins} equal-width bins of {what}, n={len(confidence)})"
        )

        below.bar(
            edges[:-1], counts, width=width, align="edge", color="tab:grey", edgecolor="black"
        )
        for left, count in zip(edges[:-1], counts, strict=True):
            if count:
                below.text(
                    left + width / 2, count, str(int(count)), ha="center", va="bottom", fontsize=8
                )
        below.set_ylim(0.0, max(1.0, float(counts.max()) * 1.25))
        below.set_xlabel(what)
        below.set_ylabel("documents")
        return save_png(figure, path)
