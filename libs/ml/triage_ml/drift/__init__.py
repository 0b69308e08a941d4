"""Drift: how far live documents and predictions have moved from what a model was trained on.

See docs/drift.md. Everything here is pure apart from ``drift_pngs``, which writes pictures.
"""

from triage_ml.drift.baseline import (
    BASELINE_FORMAT,
    CONFIDENCE_EDGES,
    LENGTH_EDGES,
    METADATA_KEY,
    Baseline,
    BaselineUnavailableError,
)
from triage_ml.drift.centroid import MAX_CENTROID_COMPONENTS, Centroid
from triage_ml.drift.comparison import (
    CENTROID,
    CONFIDENCE,
    LABEL,
    LENGTH,
    PSI_SIGNALS,
    SIGNALS,
    DriftReport,
    DriftThresholds,
    Signal,
    Status,
    compare,
    unavailable_report,
)
from triage_ml.drift.monitor import DriftMonitor
from triage_ml.drift.plots import PNG_FILES, drift_pngs
from triage_ml.drift.render import render_table
from triage_ml.drift.window import RollingWindow, Window

__all__ = [
    "BASELINE_FORMAT",
    "CENTROID",
    "CONFIDENCE",
    "CONFIDENCE_EDGES",
    "LABEL",
    "LENGTH",
    "LENGTH_EDGES",
    "MAX_CENTROID_COMPONENTS",
    "METADATA_KEY",
    "PNG_FILES",
    "PSI_SIGNALS",
    "SIGNALS",
    "Baseline",
    "BaselineUnavailableError",
    "Centroid",
    "DriftMonitor",
    "DriftReport",
    "DriftThresholds",
    "RollingWindow",
    "Signal",
    "Status",
    "Window",
    "compare",
    "drift_pngs",
    "render_table",
    "unavailable_report",
]
