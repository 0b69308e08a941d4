"""The drift gauges: every interval, each serving model's window against its training
baseline; the series of models no longer serving are removed, so the labels stay bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable

from triage_classifier.domain import DRIFT_ROLES
from triage_classifier.metrics import DRIFT_CENTROID_DISTANCE, DRIFT_PSI, DRIFT_WINDOW_DOCUMENTS
from triage_classifier.model_source import Models
from triage_ml import drift

log = logging.getLogger(__name__)


def gauge_value(signal: drift.Signal) -> float:
    """A signal's value for its gauge: NaN unless there were enough documents to judge it."""
    if signal.value is None or signal.status not in {drift.Status.OK, drift.Status.DRIFT}:
        return math.nan
    return signal.value


class DriftExporter:
    """Sets the drift gauges from a DriftMonitor's windows, now (``export``) or every
    ``interval_seconds`` between ``start`` and ``stop``.

    The windows are filled by ``MicroBatchScorer``: each micro-batch the champion or the
    canary scores is counted, from the feature vectors the model computes anyway, into a
    rolling window of that model version and role; the exporter compares each window with
    its model's training baseline.
    """

    def __init__(
        self, *, monitor: drift.DriftMonitor, models: Models, interval_seconds: float
    ) -> None:
        self._monitor = monitor
        self._models = models
        self._interval = interval_seconds
        self._exported: set[tuple[str, str]] = set()
        self._unavailable_logged: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def export(self) -> None:
        """Compare each serving model's window with its baseline and set the drift gauges.

        Series of models no longer serving are removed, so the labels stay bounded.
        """
        monitor = self._monitor
        serving = [
            s
            for s in (self._models.serving, self._models.canary)
            if s is not None and s.role in DRIFT_ROLES
        ]
        reports = monitor.reports(
            (s.model.version, s.role.value, s.model.metadata) for s in serving
        )
        for s in serving:
            reason = monitor.unavailable(s.model.version)
            if reason and s.model.version not in self._unavailable_logged:
                self._unavailable_logged.add(s.model.version)
                log.info(
                    "drift monitoring unavailable: %s",
                    reason,
                    extra={"model_version": s.model.version, "model_role": s.role.value},
                )
        forget(self._exported - reports.keys())
        for (version, role), report in reports.items():
            for name in drift.PSI_SIGNALS:
                DRIFT_PSI.labels(version, role, name).set(gauge_value(report.signal(name)))
            DRIFT_CENTROID_DISTANCE.labels(version, role).set(
                gauge_value(report.signal(drift.CENTROID))
            )
            DRIFT_WINDOW_DOCUMENTS.labels(version, role).set(report.documents)
        self._exported = set(reports)

    async def run(self) -> None:
        """Export drift every interval until cancelled; a failure waits for the next one."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                self.export()
            except Exception:
                log.exception("drift export failed; trying again next interval")

    def start(self) -> None:
        """Export in the background from now on."""
        self._task = asyncio.create_task(self.run(), name="drift-export")

    async def stop(self) -> None:
        """Stop exporting and remove the drift series this exporter set."""
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        forget(self._exported)
        self._exported = set()


def forget(keys: Iterable[tuple[str, str]]) -> None:
    """Remove the drift series of these (version, role) pairs."""
    for version, role in keys:
        with contextlib.suppress(KeyError):
            for name in drift.PSI_SIGNALS:
                DRIFT_PSI.remove(version, role, name)
            DRIFT_CENTROID_DISTANCE.remove(version, role)
            DRIFT_WINDOW_DOCUMENTS.remove(version, role)
