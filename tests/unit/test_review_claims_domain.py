"""What the item page decides without I/O: whose a claim is, what a form's choice means,
where sign-in returns to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from triage_contracts import utcnow
from triage_review_ui.domain import (
    ClaimState,
    chosen,
    claim_state,
    decision_choices,
    decision_text,
    login_next,
)
from triage_review_ui.settings import Settings
from triage_runtime.db.models import ReviewItem
from triage_runtime.outcomes.review import DecisionKind

NOW = utcnow()


@pytest.mark.parametrize(
    ("status", "holder", "until", "state"),
    [
        ("pending", None, None, ClaimState.FREE),
        ("claimed", "alice", NOW + timedelta(minutes=5), ClaimState.MINE),
        ("claimed", "alice", NOW - timedelta(minutes=5), ClaimState.MINE),  # lapsed, not taken
        ("claimed", "bob", NOW + timedelta(minutes=5), ClaimState.OTHER),
        ("claimed", "bob", NOW - timedelta(minutes=5), ClaimState.FREE),
        ("decided", "bob", None, ClaimState.DECIDED),
        ("closed", None, None, ClaimState.CLOSED),
    ],
)
def test_whose_an_item_is_for_alice(
    status: str, holder: str | None, until: object, state: ClaimState
) -> None:
    item = ReviewItem(status=status, claimed_by=holder, claimed_until=until)
    assert claim_state(item, "alice", NOW) is state


def test_the_forms_choices_and_what_they_mean() -> None:
    choices = decision_choices(["billing", "legal"], ["fraud", "legal"])
    assert [value for value, _ in choices] == [
        "billing",
        "legal",
        "fraud",
        "discard:not_document",
        "discard:spam",
    ]
    assert chosen("discard:spam") is DecisionKind.SPAM
    assert chosen("discard:label") == "discard:label", "only discards are discards"
    assert chosen("legal") == "legal"
    spam = ReviewItem(decided_label=None, decision_kind="spam")
    assert decision_text(spam) == "spam"
    assert decision_text(ReviewItem(decided_label="legal", decision_kind="label")) == "legal"


def test_sign_in_returns_to_the_item_a_form_was_sent_from() -> None:
    assert login_next("POST", "/items/42/decide") == "/items/42%3Frestore%3D1"
    assert login_next("POST", "/items/42/claim") == "/items/42%3Frestore%3D1"
    assert login_next("POST", "/logout") == "/"
    assert login_next("GET", "/items/42") == "/items/42"


def test_queue_names_must_make_topics() -> None:
    assert Settings(other_queues=["fraud"]).other_queues == ["fraud"]
    with pytest.raises(ValueError, match="queue name"):
        Settings(other_queues=["Fraud Team"])
    assert Settings(lease_minutes=0.05).heartbeat_seconds == pytest.approx(1.0)
    assert Settings().heartbeat_seconds == 60.0
