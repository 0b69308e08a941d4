"""The audit's judge: it must flag every way an outcome can be lost or doubled, and no more."""

from __future__ import annotations

from tests.faults.harness import judge

E1 = "00000000-0000-4000-8000-000000000001"
E2 = "00000000-0000-4000-8000-000000000002"


def test_one_outcome_each_is_clean_and_a_repeated_event_is_only_a_redelivery() -> None:
    """Routed once (its event seen twice, same id) and in review once: no violation."""
    verdict = judge(
        ["doc_a", "doc_b"],
        routes={"doc_a": ("billing", E1, True)},
        reviews={"doc_b": 1},
        routed_events={"doc_a": [("billing", E1), ("billing", E1)]},
        dead=set(),
    )
    assert verdict.violations == {}
    assert verdict.redelivered == 1
    assert verdict.lost == verdict.duplicated == set()


def test_every_kind_of_loss_is_flagged() -> None:
    """No outcome, an unpublished decision, a decision whose event never reached its topic."""
    verdict = judge(
        ["doc_none", "doc_unpublished", "doc_missing", "doc_dead"],
        routes={
            "doc_unpublished": ("legal", E1, False),
            "doc_missing": ("legal", E2, True),
        },
        reviews={},
        routed_events={"doc_unpublished": [("legal", E1)]},
        dead={"doc_dead"},
    )
    assert verdict.lost == {"doc_none", "doc_unpublished", "doc_missing"}
    assert verdict.violations["dead-lettered"] == ["doc_dead"]
    assert verdict.duplicated == set()


def test_every_kind_of_duplicate_is_flagged() -> None:
    """Both outcomes, two review items, two queues, two event ids, an event nobody decided."""
    verdict = judge(
        ["doc_both", "doc_reviews", "doc_queues", "doc_ids", "doc_orphan", "doc_other"],
        routes={
            "doc_both": ("billing", E1, True),
            "doc_queues": ("billing", E1, True),
            "doc_ids": ("billing", E1, True),
            "doc_other": ("billing", E1, True),
        },
        reviews={"doc_both": 1, "doc_reviews": 2, "doc_orphan": 1},
        routed_events={
            "doc_both": [("billing", E1)],
            "doc_queues": [("billing", E1), ("legal", E1)],
            "doc_ids": [("billing", E1), ("billing", E2)],
            "doc_orphan": [("legal", E2)],
            "doc_other": [("technical", E2)],
        },
        dead=set(),
    )
    assert verdict.duplicated == {
        "doc_both",
        "doc_reviews",
        "doc_queues",
        "doc_ids",
        "doc_orphan",
        "doc_other",
    }
    assert verdict.lost == set()
    assert verdict.redelivered == 0


def test_ingest_rows_must_agree_with_the_outcome() -> None:
    """An accepted document's row is published, and its status is the outcome it got."""
    verdict = judge(
        ["doc_ok", "doc_stale", "doc_unpublished"],
        routes={"doc_ok": ("billing", E1, True), "doc_unpublished": ("legal", E2, True)},
        reviews={"doc_stale": 1},
        routed_events={"doc_ok": [("billing", E1)], "doc_unpublished": [("legal", E2)]},
        dead=set(),
        documents={
            "doc_ok": ("routed", True),
            "doc_stale": ("received", True),
            "doc_unpublished": ("routed", False),
        },
    )
    assert verdict.violations == {
        "status API disagrees with the outcome": ["doc_stale"],
        "accepted, but ingest's row says unpublished": ["doc_unpublished"],
    }
