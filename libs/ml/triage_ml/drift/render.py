"""A drift report as plain text."""

from __future__ import annotations

from triage_ml.drift.comparison import DriftReport, Status, format_number
from triage_ml.tables import grid


def render_table(report: DriftReport) -> str:
    """Return a plain-text report: one row per signal, why, then the window and the status."""
    if report.status is Status.UNAVAILABLE and report.reason:
        return f"drift: unavailable — {report.reason}\n"
    rows = [["signal", "value", "limit", "documents", "status"]]
    rows += [
        [s.name, format_number(s.value), format_number(s.limit), str(s.documents), s.status.value]
        for s in report.signals
    ]
    details = [f"{s.name}: {s.detail}" for s in report.signals]
    window = (
        f"window: {report.documents} documents"
        + (
            f" ({report.featureless} sharing no feature with the baseline centroid)"
            if report.featureless
            else ""
        )
        + f"; baseline: {report.baseline_documents} training documents ({report.predictions})"
    )
    drifted = [s.name for s in report.signals if s.status is Status.DRIFT]
    status = f"status: {report.status.value}"
    if drifted:
        status += f" — {', '.join(drifted)}"
    return "\n".join([*grid(rows), "", *details, "", window, status]) + "\n"
