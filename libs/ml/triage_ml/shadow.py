"""The statistics behind ``triage shadow report``: does the shadow model do better than the
champion on the same documents?

The shadow scores a sample of the documents the champion scores (its events go to the
shadow classified topic and are never routed). Over a window this module pairs the two
scores of each document both scored and reports:

  * ``agreement``: the share of documents both gave the same label, with its Wilson interval,
    and the champion-by-shadow label counts (agreement per champion label);
  * where a person decided the document (a decided review item), each model's accuracy
    against the person's label, with Wilson intervals, and the verdict: of the decided
    documents exactly one of the two got right (the discordant pairs, as McNemar's test
    counts them), the share the shadow got right. When the whole Wilson interval of that
    share lies above one half the shadow is better; below one half, worse; otherwise (or
    with fewer than ``min_decided`` decided documents) there is no evidence either way.

Pure apart from ``shadow_png``, which writes a picture.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from triage_contracts.intervals import wilson_interval
from triage_ml.plots import new_figure, save_png
from triage_ml.tables import grid

NO_LABEL = "(none)"
"""The label of a score without one (extraction gave no text)."""


@dataclass(frozen=True, slots=True)
class Pair:
    """One document scored by both models, and the label a person decided, if any."""

    document_id: str
    champion: str | None
    shadow: str | None
    decided: str | None = None


class ShadowVerdict(enum.StrEnum):
    """What the decided documents say about the shadow against the champion."""

    BETTER = "shadow better"
    NO_EVIDENCE = "no evidence"
    WORSE = "shadow worse"


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """The comparison of shadow and champion over one window."""

    champion_versions: tuple[str, ...]
    shadow_versions: tuple[str, ...]
    both: int
    """Documents both scored."""
    agreed: int
    agreement_ci: tuple[float, float]
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    """Documents by champion label (rows) and shadow label (columns), in ``labels`` order."""
    decided: int
    """Documents both scored that a person decided."""
    champion_correct: int
    shadow_correct: int
    champion_ci: tuple[float, float]
    shadow_ci: tuple[float, float]
    only_shadow_right: int
    only_champion_right: int
    shadow_wins_ci: tuple[float, float]
    """Wilson interval of the shadow's share of the decided documents only one got right."""
    verdict: ShadowVerdict
    reason: str

    @property
    def agreement(self) -> float:
        """The share of documents both labelled alike (0 with none)."""
        return self.agreed / self.both if self.both else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values."""
        return {
            "champion_versions": list(self.champion_versions),
            "shadow_versions": list(self.shadow_versions),
            "both_scored": self.both,
            "agreed": self.agreed,
            "agreement": self.agreement,
            "agreement_ci": list(self.agreement_ci),
            "labels": list(self.labels),
            "confusion": [list(row) for row in self.confusion],
            "decided": self.decided,
            "champion_correct": self.champion_correct,
            "shadow_correct": self.shadow_correct,
            "champion_accuracy_ci": list(self.champion_ci),
            "shadow_accuracy_ci": list(self.shadow_ci),
            "only_shadow_right": self.only_shadow_right,
            "only_champion_right": self.only_champion_right,
            "shadow_wins_ci": list(self.shadow_wins_ci),
            "verdict": self.verdict.value,
            "reason": self.reason,
        }


def _name(label: str | None) -> str:
    return NO_LABEL if label is None else label


def compare(
    pairs: Sequence[Pair],
    *,
    champion_versions: Iterable[str] = (),
    shadow_versions: Iterable[str] = (),
    min_decided: int = 20,
    confidence: float = 0.95,
) -> ShadowReport:
    """Compare the shadow with the champion on the documents both scored."""
    both = len(pairs)
    agreed = sum(1 for p in pairs if p.champion == p.shadow)
    labels = tuple(sorted({_name(p.champion) for p in pairs} | {_name(p.shadow) for p in pairs}))
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for p in pairs:
        counts[index[_name(p.champion)], index[_name(p.shadow)]] += 1
    decided = [p for p in pairs if p.decided is not None]
    champion_right = sum(1 for p in decided if p.champion == p.decided)
    shadow_right = sum(1 for p in decided if p.shadow == p.decided)
    only_shadow = sum(1 for p in decided if p.shadow == p.decided != p.champion)
    only_champion = sum(1 for p in decided if p.champion == p.decided != p.shadow)
    discordant = only_shadow + only_champion
    wins = wilson_interval(only_shadow, discordant, confidence) if discordant else (0.0, 1.0)
    if len(decided) < min_decided:
        verdict = ShadowVerdict.NO_EVIDENCE
        reason = f"{len(decided)} decided document(s) both scored; {min_decided} needed"
    elif wins[0] > 0.5:
        verdict = ShadowVerdict.BETTER
        reason = (
            f"of {discordant} decided documents only one model got right, the shadow got "
            f"{only_shadow} (share {wins[0]:.2f}-{wins[1]:.2f}, above one half)"
        )
    elif wins[1] < 0.5:
        verdict = ShadowVerdict.WORSE
        reason = (
            f"of {discordant} decided documents only one model got right, the shadow got "
            f"{only_shadow} (share {wins[0]:.2f}-{wins[1]:.2f}, below one half)"
        )
    else:
        verdict = ShadowVerdict.NO_EVIDENCE
        reason = (
            f"of {discordant} decided documents only one model got right, the shadow got "
            f"{only_shadow}: not different from the champion"
        )
    return ShadowReport(
        champion_versions=tuple(sorted(champion_versions)),
        shadow_versions=tuple(sorted(shadow_versions)),
        both=both,
        agreed=agreed,
        agreement_ci=wilson_interval(agreed, both, confidence) if both else (0.0, 1.0),
        labels=labels,
        confusion=tuple(tuple(int(x) for x in row) for row in counts),
        decided=len(decided),
        champion_correct=champion_right,
        shadow_correct=shadow_right,
        champion_ci=wilson_interval(champion_right, len(decided), confidence)
        if decided
        else (0.0, 1.0),
        shadow_ci=wilson_interval(shadow_right, len(decided), confidence)
        if decided
        else (0.0, 1.0),
        only_shadow_right=only_shadow,
        only_champion_right=only_champion,
        shadow_wins_ci=wins,
        verdict=verdict,
        reason=reason,
    )


def _rate(successes: int, n: int, ci: tuple[float, float]) -> str:
    if not n:
        return "-"
    return f"{successes / n:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({successes}/{n})"


def render_table(report: ShadowReport) -> str:
    """The report as plain text: agreement, per-label agreement, accuracy, verdict."""
    champion = ", ".join(report.champion_versions) or "-"
    shadow = ", ".join(report.shadow_versions) or "-"
    lines = [
        f"champion {champion}; shadow {shadow}",
        f"documents both scored: {report.both}",
        f"agreement: {_rate(report.agreed, report.both, report.agreement_ci)}",
        "",
    ]
    if report.both:
        rows = [["champion \\ shadow", *report.labels, "total", "agreement"]]
        for i, label in enumerate(report.labels):
            row = report.confusion[i]
            total = sum(row)
            share = f"{row[i] / total:.3f}" if total else "-"
            rows.append([label, *(str(n) for n in row), str(total), share])
        lines += [*grid(rows), ""]
    lines += [
        f"decided by people: {report.decided}",
        f"champion accuracy: {_rate(report.champion_correct, report.decided, report.champion_ci)}",
        f"shadow accuracy:   {_rate(report.shadow_correct, report.decided, report.shadow_ci)}",
        f"only the shadow right: {report.only_shadow_right}; "
        f"only the champion right: {report.only_champion_right}",
        f"verdict: {report.verdict.value} ({report.reason})",
    ]
    return "\n".join(lines) + "\n"


def shadow_png(report: ShadowReport, path: Path, *, title: str) -> Path:
    """Draw the champion-by-shadow label counts and each model's accuracy where people
    decided (Wilson intervals)."""
    from matplotlib import style

    k = len(report.labels)
    counts = np.asarray(report.confusion, dtype=np.int64).reshape(k, k) if k else np.zeros((1, 1))
    with style.context("default"):
        figure = new_figure()
        left, right = figure.subplots(1, 2, width_ratios=[3, 2])
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        left.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
        ticks = np.arange(k)
        left.set_xticks(ticks, labels=list(report.labels), rotation=30, ha="right")
        left.set_yticks(ticks, labels=list(report.labels))
        for i in range(k):
            for j in range(k):
                colour = "white" if share[i, j] > 0.5 else "black"
                left.text(j, i, str(int(counts[i, j])), ha="center", va="center", color=colour)
        left.set_xlabel("shadow's label")
        left.set_ylabel("champion's label")
        left.set_title(f"agreement {report.agreement:.3f} of {report.both}")
        names = ["champion", "shadow"]
        correct = [report.champion_correct, report.shadow_correct]
        cis = [report.champion_ci, report.shadow_ci]
        n = max(report.decided, 1)
        values = [c / n for c in correct]
        errors = np.array(
            [
                [v - ci[0] for v, ci in zip(values, cis, strict=True)],
                [ci[1] - v for v, ci in zip(values, cis, strict=True)],
            ]
        )
        right.bar(
            names,
            values,
            yerr=errors if report.decided else None,
            capsize=6,
            color=["#4c72b0", "#dd8452"],
        )
        right.set_ylim(0.0, 1.05)
        right.set_ylabel(f"accuracy where people decided (n={report.decided})")
        right.set_title(report.verdict.value)
        figure.suptitle(title)
        return save_png(figure, path)
