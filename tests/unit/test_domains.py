"""The pure decisions: ingest's, the routing policy's, the scoring pipeline's, the classifier's."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.helpers import PRODUCER, RECEIVED_AT, classified, received, small_examples
from triage_classifier import domain as classifier_domain
from triage_contracts import (
    DecidedBy,
    DocumentClassifiedV1,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Source,
    SourceKind,
    derive_document_id,
)
from triage_ingest import domain as ingest_domain
from triage_ml import model as model_lib
from triage_ml import scoring
from triage_runtime import routing as router_domain
from triage_runtime.policy_store import PolicyChange, PolicyError
from triage_runtime.routing import RoutingPolicy
from triage_text.extract import ExtractedText

SLA = timedelta(hours=4)
POLICY = RoutingPolicy(version=3, review_sla_hours=4)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\invoice.pdf", "invoice.pdf"),
        ("rechnung über 100€.pdf", "rechnung über 100_.pdf"),
        ("\x00\x1b[31mred.txt", "31mred.txt"),
        ("...", None),
        (None, None),
    ],
)
def test_filenames_are_made_safe(raw: str | None, expected: str | None) -> None:
    assert ingest_domain.safe_filename(raw) == expected


@pytest.mark.parametrize(
    "raw", ["a" * 300 + ".pdf", "\u00e9" * 200 + ".pdf", "\u4e2d" * 100 + ".pdf"]
)
def test_a_long_file_name_is_cut_from_the_front_and_keeps_its_extension(raw: str) -> None:
    safe = ingest_domain.safe_filename(raw)
    assert safe is not None and safe.endswith(raw[-10:])
    assert 250 <= len(safe.encode()) <= 255  # cut between characters, as near 255 as they go
    assert ingest_domain.media_type_for(None, safe) == "application/pdf"


def test_media_type_comes_from_declaration_or_name() -> None:
    assert ingest_domain.media_type_for("application/pdf", "x.bin") == "application/pdf"
    assert ingest_domain.media_type_for("application/octet-stream", "a.pdf") == "application/pdf"
    # Untyped, its content decides before its name does (the rule email parts follow too).
    pdf_head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
    assert ingest_domain.media_type_for(None, "scan0042", pdf_head) == "application/pdf"
    assert (
        ingest_domain.media_type_for("application/octet-stream", "scan.txt", pdf_head)
        == "application/pdf"
    )
    assert ingest_domain.media_type_for("text/plain", "a.txt", pdf_head) == "text/plain"
    assert ingest_domain.media_type_for("text/plain; charset=utf-8", None) == "text/plain"
    with pytest.raises(ingest_domain.UnsupportedMediaTypeError, match="image/png"):
        ingest_domain.media_type_for("image/png", "a.png")


def test_same_bytes_from_same_source_are_the_same_document() -> None:
    source = Source(kind=SourceKind.UPLOAD, name="http-upload")
    kwargs = {
        "source": source,
        "sha256": "ab" * 32,
        "size_bytes": 3,
        "media_type": "text/plain",
        "filename": "../a.txt",
        "received_at": RECEIVED_AT,
        "producer": PRODUCER,
    }
    first = ingest_domain.document_received(**kwargs)  # type: ignore[arg-type]
    second = ingest_domain.document_received(**kwargs)  # type: ignore[arg-type]
    assert first.document_id == second.document_id
    assert first.event_id != second.event_id
    assert first.document.filename == "a.txt"
    other = Source(kind=SourceKind.UPLOAD, name="another-key")
    assert ingest_domain.document_received(**{**kwargs, "source": other}).document_id != (  # type: ignore[arg-type]
        first.document_id
    )


def test_email_parts_are_identified_by_message_and_part() -> None:
    source = Source(kind=SourceKind.IMAP, name="support")
    kwargs = {
        "source": source,
        "sha256": "cd" * 32,
        "size_bytes": 3,
        "media_type": "text/plain",
        "filename": None,
        "received_at": RECEIVED_AT,
        "producer": PRODUCER,
    }
    body = ingest_domain.document_received(**kwargs, identity=("raw", "body"))  # type: ignore[arg-type]
    attachment = ingest_domain.document_received(**kwargs, identity=("raw", "2"))  # type: ignore[arg-type]
    assert body.document_id != attachment.document_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, {}),
        ("", {}),
        ('{"customer": "acme", "channel": "portal"}', {"customer": "acme", "channel": "portal"}),
    ],
)
def test_upload_metadata_is_a_json_object_of_strings(
    raw: str | None, expected: dict[str, str]
) -> None:
    assert ingest_domain.parse_metadata(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "[1, 2]",
        '{"n": 1}',
        "not json",
        '{"a": {"b": "c"}}',
        json.dumps({str(i): "v" for i in range(21)}),
        # Nested past the JSON parser's stack (a RecursionError, once a 500), and long.
        '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "[" * 5_000 + "]" * 5_000,
        json.dumps({"a": "x" * 70_000}),
    ],
)
def test_bad_upload_metadata_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="metadata"):
        ingest_domain.parse_metadata(raw)


def test_router_routes_confident_scores_to_their_queue() -> None:
    decision = router_domain.decide(classified(confidence=0.97, threshold=0.9), POLICY)
    assert decision == router_domain.RouteTo("billing", DecidedBy.MODEL, 0.97)


def test_router_sends_low_confidence_to_review_with_a_due_time() -> None:
    decision = router_domain.decide(classified(confidence=0.6, threshold=0.9), POLICY)
    assert isinstance(decision, router_domain.SendToReview)
    assert decision.reason is router_domain.ReviewReason.LOW_CONFIDENCE
    assert decision.due_at == RECEIVED_AT + SLA


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (ExtractionStatus.ENCRYPTED, router_domain.ReviewReason.ENCRYPTED),
        (ExtractionStatus.CORRUPT, router_domain.ReviewReason.EXTRACTION_FAILED),
        (ExtractionStatus.EMPTY, router_domain.ReviewReason.EXTRACTION_FAILED),
    ],
)
def test_router_sends_unreadable_documents_to_review_first(
    status: ExtractionStatus, reason: router_domain.ReviewReason
) -> None:
    decision = router_domain.decide(classified(status=status), POLICY)
    assert isinstance(decision, router_domain.SendToReview)
    assert decision.reason is reason
    assert decision.priority == router_domain.PRIORITY_HIGH


def _small_model() -> model_lib.LoadedModel:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )


def test_the_scoring_pipeline_scores_only_documents_with_text_and_names_the_policy() -> None:
    model = _small_model()
    ref = ModelRef(version=model.version, role=ModelRole.CHAMPION)
    batch = [
        scoring.Extracted(
            received("01" * 32), ExtractedText(ExtractionStatus.OK, "invoice payment overdue")
        ),
        scoring.Extracted(received("02" * 32), ExtractedText(ExtractionStatus.ENCRYPTED)),
    ]
    scored, unreadable = scoring.classify(
        batch, model=model, model_ref=ref, producer=PRODUCER, policy=POLICY
    )
    assert scored.prediction is not None and scored.prediction.label == "billing"
    assert scored.model == ref and scored.trace_id == batch[0].received.trace_id
    assert scored.policy_version == 3 and unreadable.policy_version == 3
    assert unreadable.prediction is None
    assert unreadable.extraction.status is ExtractionStatus.ENCRYPTED
    assert unreadable.model == ref


def test_a_policy_threshold_overrides_the_model_for_that_model_version_only() -> None:
    model = _small_model()
    ref = ModelRef(version=model.version, role=ModelRole.CHAMPION)
    batch = [
        scoring.Extracted(
            received("01" * 32), ExtractedText(ExtractionStatus.OK, "invoice payment overdue")
        )
    ]

    def score(policy: RoutingPolicy) -> tuple[float, str]:
        [event] = scoring.classify(
            batch, model=model, model_ref=ref, producer=PRODUCER, policy=policy
        )
        assert event.prediction is not None
        return event.prediction.threshold, event.prediction.action.value

    own_threshold, _ = score(RoutingPolicy())
    assert score(RoutingPolicy(version=4, thresholds={model.version: {"billing": 1.0}})) == (
        1.0,
        "review",
    )
    assert score(RoutingPolicy(version=5, thresholds={model.version: {"billing": 0.0}})) == (
        0.0,
        "route",
    )
    # A threshold set for another model version leaves this one's own.
    other = RoutingPolicy(version=6, thresholds={"tfidf-lr-other": {"billing": 1.0}})
    assert score(other)[0] == own_threshold


def test_the_router_decides_by_the_action_the_event_carries_and_dates_by_the_policy() -> None:
    event = classified(confidence=0.93, threshold=0.9)
    assert isinstance(router_domain.decide(event, POLICY), router_domain.RouteTo)
    stricter = RoutingPolicy(version=2, thresholds={"tfidf-lr-test": {"billing": 0.97}})
    assert event.prediction is not None
    reviewed = event.model_copy(
        update={"prediction": stricter.apply("tfidf-lr-test", event.prediction)}
    )
    decision = router_domain.decide(reviewed, RoutingPolicy(review_sla_hours=1))
    assert isinstance(decision, router_domain.SendToReview)
    assert decision.reason is router_domain.ReviewReason.LOW_CONFIDENCE
    assert decision.due_at == RECEIVED_AT + timedelta(hours=1)


def test_rules_scores_route_only_when_sure_and_otherwise_say_model_unavailable() -> None:
    sure = classified(confidence=0.95, threshold=0.9)
    unsure = classified(confidence=0.6, threshold=0.9)
    rules = ModelRef(version="rules-default-1", role=ModelRole.RULES)
    routed = router_domain.decide(sure.model_copy(update={"model": rules}), POLICY)
    assert routed == router_domain.RouteTo("billing", DecidedBy.RULES, 0.95)
    review = router_domain.decide(unsure.model_copy(update={"model": rules}), POLICY)
    assert isinstance(review, router_domain.SendToReview)
    assert review.reason is router_domain.ReviewReason.MODEL_UNAVAILABLE


def test_canary_scores_only_its_partitions_and_only_when_it_serves() -> None:
    policy = RoutingPolicy(canary_partitions=frozenset({1, 3}))
    partitions = [0, 1, 2, 1, 3]
    roles = [policy.role_for(p, has_canary=True) for p in partitions]
    assert [r.value for r in roles] == ["champion", "canary", "champion", "canary", "canary"]
    without = {policy.role_for(p, has_canary=False) for p in partitions}
    assert {r.value for r in without} == {"champion"}


def test_shadow_sample_is_a_stable_share_chosen_by_document_id() -> None:
    def sampled(share: float) -> list[str]:
        policy = RoutingPolicy(shadow_sample=share)
        return [i for i in ids if policy.in_shadow_sample(i)]

    ids = [derive_document_id("upload", "t", str(i)) for i in range(4000)]
    half = sampled(0.5)
    assert 0.46 < len(half) / len(ids) < 0.54
    assert half == sampled(0.5)
    assert set(sampled(0.1)) <= set(half)  # a smaller share is a subset: raising it only adds
    assert sampled(1.0) == ids
    assert sampled(0.0) == []


def test_quality_sample_is_a_stable_share_independent_of_the_shadow_sample() -> None:
    ids = [derive_document_id("upload", "q", str(i)) for i in range(4000)]
    policy = RoutingPolicy(shadow_sample=0.5, quality_sample=0.5)
    quality = {i for i in ids if policy.in_quality_sample(i)}
    shadow = {i for i in ids if policy.in_shadow_sample(i)}
    assert 0.46 < len(quality) / len(ids) < 0.54
    # Independent digits: about half of the shadow's documents are also quality samples.
    assert 0.44 < len(quality & shadow) / len(shadow) < 0.56
    assert not any(RoutingPolicy(quality_sample=0.0).in_quality_sample(i) for i in ids)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (PolicyChange(quality_sample=1.5), "the quality sample is a share from 0 to 1"),
        (PolicyChange(shadow_sample=-0.1), "the shadow sample is a share from 0 to 1"),
        (PolicyChange(target_precision=0.0), "the target precision is over 0 and at most 1"),
    ],
)
def test_a_policy_change_out_of_range_is_refused_with_its_reason(
    change: PolicyChange, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        change.applied_to(RoutingPolicy())


def test_a_policy_change_sets_the_quality_sample_and_target_and_keeps_the_rest() -> None:
    before = RoutingPolicy(shadow_sample=0.2, review_sla_hours=8.0)
    after = PolicyChange(quality_sample=0.02, target_precision=0.9).applied_to(before)
    assert (after.quality_sample, after.target_precision) == (0.02, 0.9)
    assert (after.shadow_sample, after.review_sla_hours) == (0.2, 8.0)


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(0, (1, 2.0)), (1, (2, 4.0)), (3, (4, 10.0)), (4, (5, 10.0)), (5, None)],
)
def test_a_retry_waits_twice_as_long_each_time_up_to_its_limit_then_gives_up(
    attempts: int, expected: tuple[int, float] | None
) -> None:
    plan = classifier_domain.next_retry(
        attempts, max_attempts=5, backoff_seconds=2.0, backoff_max_seconds=10.0
    )
    assert (None if plan is None else (plan.attempt, plan.delay_seconds)) == expected


def test_a_model_routing_in_the_quality_sample_is_routed_and_also_reviewed_blind() -> None:
    policy = RoutingPolicy(version=3, review_sla_hours=4, quality_sample=0.25)
    sampled = []
    for sha in (f"{n:02x}" * 32 for n in range(200)):
        event = classified(sha256=sha, confidence=0.97, threshold=0.9)
        decision = router_domain.decide(event, policy)
        assert isinstance(decision, router_domain.RouteTo)
        assert (decision.queue, decision.decided_by) == ("billing", DecidedBy.MODEL)
        assert (decision.quality_sample is not None) == policy.in_quality_sample(event.document_id)
        if decision.quality_sample is not None:
            sampled.append(event.document_id)
            # Exactly what an ordinary low-confidence item gets: priority and due time.
            low = router_domain.decide(classified(sha256=sha, confidence=0.6), policy)
            assert isinstance(low, router_domain.SendToReview)
            assert decision.quality_sample == router_domain.SendToReview(
                router_domain.ReviewReason.QUALITY_SAMPLE, low.priority, low.due_at
            )
    assert 0.15 < len(sampled) / 200 < 0.35


@pytest.mark.parametrize(
    "event",
    [
        classified(confidence=0.6, threshold=0.9),  # low confidence: reviewed anyway
        classified(status=ExtractionStatus.ENCRYPTED),
        classified(confidence=0.95, threshold=0.9).model_copy(
            update={"model": ModelRef(version="rules-default-1", role=ModelRole.RULES)}
        ),
    ],
)
def test_only_the_models_confident_routings_are_quality_sampled(
    event: DocumentClassifiedV1,
) -> None:
    decision = router_domain.decide(event, RoutingPolicy(quality_sample=1.0))
    assert not isinstance(decision, router_domain.RouteTo) or decision.quality_sample is None
    assert not (
        isinstance(decision, router_domain.SendToReview)
        and decision.reason is router_domain.ReviewReason.QUALITY_SAMPLE
    )


def test_no_quality_sample_by_default() -> None:
    decision = router_domain.decide(classified(confidence=0.99), RoutingPolicy())
    assert decision == router_domain.RouteTo("billing", DecidedBy.MODEL, 0.99)
