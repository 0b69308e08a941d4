"""The shadow report's statistics (``triage_ml.shadow``): agreement, per-label counts,
accuracy where people decided, and a verdict only on evidence."""

from __future__ import annotations

from pathlib import Path

from triage_contracts.intervals import wilson_interval
from triage_ml.shadow import NO_LABEL, Pair, ShadowVerdict, compare, render_table, shadow_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _pairs(*, agree: int, shadow_right: int, champion_right: int, both_right: int) -> list[Pair]:
    pairs = [Pair(f"doc_a{i}", "billing", "billing") for i in range(agree)]
    pairs += [Pair(f"doc_s{i}", "billing", "legal", "legal") for i in range(shadow_right)]
    pairs += [Pair(f"doc_c{i}", "billing", "legal", "billing") for i in range(champion_right)]
    pairs += [Pair(f"doc_b{i}", "legal", "legal", "legal") for i in range(both_right)]
    return pairs


def test_agreement_and_counts_per_label() -> None:
    pairs = [
        *_pairs(agree=6, shadow_right=0, champion_right=0, both_right=0),
        Pair("doc_x", "billing", "technical"),
        Pair("doc_y", None, "technical"),
    ]
    report = compare(pairs, champion_versions=["c1"], shadow_versions=["s1"])
    assert (report.both, report.agreed) == (8, 6)
    assert report.agreement_ci == wilson_interval(6, 8)
    assert report.labels == (NO_LABEL, "billing", "technical")
    assert report.confusion == ((0, 0, 1), (0, 6, 1), (0, 0, 0))
    assert report.verdict is ShadowVerdict.NO_EVIDENCE and "0 decided" in report.reason
    text = render_table(report)
    assert "agreement: 0.750" in text and "champion c1; shadow s1" in text


def test_a_shadow_people_keep_overruling_is_worse() -> None:
    report = compare(_pairs(agree=50, shadow_right=2, champion_right=25, both_right=10))
    assert report.decided == 37
    assert (report.champion_correct, report.shadow_correct) == (35, 12)
    assert report.shadow_wins_ci == wilson_interval(2, 27)
    assert report.verdict is ShadowVerdict.WORSE
    assert report.to_dict()["verdict"] == "shadow worse"


def test_a_shadow_people_agree_with_more_often_is_better() -> None:
    report = compare(_pairs(agree=0, shadow_right=25, champion_right=3, both_right=0))
    assert report.verdict is ShadowVerdict.BETTER


def test_no_verdict_without_enough_decisions_or_a_clear_difference() -> None:
    few = compare(_pairs(agree=0, shadow_right=0, champion_right=10, both_right=0))
    assert few.verdict is ShadowVerdict.NO_EVIDENCE  # 10 decided, 20 needed
    assert (
        compare(
            _pairs(agree=0, shadow_right=0, champion_right=10, both_right=0), min_decided=10
        ).verdict
        is ShadowVerdict.WORSE
    )
    even = compare(_pairs(agree=0, shadow_right=12, champion_right=10, both_right=5))
    assert even.verdict is ShadowVerdict.NO_EVIDENCE
    assert "not different" in even.reason


def test_the_picture_is_written(tmp_path: Path) -> None:
    report = compare(_pairs(agree=5, shadow_right=3, champion_right=25, both_right=4))
    path = shadow_png(report, tmp_path / "shadow.png", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC)
    empty = shadow_png(compare([]), tmp_path / "empty.png", title="t")
    assert empty.read_bytes().startswith(PNG_MAGIC)
