"""Claims, the decision form's outcomes and lost decisions, on real PostgreSQL and Kafka:
exactly one holder, looking claims nothing, heartbeats, stale tabs, sign-in in between,
spam and other queues kept out of training, an admin releasing and assigning."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import RECEIVED_AT, classified, review_sign_in, routed_item, sql_rows
from tests.integration.test_review_ui import PASSWORD, _login, _setup
from tests.integration.test_review_workflow import LABELS, _open_items, _scalar, _workflow
from tests.stack import Stack
from triage_cli.training_data import review_decisions
from triage_review_ui.app import create_app
from triage_review_ui.settings import Settings
from triage_runtime.blobstore import LocalBlobStore
from triage_runtime.db.engine import make_async_engine
from triage_runtime.outcomes.review import ClaimConflictError, DecisionKind, WorkflowError
from triage_runtime.outcomes.store import OutcomeStore
from triage_runtime.routing import ReviewReason, RouteTo, RoutingPolicy, SendToReview, decide

REVIEWERS = [f"reviewer{n}" for n in range(10)]


def test_ten_reviewers_claiming_at_once_leave_exactly_one_holder(clean_db: str) -> None:
    async def scenario() -> list[list[str]]:
        ids = await _open_items(clean_db, 5)
        flows = [_workflow(clean_db) for _ in REVIEWERS]
        winners = []
        for item_id in ids:
            results = await asyncio.gather(
                *(
                    flow.claim(item_id, reviewer=name)
                    for (flow, _), name in zip(flows, REVIEWERS, strict=True)
                ),
                return_exceptions=True,
            )
            for result in results:
                assert not isinstance(result, Exception) or isinstance(result, ClaimConflictError)
            winners.append([r.reviewer for r in results if not isinstance(r, BaseException)])
        for _, engine in flows:
            await engine.dispose()
        return winners

    winners = asyncio.run(scenario())
    assert all(len(w) == 1 for w in winners), winners
    held = sql_rows(clean_db, "SELECT claimed_by FROM review_item ORDER BY id")
    assert [h[0] for h in held] == [w[0] for w in winners]
    assert _scalar(clean_db, "SELECT count(*) FROM audit_log WHERE action = 'claim'") == 5


def test_ten_reviewers_deciding_an_unclaimed_item_at_once_decide_it_once(clean_db: str) -> None:
    async def scenario() -> int:
        [item] = await _open_items(clean_db, 1)
        flows = [_workflow(clean_db) for _ in REVIEWERS]
        results = await asyncio.gather(
            *(
                flow.decide(item, reviewer=name, label=LABELS[n % len(LABELS)])
                for n, ((flow, _), name) in enumerate(zip(flows, REVIEWERS, strict=True))
            ),
            return_exceptions=True,
        )
        for _, engine in flows:
            await engine.dispose()
        assert all(r is None or isinstance(r, ClaimConflictError) for r in results), results
        return sum(1 for r in results if r is None)

    assert asyncio.run(scenario()) == 1
    [(by, label)] = sql_rows(clean_db, "SELECT decided_by, decided_label FROM review_item")
    assert sql_rows(clean_db, "SELECT actor, detail->>'label' FROM audit_log") == [(by, label)]
    assert _scalar(clean_db, "SELECT count(*) FROM outbox WHERE schema = 'ReviewDecision'") == 1


def test_renewing_extends_ones_own_claim_silently_and_never_takes_anothers(
    clean_db: str,
) -> None:
    async def scenario() -> None:
        [item] = await _open_items(clean_db, 1)
        # Leases of seconds (a loaded machine's round trips must fit well inside one).
        flow, engine = _workflow(clean_db, lease=2.5)
        assert await flow.renew(item, reviewer="alice") is None, "renewing is not claiming"
        await flow.claim(item, reviewer="alice")
        for _ in range(4):  # 6 s in all, past two leases: the heartbeat keeps it
            await asyncio.sleep(1.5)
            assert await flow.renew(item, reviewer="alice") is not None
        with pytest.raises(ClaimConflictError, match="claimed by alice"):
            await flow.claim(item, reviewer="bob")
        await asyncio.sleep(3.5)  # the page was hidden: the claim lapsed, nobody took it
        assert await flow.renew(item, reviewer="alice") is not None
        await asyncio.sleep(3.5)
        await flow.claim(item, reviewer="bob")  # now bob takes it
        assert await flow.renew(item, reviewer="alice") is None
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(clean_db, "SELECT actor, action FROM audit_log ORDER BY id") == [
        ("alice", "claim"),
        ("bob", "claim"),
    ]


def test_deciding_after_a_lapse_works_unless_someone_took_the_item(clean_db: str) -> None:
    async def scenario() -> None:
        first, second = await _open_items(clean_db, 2)
        flow, engine = _workflow(clean_db, lease=1.5)
        await flow.claim(first, reviewer="alice")
        await flow.claim(second, reviewer="alice")
        await asyncio.sleep(2.5)  # both claims lapse
        await flow.decide(first, reviewer="alice", label="legal")  # nobody took it
        await flow.claim(second, reviewer="bob")
        with pytest.raises(ClaimConflictError, match="claimed by bob"):
            await flow.decide(second, reviewer="alice", label="legal")
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(
        clean_db, "SELECT status, claimed_by, decided_label FROM review_item ORDER BY id"
    ) == [
        ("decided", "alice", "legal"),
        ("claimed", "bob", None),
    ]


def test_spam_and_other_queues_are_stored_routed_or_not_and_kept_out_of_training(
    clean_db: str, tmp_path: Path
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    texts = [f"Document {n}: the supplier contract needs a signature." for n in range(4)]

    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        store = OutcomeStore(engine)
        for body in texts:
            event = classified(sha256=blobs.put(body.encode()), confidence=0.5, threshold=0.9)
            await store.open_review(
                event, SendToReview(ReviewReason.LOW_CONFIDENCE, 2, RECEIVED_AT)
            )
        flow, flow_engine = _workflow(clean_db, other_queues=("fraud",))
        await flow.decide(1, reviewer="alice", label="legal")
        await flow.decide(2, reviewer="alice", label="fraud")
        await flow.discard(3, reviewer="alice", kind=DecisionKind.SPAM)
        await flow.discard(4, reviewer="alice", kind=DecisionKind.NOT_DOCUMENT, note="a logo")
        with pytest.raises(WorkflowError, match="does not discard"):
            await flow.discard(1, reviewer="alice", kind=DecisionKind.LABEL)
        await flow_engine.dispose()
        await engine.dispose()

    asyncio.run(scenario())
    assert sql_rows(
        clean_db,
        "SELECT i.decided_label, i.decision_kind, o.kind, o.queue FROM review_item i"
        " JOIN document_outcome o USING (document_id) ORDER BY i.id",
    ) == [
        ("legal", "label", "routed", "legal"),
        ("fraud", "queue", "routed", "fraud"),
        (None, "spam", "discarded", None),
        (None, "not_document", "discarded", None),
    ]
    routed = sql_rows(
        clean_db, "SELECT topic FROM outbox WHERE schema = 'DocumentRouted' ORDER BY id"
    )
    assert routed == [("test.routed.legal",), ("test.routed.fraud",)]
    [example] = review_decisions(clean_db, lambda: blobs)
    assert (example.label, example.text) == ("legal", texts[0])


def test_marking_a_quality_sample_spam_withdraws_its_routing(clean_db: str) -> None:
    async def scenario() -> None:
        engine = make_async_engine(clean_db)
        event = classified(sha256="9" * 64, label="billing", confidence=0.97)
        decision = decide(event, RoutingPolicy(quality_sample=1.0))
        assert isinstance(decision, RouteTo) and decision.quality_sample is not None
        await OutcomeStore(engine).apply_batch([(event, decision, routed_item(event, decision))])
        flow, flow_engine = _workflow(clean_db)
        [[item]] = sql_rows(clean_db, "SELECT id FROM review_item")
        await flow.discard(int(str(item)), reviewer="alice", kind=DecisionKind.SPAM)
        await flow_engine.dispose()
        await engine.dispose()

    asyncio.run(scenario())
    assert _scalar(clean_db, "SELECT withdrawn_at IS NOT NULL FROM routing_decision") is True
    assert _scalar(clean_db, "SELECT kind FROM document_outcome") == "discarded"
    assert sql_rows(clean_db, "SELECT schema, topic FROM outbox ORDER BY id")[-1] == (
        "DocumentWithdrawn",
        "test.routed.billing",
    )


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    _setup(clean_db, tmp_path / "blobs")
    return Settings(
        database_url=clean_db,
        kafka_bootstrap=isolated.kafka_bootstrap,
        topic_prefix=isolated.topic_prefix,
        blob_dir=tmp_path / "blobs",
        other_queues=["fraud"],
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _low_item(client: TestClient) -> int:
    items = client.get("/api/v1/review-items").json()["items"]
    return int(next(i for i in items if i["reason"] == "low_confidence")["id"])


def test_looking_claims_nothing_and_writes_no_audit_rows(client: TestClient, clean_db: str) -> None:
    _login(client, "alice")
    item = _low_item(client)
    before = _scalar(clean_db, "SELECT count(*) FROM audit_log")
    for _ in range(18):
        page = client.get(f"/items/{item}")
        assert page.status_code == 200 and "Not claimed" in page.text
    assert _scalar(clean_db, "SELECT count(*) FROM audit_log") == before
    assert sql_rows(clean_db, f"SELECT status, claimed_by FROM review_item WHERE id = {item}") == [
        ("pending", None)
    ]


def test_the_form_has_every_outcome_and_no_preselected_answer_by_default(
    client: TestClient, settings: Settings
) -> None:
    _login(client, "alice")
    item = _low_item(client)
    page = client.get(f"/items/{item}").text
    values = re.findall(r'name="label" value="([^"]+)"', page)
    assert values == [*settings.labels, "fraud", "discard:not_document", "discard:spam"]
    assert "checked" not in page.split('id="decide"')[1].split("</form>")[0]
    with TestClient(create_app(settings.model_copy(update={"preselect": True}))) as other:
        _login(other, "bob")
        form = other.get(f"/items/{item}").text.split('id="decide"')[1]
        assert re.search(r'value="billing" required\s+checked', form), "the model's label"


def test_spam_through_the_form_and_a_stale_tab_gets_a_clear_page(client: TestClient) -> None:
    csrf = _login(client, "alice")
    item = _low_item(client)
    spam = client.post(
        f"/items/{item}/decide",
        data={"label": "discard:spam", "csrf": csrf},
        follow_redirects=False,
    )
    assert spam.status_code == 303
    assert "Decided: <strong>spam</strong> by alice" in client.get(f"/items/{item}").text
    assert "100%" in client.get("/dashboard").text, "spam overrides the model's billing"
    stale = client.post(f"/items/{item}/decide", data={"label": "legal", "csrf": csrf})
    assert stale.status_code == 409 and stale.headers["content-type"].startswith("text/html")
    assert "already decided by\n    <strong>alice</strong> as <strong>spam</strong>" in stale.text
    assert 'id="conflict-next"' in stale.text, "a way on to the next item"
    still_open = client.get("/api/v1/review-items").json()["items"][0]["id"]
    unknown = client.post(f"/items/{still_open}/decide", data={"label": "x", "csrf": csrf})
    assert unknown.status_code == 422 and "is not a queue" in unknown.text


def test_a_decision_without_a_session_comes_back_to_the_item_after_sign_in(
    client: TestClient,
) -> None:
    csrf = _login(client, "alice")
    item = _low_item(client)
    opened = client.get(f"/items/{item}/decide", follow_redirects=False)
    assert (opened.status_code, opened.headers["location"]) == (303, f"/items/{item}")
    client.cookies.clear()  # the session ended
    lost = client.post(
        f"/items/{item}/decide",
        data={"label": "legal", "note": "NDA", "csrf": csrf},
        follow_redirects=False,
    )
    target = f"/login?next=/items/{item}%3Frestore%3D1"
    assert (lost.status_code, lost.headers["location"]) == (303, target)
    login = client.get(target)
    assert 'id="draft-kept"' in login.text and 'value="/items/' in login.text
    signed = review_sign_in(
        client, "alice", PASSWORD, follow=False, next=f"/items/{item}?restore=1"
    )
    assert signed.headers["location"] == f"/items/{item}?restore=1"
    assert 'id="draft-notice"' in client.get(signed.headers["location"]).text
    heartbeat = client.post(
        f"/items/{item}/renew", headers={"Accept": "application/json"}, data={"csrf": "x"}
    )
    assert heartbeat.status_code == 403, "the heartbeat checks the CSRF token"


def test_heartbeat_claim_and_an_admin_releasing_and_assigning(
    settings: Settings, clean_db: str
) -> None:
    json = {"Accept": "application/json"}
    with (
        TestClient(create_app(settings)) as alice,
        TestClient(create_app(settings)) as root,
    ):
        alice_csrf = _login(alice, "alice")
        root_csrf = _login(root, "root")
        item = _low_item(alice)
        beat = alice.post(f"/items/{item}/renew", headers=json, data={"csrf": alice_csrf})
        assert beat.json()["held"] is False, "a heartbeat does not claim"
        claimed = alice.post(f"/items/{item}/claim", headers=json, data={"csrf": alice_csrf})
        assert claimed.json()["held"] is True and claimed.json()["holder"] == "alice"
        beat = alice.post(f"/items/{item}/renew", headers=json, data={"csrf": alice_csrf})
        assert beat.json()["held"] is True
        refused = alice.post(f"/items/{item}/assign", data={"to": "bob", "csrf": alice_csrf})
        assert refused.status_code == 403
        page = root.get(f"/items/{item}").text
        assert "Release alice's claim" in page and '<option value="bob">' in page
        root.post(f"/items/{item}/release-claim", data={"csrf": root_csrf})
        beat = alice.post(f"/items/{item}/renew", headers=json, data={"csrf": alice_csrf})
        assert beat.json() == {"held": False, "holder": None, "state": "free"}
        root.post(f"/items/{item}/assign", data={"to": "bob", "csrf": root_csrf})
        beat = alice.post(f"/items/{item}/renew", headers=json, data={"csrf": alice_csrf})
        assert beat.json()["holder"] == "bob"
        taken = alice.post(f"/items/{item}/claim", headers=json, data={"csrf": alice_csrf})
        assert taken.status_code == 409 and taken.json()["holder"] == "bob"
        nobody = root.post(f"/items/{item}/assign", data={"to": "mallory", "csrf": root_csrf})
        assert nobody.status_code == 422
        skipped = alice.post(
            f"/items/{item}/skip", data={"csrf": alice_csrf}, follow_redirects=False
        )
        assert skipped.status_code == 303
    assert sql_rows(
        clean_db,
        "SELECT actor, action, detail->>'holder', detail->>'to' FROM audit_log"
        " WHERE action IN ('claim', 'release_claim', 'assign', 'skip') ORDER BY id",
    ) == [
        ("alice", "claim", None, None),
        ("root", "release_claim", "alice", None),
        ("root", "assign", None, "bob"),
        ("alice", "skip", None, None),
    ]
    assert _scalar(clean_db, f"SELECT claimed_by FROM review_item WHERE id = {item}") == "bob"
