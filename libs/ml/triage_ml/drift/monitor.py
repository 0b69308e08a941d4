"""The classifier's drift monitor: rolling windows per serving model, and their reports."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from triage_ml.drift.baseline import Baseline, BaselineUnavailableError
from triage_ml.drift.comparison import DriftReport, DriftThresholds, compare
from triage_ml.drift.window import RollingWindow, Window


class DriftMonitor:
    """Rolling windows of live scoring, one per (model version, role), and their reports.

    Not thread-safe: create batch windows anywhere, but ``add`` and ``reports`` from one
    thread (the classifier's event loop).
    """

    def __init__(self, *, max_documents: int, thresholds: DriftThresholds | None = None) -> None:
        """Keep at most ``max_documents`` per window; judge them by ``thresholds``."""
        self.max_documents = max_documents
        self.thresholds = thresholds or DriftThresholds()
        self._baselines: dict[str, Baseline | BaselineUnavailableError] = {}
        self._windows: dict[tuple[str, str], RollingWindow] = {}

    def baseline(self, version: str, metadata: Mapping[str, Any]) -> Baseline | None:
        """The model's baseline, read once per version; None when it has none."""
        known = self._baselines.get(version)
        if known is None:
            try:
                known = Baseline.from_metadata(metadata)
            except BaselineUnavailableError as exc:
                known = exc
            self._baselines[version] = known
        return known if isinstance(known, Baseline) else None

    def unavailable(self, version: str) -> str | None:
        """Why a version seen before has no baseline; None if it has one or was not seen."""
        known = self._baselines.get(version)
        return str(known) if isinstance(known, BaselineUnavailableError) else None

    def batch_window(self, version: str, metadata: Mapping[str, Any]) -> Window | None:
        """An empty window for one micro-batch scored by this model; None without a baseline."""
        baseline = self.baseline(version, metadata)
        return None if baseline is None else baseline.window()

    def add(self, version: str, role: str, window: Window) -> None:
        """Count a micro-batch's window into the rolling window of (version, role).

        A window of a version ``reports`` has forgotten (it stopped serving while the batch
        was scored) is dropped.
        """
        key = (version, role)
        rolling = self._windows.get(key)
        if rolling is None:
            baseline = self._baselines.get(version)
            if not isinstance(baseline, Baseline):
                return  # forgotten meanwhile by ``reports``: the model no longer serves
            rolling = RollingWindow(baseline, max_documents=self.max_documents)
            self._windows[key] = rolling
        rolling.add(window)

    def reports(
        self, serving: Iterable[tuple[str, str, Mapping[str, Any]]]
    ) -> dict[tuple[str, str], DriftReport]:
        """Report on every (version, role, metadata) serving now that has a baseline.

        Windows of models no longer serving are dropped, so labels stay bounded.
        """
        out: dict[tuple[str, str], DriftReport] = {}
        current = {(version, role): metadata for version, role, metadata in serving}
        for key in list(self._windows):
            if key not in current:
                del self._windows[key]
        for version in list(self._baselines):
            if version not in {v for v, _ in current}:
                del self._baselines[version]
        for (version, role), metadata in current.items():
            baseline = self.baseline(version, metadata)
            if baseline is None:
                continue
            rolling = self._windows.get((version, role))
            window = rolling.snapshot() if rolling is not None else baseline.window()
            out[(version, role)] = compare(baseline, window, self.thresholds)
        return out
