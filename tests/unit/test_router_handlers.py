"""The router's RoutingHandler without Kafka or PostgreSQL: batches handed to it and through
its subscriber on FastStream's in-memory TestKafkaBroker, with the outcome store and the
policy registry in memory."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from typing import cast

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from sqlalchemy.exc import DataError, OperationalError

from tests.helpers import classified
from tests.unit.inmemory import MemoryOutbox, Topics, consumer_record, in_memory_broker
from triage_contracts import (
    DeadLetterV1,
    DecidedBy,
    DocumentClassifiedV1,
    DocumentRoutedV1,
    ErrorClass,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Producer,
    topics,
)
from triage_router.app import subscribe
from triage_router.metrics import SERVICE
from triage_router.routing_handler import RoutingHandler
from triage_router.settings import Settings
from triage_runtime.kafka import DeadLetters, encode_event
from triage_runtime.lag import Holdings
from triage_runtime.outcomes.store import Item, Routed, StoredRoute
from triage_runtime.routing import (
    DEFAULT_POLICY,
    PRIORITY_HIGH,
    ReviewReason,
    RouteTo,
    RoutingPolicy,
    SendToReview,
)

PRODUCER = Producer(service=SERVICE, version="test")
QUEUES = ("billing", "technical", "legal")


@dataclass
class Route:
    """A stored routing decision."""

    event_id: uuid.UUID
    queue: str


@dataclass
class MemoryOutcomes:
    """Each document's first outcome, in dicts, with routings' events in ``outbox``;
    batches land whole or not at all.

    ``refused`` documents make a batch fail as PostgreSQL refusing bad data would; ``down``
    makes every call fail as an unreachable database.
    """

    outbox: MemoryOutbox
    kinds: dict[str, str] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    reviews: dict[str, SendToReview] = field(default_factory=dict)
    """Review items by document: a quality sample's too (its reason says which)."""
    refused: set[str] = field(default_factory=set)
    down: bool = False
    transactions: int = 0

    def _check(self, document_ids: Collection[str]) -> None:
        if self.down:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("127.0.0.1:1"))
        if self.refused & set(document_ids):
            raise DataError("INSERT INTO review_item ...", {}, ValueError("bad data"))

    async def apply_batch(self, items: Sequence[Item]) -> list[StoredRoute | bool]:
        """Store each first outcome, in order, in one transaction."""
        self._check([event.document_id for event, _, _ in items])
        self.transactions += 1
        results: list[StoredRoute | bool] = []
        for event, decision, routed in items:
            doc = event.document_id
            claimed = self.kinds.get(doc, "dead_letter") == "dead_letter"
            if isinstance(decision, SendToReview) or routed is None:
                if claimed:
                    self.kinds[doc] = "review"
                    self.reviews[doc] = cast(SendToReview, decision)
                results.append(claimed)
            elif claimed:
                self.kinds[doc] = "routed"
                self.routes[doc] = Route(routed[1].event_id, decision.queue)
                self.outbox.add([routed])
                if decision.quality_sample is not None:
                    self.reviews[doc] = decision.quality_sample
                results.append(
                    StoredRoute(
                        routed[1].event_id,
                        decision.queue,
                        created=True,
                        sampled=decision.quality_sample is not None,
                    )
                )
            elif (route := self.routes.get(doc)) is not None:
                results.append(StoredRoute(route.event_id, route.queue, created=False))
            else:
                results.append(
                    StoredRoute(routed[1].event_id, decision.queue, created=False, in_review=True)
                )
        return results

    async def record_route(
        self, event: DocumentClassifiedV1, decision: RouteTo, *, routed: Routed
    ) -> StoredRoute:
        """One routing in a transaction of its own."""
        [result] = await self.apply_batch([(event, decision, routed)])
        assert isinstance(result, StoredRoute)
        return result

    async def open_review(self, event: DocumentClassifiedV1, decision: SendToReview) -> bool:
        """One review item in a transaction of its own."""
        [result] = await self.apply_batch([(event, decision, None)])
        return bool(result)

    async def record_dead_letters(self, letters: Sequence[DeadLetterV1]) -> list[str]:
        """Dead letter as the outcome of named documents that have none."""
        self._check([])
        recorded = []
        for letter in letters:
            named = letter.named_document_id
            if named is not None and named not in self.kinds:
                self.kinds[named] = "dead_letter"
                recorded.append(named)
        return recorded


@dataclass
class MemoryPolicies:
    """Stored routing policies by version."""

    stored: dict[int, RoutingPolicy] = field(default_factory=dict)

    async def named(self, versions: Collection[int | None]) -> dict[int | None, RoutingPolicy]:
        """The policies named that are stored; None is the default."""
        found: dict[int | None, RoutingPolicy] = {
            v: self.stored[v] for v in versions if v is not None and v in self.stored
        }
        if None in versions:
            found[None] = DEFAULT_POLICY
        return found


@dataclass
class Rig:
    """A RoutingHandler on in-memory dependencies, and what it published."""

    handler: RoutingHandler
    outcomes: MemoryOutcomes
    policies: MemoryPolicies
    out: Topics
    broker: KafkaBroker
    settings: Settings

    def routed(self, queue: str) -> list[DocumentRoutedV1]:
        """The routings published to ``queue``'s topic."""
        return self.out.events(self.settings.topic(topics.routed_topic(queue)), DocumentRoutedV1)

    def all_routed(self) -> list[DocumentRoutedV1]:
        """Every routing published, whatever its queue."""
        return [event for queue in QUEUES for event in self.routed(queue)]

    def letters(self) -> list[DeadLetterV1]:
        """The dead letters published."""
        return self.out.events(self.settings.topic(topics.DEADLETTER), DeadLetterV1)

    def record(self, event: DocumentClassifiedV1, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
        """``event`` as read from the classified topic."""
        return consumer_record(
            self.settings.topic(topics.CLASSIFIED),
            encode_event(event),
            key=event.document_id.encode(),
            offset=offset,
        )


def _rig(*, with_subscriber: bool = False) -> Rig:
    settings = Settings(topic_prefix="unit.", storage_retry_seconds=0)
    broker = in_memory_broker()
    outcomes, policies = MemoryOutcomes(MemoryOutbox(broker)), MemoryPolicies()
    handler = RoutingHandler(
        settings=settings,
        outcomes=outcomes,
        outbox=outcomes.outbox,
        policies=policies,
        dead_letters=DeadLetters(
            broker, topic=settings.topic(topics.DEADLETTER), service=SERVICE, producer=PRODUCER
        ),
        producer=PRODUCER,
    )
    out = Topics(
        broker,
        [settings.topic(topics.DEADLETTER)]
        + [settings.topic(topics.routed_topic(queue)) for queue in QUEUES],
    )
    if with_subscriber:
        subscribe(broker, settings, handler, holdings=Holdings())
    return Rig(handler, outcomes, policies, out, broker, settings)


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    """A RoutingHandler on an in-memory broker, without its subscriber."""
    rig = _rig()
    async with TestKafkaBroker(rig.broker):
        yield rig


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _consumed(outcome: str) -> float:
    return _value(
        "triage_events_consumed_total", service=SERVICE, topic=topics.CLASSIFIED, outcome=outcome
    )


async def test_a_batch_routes_the_confident_and_sends_the_rest_to_review(rig: Rig) -> None:
    confident = classified(label="legal", confidence=0.97, sha256="01" * 32)
    unsure = classified(label="billing", confidence=0.5, sha256="02" * 32)
    unreadable = classified(status=ExtractionStatus.ENCRYPTED, sha256="03" * 32)
    routed_before = _value("triage_router_decisions_total", outcome="routed", reason="")
    ok_before = _consumed("ok")

    await rig.handler.handle([rig.record(e) for e in (confident, unsure, unreadable)])

    [routed] = rig.routed("legal")
    assert routed.document_id == confident.document_id
    assert routed.decided_by is DecidedBy.MODEL and routed.confidence == 0.97
    assert routed.trace_id == confident.trace_id and routed.model == confident.model
    stored = rig.outcomes.routes[confident.document_id]
    assert stored.event_id == routed.event_id
    assert rig.outcomes.outbox.published == [routed.event_id] and not rig.outcomes.outbox.pending
    assert rig.outcomes.reviews[unsure.document_id].reason is ReviewReason.LOW_CONFIDENCE
    assert rig.outcomes.reviews[unreadable.document_id].reason is ReviewReason.ENCRYPTED
    assert rig.outcomes.reviews[unreadable.document_id].priority == PRIORITY_HIGH
    assert rig.outcomes.transactions == 1  # the batch in one transaction
    assert rig.all_routed() == [routed] and rig.letters() == []
    assert _value("triage_router_decisions_total", outcome="routed", reason="") == (
        routed_before + 1
    )
    assert _consumed("ok") == ok_before + 3


async def test_a_routing_in_the_quality_sample_is_routed_and_reviewed_once(rig: Rig) -> None:
    rig.policies.stored[7] = RoutingPolicy(version=7, quality_sample=0.5)
    policy = rig.policies.stored[7]
    events = [
        classified(label="legal", confidence=0.97, sha256=f"{n:02x}" * 32).model_copy(
            update={"policy_version": 7}
        )
        for n in range(20)
    ]
    sampled = {e.document_id for e in events if policy.in_quality_sample(e.document_id)}
    assert 0 < len(sampled) < 20
    counted = _value("triage_router_decisions_total", outcome="routed", reason="quality_sample")

    await rig.handler.handle([rig.record(e) for e in events])
    await rig.handler.handle([rig.record(e) for e in events])  # redelivered

    assert sorted(r.document_id for r in rig.routed("legal")) == sorted(
        e.document_id for e in events
    )
    assert set(rig.outcomes.reviews) == sampled
    assert {r.reason for r in rig.outcomes.reviews.values()} == {ReviewReason.QUALITY_SAMPLE}
    assert _value(
        "triage_router_decisions_total", outcome="routed", reason="quality_sample"
    ) == counted + len(sampled)


async def test_a_redelivered_batch_changes_nothing(rig: Rig) -> None:
    batch = [
        rig.record(classified(label="billing", sha256="11" * 32)),
        rig.record(classified(label="billing", confidence=0.4, sha256="12" * 32)),
    ]
    await rig.handler.handle(batch)
    duplicates = _value("triage_router_duplicates_total")

    await rig.handler.handle(batch)

    assert len(rig.routed("billing")) == 1
    assert _value("triage_router_duplicates_total") == duplicates + 2


async def test_a_routing_stored_but_not_published_is_published_with_its_stored_id(
    rig: Rig,
) -> None:
    event = classified(label="technical", sha256="21" * 32)
    # A crash between the commit and the publish: the decision and its event are stored
    # (in the outbox), not published.
    first = rig.handler.routed(event, RouteTo("technical", DecidedBy.MODEL, 0.97))
    rig.outcomes.kinds[event.document_id] = "routed"
    rig.outcomes.routes[event.document_id] = Route(first[1].event_id, "technical")
    rig.outcomes.outbox.add([first])
    assert event.prediction is not None
    rescored = event.model_copy(
        update={"prediction": event.prediction.model_copy(update={"label": "legal"})}
    )

    await rig.handler.handle([rig.record(rescored)])

    [routed] = rig.routed("technical")  # the stored queue, not the new score's
    assert routed.event_id == first[1].event_id
    assert rig.routed("legal") == []
    assert rig.outcomes.outbox.pending == {}
    await rig.handler.handle([rig.record(rescored)])  # published once, whatever comes again
    assert len(rig.routed("technical")) == 1


async def test_a_document_in_review_keeps_its_first_outcome(rig: Rig) -> None:
    unsure = classified(label="legal", confidence=0.5, sha256="31" * 32)
    await rig.handler.handle([rig.record(unsure)])
    confident = classified(label="legal", confidence=0.99, sha256="31" * 32)
    duplicates = _value("triage_router_duplicates_total")

    await rig.handler.handle([rig.record(confident)])

    assert rig.all_routed() == []
    assert rig.outcomes.kinds[unsure.document_id] == "review"
    assert _value("triage_router_duplicates_total") == duplicates + 1


async def test_one_document_twice_in_a_batch_is_published_once(rig: Rig) -> None:
    event = classified(label="billing", sha256="41" * 32)
    duplicates = _value("triage_router_duplicates_total")

    await rig.handler.handle([rig.record(event, 1), rig.record(event, 2)])

    assert len(rig.routed("billing")) == 1
    assert _value("triage_router_duplicates_total") == duplicates + 1


async def test_undecodable_events_and_unknown_policies_are_dead_letters(rig: Rig) -> None:
    rig.policies.stored[2] = RoutingPolicy(version=2)
    known = classified(label="billing", sha256="51" * 32).model_copy(update={"policy_version": 2})
    unknown = classified(label="legal", sha256="52" * 32).model_copy(update={"policy_version": 9})
    garbage = consumer_record(rig.settings.topic(topics.CLASSIFIED), b"\x00not json", offset=3)

    await rig.handler.handle([garbage, rig.record(unknown, 4), rig.record(known, 5)])

    letters = rig.letters()
    assert [(d.error_class, d.source_offset) for d in letters] == [
        (ErrorClass.UNDECODABLE, 3),
        (ErrorClass.SCHEMA_INVALID, 4),
    ]
    assert "routing policy version 9" in letters[1].reason
    assert [e.document_id for e in rig.routed("billing")] == [known.document_id]
    assert unknown.document_id not in rig.outcomes.kinds


async def test_a_refused_document_is_a_dead_letter_and_the_rest_of_its_batch_lands(
    rig: Rig,
) -> None:
    good = classified(label="billing", sha256="61" * 32)
    bad = classified(label="legal", confidence=0.3, sha256="62" * 32)
    rig.outcomes.refused.add(bad.document_id)

    await rig.handler.handle([rig.record(good, 1), rig.record(bad, 2)])

    [letter] = rig.letters()
    assert letter.error_class is ErrorClass.STORAGE_ERROR
    assert letter.reason == "the database refused the effect: ValueError"
    assert (letter.document_id, letter.source_offset) == (bad.document_id, 2)
    assert [e.document_id for e in rig.routed("billing")] == [good.document_id]
    assert rig.outcomes.outbox.pending == {}


async def test_a_database_outage_leaves_the_batch_for_redelivery(rig: Rig) -> None:
    batch = [rig.record(classified(label="legal", sha256=f"7{n}" * 32)) for n in range(3)]
    rig.outcomes.down = True
    retried = _consumed("retried")

    with pytest.raises(OperationalError):
        await rig.handler.handle(batch)

    assert rig.all_routed() == [] and rig.letters() == []
    assert _consumed("retried") == retried + 3
    rig.outcomes.down = False
    await rig.handler.handle(batch)  # the redelivery
    assert len(rig.routed("legal")) == 3


async def test_rules_scores_route_as_decided_by_rules(rig: Rig) -> None:
    event = classified(label="billing", sha256="81" * 32).model_copy(
        update={"model": ModelRef(version="rules-1", role=ModelRole.RULES)}
    )
    await rig.handler.handle([rig.record(event)])
    [routed] = rig.routed("billing")
    assert routed.decided_by is DecidedBy.RULES


async def test_the_subscriber_routes_what_is_published_to_the_classified_topic() -> None:
    rig = _rig(with_subscriber=True)
    events = [
        classified(label="technical", sha256="91" * 32),
        classified(label="legal", confidence=0.2, sha256="92" * 32),
    ]
    topic = rig.settings.topic(topics.CLASSIFIED)
    async with TestKafkaBroker(rig.broker) as broker:
        for event in events:
            await broker.publish(encode_event(event), topic, key=event.document_id.encode())
        rig.outcomes.down = True
        outage = classified(label="billing", sha256="93" * 32)
        with pytest.raises(OperationalError):  # NACK: the batch is read again
            await broker.publish(encode_event(outage), topic, key=outage.document_id.encode())

    assert [e.document_id for e in rig.routed("technical")] == [events[0].document_id]
    assert events[1].document_id in rig.outcomes.reviews
    assert outage.document_id not in rig.outcomes.kinds
    assert rig.routed("billing") == []


def _letter(document_id: str | None, error: ErrorClass = ErrorClass.BLOB_MISSING) -> DeadLetterV1:
    return DeadLetterV1(
        producer=PRODUCER,
        document_id=document_id,
        stage="classifier",
        error_class=error,
        reason="blob ab… is not in the blob store",
        source_topic=topics.DOCUMENTS,
        source_partition=0,
        source_offset=7,
        original_value_b64="e30=",
    )


async def test_a_dead_letter_is_the_outcome_of_a_document_that_has_none(rig: Rig) -> None:
    routed = classified(label="legal", sha256="a1" * 32)
    await rig.handler.handle([rig.record(routed)])
    lost = classified(label="billing", sha256="a2" * 32)
    before = _value("triage_router_decisions_total", outcome="dead_letter", reason="blob_missing")
    topic = rig.settings.topic(topics.DEADLETTER)
    letters = [_letter(routed.document_id), _letter(lost.document_id), _letter(None)]
    records = [
        consumer_record(topic, encode_event(letter), offset=n) for n, letter in enumerate(letters)
    ]
    records.append(consumer_record(topic, b"{not a dead letter", offset=3))

    await rig.handler.handle_dead_letters(records + records[:2])  # a redelivery too

    assert rig.outcomes.kinds == {routed.document_id: "routed", lost.document_id: "dead_letter"}
    assert _value(
        "triage_router_decisions_total", outcome="dead_letter", reason="blob_missing"
    ) == (before + 1)
    assert rig.letters() == []  # a dead letter is never dead-lettered again

    # Re-driven and scored after all, the document is routed: the dead letter gives way.
    await rig.handler.handle([rig.record(lost)])
    assert rig.outcomes.kinds[lost.document_id] == "routed"
    assert [e.document_id for e in rig.routed("billing")] == [lost.document_id]


async def test_the_subscriber_records_what_reaches_the_dead_letter_topic() -> None:
    rig = _rig(with_subscriber=True)
    lost = classified(sha256="b1" * 32)
    async with TestKafkaBroker(rig.broker) as broker:
        await broker.publish(
            encode_event(_letter(lost.document_id)), rig.settings.topic(topics.DEADLETTER)
        )
    assert rig.outcomes.kinds == {lost.document_id: "dead_letter"}


async def test_a_batch_is_one_span_with_its_steps_linked_to_each_documents_trace(
    rig: Rig, spans: InMemorySpanExporter
) -> None:
    confident = classified(label="legal", confidence=0.97, sha256="01" * 32)
    unsure = classified(label="billing", confidence=0.5, sha256="02" * 32)

    await rig.handler.handle([rig.record(e, offset=n) for n, e in enumerate((confident, unsure))])

    finished = spans.get_finished_spans()
    [batch] = [s for s in finished if s.name == f"route {topics.CLASSIFIED}"]
    assert batch.context is not None and batch.parent is None
    for step_name in ("store", "publish"):
        [step] = [s for s in finished if s.name == step_name]
        assert step.parent is not None and step.parent.span_id == batch.context.span_id
    taken = [s for s in finished if s.name == f"process {rig.settings.topic(topics.CLASSIFIED)}"]
    [sent] = [s for s in finished if s.name.startswith("send ")]  # the one routing
    assert sent.name == f"send {rig.settings.topic(topics.routed_topic('legal'))}"
    assert {f"{s.context.trace_id:032x}" for s in taken if s.context} == {
        confident.trace_id,
        unsure.trace_id,
    }
    assert sent.context is not None and f"{sent.context.trace_id:032x}" == confident.trace_id
    for span in [*taken, sent]:
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert {link.context.span_id for link in batch.links} == {
        s.context.span_id for s in taken if s.context
    }
