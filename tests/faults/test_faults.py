"""Faults under a stream of documents: every accepted document ends routed or in review once.

Each test streams a few thousand documents, breaks one thing at seeded random moments
(``TRIAGE_FAULT_SEED`` replays a run), repairs it, waits until the pipeline drains, and
audits PostgreSQL and the routed topics. Reports go to test-artifacts/reliability/.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import defaultdict

import pytest

from tests.faults.conftest import MakeRun
from tests.faults.harness import (
    FaultRun,
    FileUpload,
    InFlight,
    assert_invariants,
    document_count,
    publish_events,
    read_topics,
    run_concurrently,
)
from tests.helpers import classified, sql_rows
from triage_contracts import topics

KILLS_PER_RUN = 2
POSTGRES_DOWN_SECONDS = 30.0
RESCORED_DOCUMENTS = 300
BACKLOG_PER_SECOND = 250.0
POSTGRES_CRASH_DOWN_SECONDS = 5.0
RESERVATION_SECONDS = 3


async def _kill_and_restart(run: FaultRun, target: str) -> None:
    """Kill the target at seeded random moments, each once it is at work, and restart it."""
    shares = sorted(run.rng.uniform(0.1, 0.7) for _ in range(KILLS_PER_RUN))
    for share in shares:
        await run.busy(target)
        fraction = await run.pause_at(share)
        run.services.kill(target)
        run.faults.note(run.ledger, "kill -9", service=target, planned_fraction=fraction)
        run.services.start(target)
        await run.services.wait_ready(target)
        run.faults.note(run.ledger, "restarted and ready", service=target)


@pytest.mark.parametrize("target", ["ingest", "classifier", "router"])
async def test_kill_9_mid_stream(make_run: MakeRun, target: str) -> None:
    """``kill -9`` of a service, twice, while documents flow; it is restarted each time."""
    run = await make_run(f"kill-{target}")
    if target == "ingest":
        await run.start("ingest", "classifier", "router")
        api_key = run.services.cli("apikey", "create", "faults")
        stream = run.stream_uploads(api_key)
    else:
        await run.start("classifier", "router")
        # Faster than the pipeline: a backlog builds, so each kill lands on work in flight.
        stream = run.stream_direct(per_second=BACKLOG_PER_SECOND)
    await run_concurrently(stream, _kill_and_restart(run, target))
    assert_invariants(await run.finish(f"kill -9 {target} (x{KILLS_PER_RUN})"))


async def test_broker_restart(make_run: MakeRun) -> None:
    """The Kafka broker stops (SIGTERM) and starts again while documents flow."""
    run = await make_run("broker-restart")
    await run.start("classifier", "router")

    async def restart_broker() -> None:
        fraction = await run.pause_at_random_share(0.2, 0.7)
        run.faults.note(run.ledger, "stop kafka", planned_fraction=fraction)
        await run.control.stop("kafka")
        run.faults.note(run.ledger, "kafka stopped")
        await run.control.start("kafka")
        run.faults.note(run.ledger, "kafka started")

    await run_concurrently(run.stream_direct(), restart_broker())
    assert_invariants(await run.finish("broker restart"))


async def test_broker_crash(make_run: MakeRun) -> None:
    """The Kafka broker is killed with kill -9 while documents flow, then started again.

    Unlike the clean stop above, the broker gets no controlled shutdown: producers and
    consumers lose their connections with requests in flight and unanswered, and the next
    start recovers the log segments it left open.
    """
    run = await make_run("broker-crash", documents=document_count() // 2)
    await run.start("classifier", "router")

    async def crash_broker() -> None:
        fraction = await run.pause_at_random_share(0.2, 0.6)
        run.faults.note(run.ledger, "crash kafka", planned_fraction=fraction)
        await run.control.crash("kafka")
        run.faults.note(run.ledger, "kafka crashed")
        await run.control.start("kafka")
        run.faults.note(run.ledger, "kafka started")

    await run_concurrently(run.stream_direct(), crash_broker())
    assert_invariants(await run.finish("broker kill -9"))


async def test_postgres_crash(make_run: MakeRun) -> None:
    """PostgreSQL crashes (``pg_ctl stop -m immediate``) while documents flow, and restarts.

    Unlike the clean stop, transactions in flight die with the server, a commit may be sent
    and never answered, and the restart replays the WAL (crash recovery).
    """
    run = await make_run("postgres-crash", documents=document_count() // 2)
    await run.start("classifier", "router")

    async def crash_postgres() -> None:
        fraction = await run.pause_at_random_share(0.2, 0.6)
        run.faults.note(run.ledger, "crash postgres", planned_fraction=fraction)
        await run.control.crash("postgres")
        await asyncio.sleep(POSTGRES_CRASH_DOWN_SECONDS)
        run.faults.note(run.ledger, "start postgres (crash recovery)")
        await run.control.start("postgres")
        run.faults.note(run.ledger, "postgres started")

    await run_concurrently(run.stream_direct(), crash_postgres())
    assert_invariants(await run.finish("PostgreSQL crash (-m immediate)"))


async def test_ingest_crash_mid_upload_retried_with_idempotency_keys(make_run: MakeRun) -> None:
    """``kill -9`` of ingest, twice, with uploads in flight; the clients retry with their key.

    Four clients upload as ``triage upload`` does (its own code: one Idempotency-Key per
    file kept across the retries of failed connections, 429 and 503). Every file must end
    with one 202 and one document, every 202 id at exactly one outcome, one DocumentReceived
    event per document and none for anything else, and every key answered (none left
    reserved by a request that died).
    """
    run = await make_run("ingest-crash", documents=document_count() // 8)
    # The reservation of a key whose request died with ingest runs out after this; with the
    # default (300 s) a retry of a request cut in its last step would get 409 for 5 minutes.
    run.services.env["TRIAGE_INGEST_IDEMPOTENCY_RESERVATION_SECONDS"] = str(RESERVATION_SECONDS)
    await run.start("ingest", "classifier", "router")
    api_key = run.services.cli("apikey", "create", "faults")
    uploads: list[FileUpload] = []
    in_flight = InFlight()
    crashes: list[float] = []

    async def crash_ingest() -> None:
        shares = sorted(run.rng.uniform(0.15, 0.7) for _ in range(KILLS_PER_RUN))
        for share in shares:
            await run.busy("ingest")
            fraction = await run.pause_at(share)
            flying = await in_flight.busy()
            crashes.append(time.time())
            run.services.kill("ingest")
            run.faults.note(
                run.ledger,
                "kill -9",
                service="ingest",
                planned_fraction=fraction,
                uploads_in_flight=flying,
            )
            run.services.start("ingest")
            await run.services.wait_ready("ingest")
            run.faults.note(run.ledger, "restarted and ready", service="ingest")

    await run_concurrently(run.stream_retrying_uploads(api_key, uploads, in_flight), crash_ingest())
    report = await run.finish(f"kill -9 ingest mid-upload (x{KILLS_PER_RUN}), keyed retries")
    assert_invariants(report)

    assert len(uploads) == len(run.docs)
    assert [u.error for u in uploads if u.error] == []
    assert all(len(u.document_ids) == 1 for u in uploads), "a file became 0 or 2+ documents"
    ids = [u.document_ids[0] for u in uploads]
    assert len(set(ids)) == len(ids), "two files were answered with one document"

    documents = dict(sql_rows(run.database_url, "SELECT document_id, received_at FROM document"))
    assert set(documents) == set(ids), "ingest holds a document no 202 answered"
    keys = sql_rows(
        run.database_url, "SELECT response, owner_token, reserved_until FROM idempotency_record"
    )
    assert len(keys) == len(uploads), "not one Idempotency-Key per file"
    assert [k for k in keys if k[0] is None or k[1] is not None or k[2] is not None] == []
    answered = sorted(d["document_id"] for response, _, _ in keys for d in response["documents"])
    assert answered == sorted(ids)

    events: dict[str, set[str]] = defaultdict(set)
    for record in await read_topics(run.bootstrap, [run.topic(topics.DOCUMENTS)]):
        events[record["key"]].add(record["value"]["event_id"])
    assert set(events) == set(ids), "a DocumentReceived event for a document no 202 answered"
    assert [d for d, e in events.items() if len(e) != 1] == [], "a document received twice"

    # The requests each kill cut off, retried; of those, the ones the dead ingest had already
    # accepted (its row is older than the kill): the retry was answered with that document.
    cut = [
        u for u in uploads if u.attempts > 1 and any(u.started < k < u.finished for k in crashes)
    ]
    accepted_before = [
        u
        for u in cut
        if any(
            u.started < k < u.finished and documents[u.document_ids[0]].timestamp() < k
            for k in crashes
        )
    ]
    assert cut, "no upload was in flight when ingest was killed"
    report.notes.update(
        uploads_cut_by_a_kill=len(cut),
        of_which_accepted_before_the_kill=len(accepted_before),
        file_attempts=sum(u.attempts for u in uploads),
    )
    report.write()
    print(f"  cut by a kill: {len(cut)}, already accepted by then: {len(accepted_before)}")


async def test_postgres_stopped_for_30_seconds(make_run: MakeRun) -> None:
    """PostgreSQL is stopped for 30 seconds while documents flow, then started again."""
    run = await make_run("postgres-stop")
    await run.start("classifier", "router")

    async def stop_postgres() -> None:
        fraction = await run.pause_at_random_share(0.1, 0.5)
        run.faults.note(run.ledger, "stop postgres", planned_fraction=fraction)
        await run.control.stop("postgres")
        await asyncio.sleep(POSTGRES_DOWN_SECONDS)
        run.faults.note(run.ledger, "start postgres")
        await run.control.start("postgres")
        run.faults.note(run.ledger, "postgres started")

    await run_concurrently(run.stream_direct(), stop_postgres())
    assert_invariants(await run.finish(f"PostgreSQL stopped {POSTGRES_DOWN_SECONDS:.0f} s"))


async def test_rebalance_scaling_classifier_to_two(make_run: MakeRun) -> None:
    """A second classifier joins the consumer group mid-stream: partitions move between them."""
    run = await make_run("classifier-rebalance")
    await run.start("classifier", "router")

    async def scale_up() -> None:
        fraction = await run.pause_at_random_share(0.15, 0.6)
        run.faults.note(run.ledger, "scale classifier to 2", planned_fraction=fraction)
        run.services.start("classifier", name="classifier-2")
        await run.services.wait_ready("classifier-2")
        run.faults.note(run.ledger, "second classifier ready")

    await run_concurrently(run.stream_direct(), scale_up())
    report = await run.finish("rebalance: classifier 1 -> 2")
    assert_invariants(report)
    # The rebalance really happened: the newcomer took partitions and classified documents.
    assert "document classified" in run.services.running["classifier-2"].log.read_text()


async def test_redelivery_scored_differently_keeps_the_first_outcome(make_run: MakeRun) -> None:
    """A document classified twice, the second time with another answer, keeps one outcome.

    At-least-once delivery means a classifier killed before its commit scores the batch
    again, and by then another model may serve it (an alias moved, a canary's partitions, the
    rules in degraded mode): the second score can disagree with the first. The router must
    keep the outcome it already took, never add a second one.
    """
    run = await make_run("rescored-differently", documents=0)
    await run.start("router")
    pairs = [
        # (first answer, second answer) for a third of the documents each
        (("billing", 0.97), ("billing", 0.40)),  # routed, then low confidence
        (("legal", 0.40), ("legal", 0.97)),  # low confidence, then routed
        (("billing", 0.97), ("legal", 0.97)),  # routed to one queue, then another
    ]
    first, second = [], []
    for i in range(RESCORED_DOCUMENTS):
        (label1, conf1), (label2, conf2) = pairs[i % len(pairs)]
        sha = hashlib.sha256(f"{run.name} {i}".encode()).hexdigest()
        first.append(classified(label=label1, confidence=conf1, threshold=0.9, sha256=sha))
        second.append(
            classified(
                label=label2,
                confidence=conf2,
                threshold=0.9,
                sha256=sha,
                model_version="tfidf-lr-next",
            )
        )
    for event in first:
        run.ledger.accepted[event.document_id] = str(event.event_id)
    run.ledger.total = len(first)
    run.ledger.started = time.monotonic()
    run.faults.note(run.ledger, "rescore", documents=len(second))
    await publish_events(run.bootstrap, run.topic(topics.CLASSIFIED), [*first, *second])
    run.ledger.finished = time.monotonic()
    report = await run.finish("classified twice, the second score disagreeing")
    assert_invariants(report)
    outcomes = await run.outcomes()
    expected = {
        e.document_id: e.prediction.label
        if e.prediction and e.prediction.confidence >= 0.9
        else "review"
        for e in first
    }
    assert outcomes == expected, "the second score changed some outcomes"
