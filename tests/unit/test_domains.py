"""The services' pure decisions."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.helpers import PRODUCER, RECEIVED_AT, classified, received, small_examples
from triage_classifier import domain as classifier_domain
from triage_contracts import (
    DecidedBy,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Source,
    SourceKind,
    derive_document_id,
)
from triage_ingest import domain as ingest_domain
from triage_ml import model as model_lib
from triage_router import domain as router_domain
from triage_text.extract import ExtractedText

SLA = timedelta(hours=4)


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


def test_media_type_comes_from_declaration_or_name() -> None:
    assert ingest_domain.media_type_for("application/pdf", "x.bin") == "application/pdf"
    assert ingest_domain.media_type_for("application/octet-stream", "a.pdf") == "application/pdf"
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
    ],
)
def test_bad_upload_metadata_is_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="metadata"):
        ingest_domain.parse_metadata(raw)


def test_router_routes_confident_scores_to_their_queue() -> None:
    decision = router_domain.decide(classified(confidence=0.97, threshold=0.9), review_sla=SLA)
    assert decision == router_domain.RouteTo("billing", DecidedBy.MODEL, 0.97)


def test_router_sends_low_confidence_to_review_with_a_due_time() -> None:
    decision = router_domain.decide(classified(confidence=0.6, threshold=0.9), review_sla=SLA)
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
    decision = router_domain.decide(classified(status=status), review_sla=SLA)
    assert isinstance(decision, router_domain.SendToReview)
    assert decision.reason is reason
    assert decision.priority == router_domain.PRIORITY_HIGH


def test_classifier_scores_only_documents_with_text() -> None:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    model = model_lib.LoadedModel(
        version=metadata["version"],
        labels=tuple(metadata["labels"]),
        thresholds=metadata["thresholds"],
        metadata=metadata,
        _pipeline=pipeline,
    )
    ref = ModelRef(version=model.version, role=ModelRole.CHAMPION)
    batch = [
        classifier_domain.Extracted(
            received("01" * 32), ExtractedText(ExtractionStatus.OK, "invoice payment overdue")
        ),
        classifier_domain.Extracted(received("02" * 32), ExtractedText(ExtractionStatus.ENCRYPTED)),
    ]
    scored, unreadable = classifier_domain.classify(
        batch, model=model, model_ref=ref, producer=PRODUCER
    )
    assert scored.prediction is not None and scored.prediction.label == "billing"
    assert scored.model == ref and scored.trace_id == batch[0].received.trace_id
    assert unreadable.prediction is None
    assert unreadable.extraction.status is ExtractionStatus.ENCRYPTED
    assert unreadable.model == ref


def test_router_thresholds_in_config_override_the_model() -> None:
    event = classified(confidence=0.93, threshold=0.9)
    assert isinstance(router_domain.decide(event, review_sla=SLA), router_domain.RouteTo)
    stricter = router_domain.decide(event, review_sla=SLA, thresholds={"billing": 0.97})
    assert isinstance(stricter, router_domain.SendToReview)
    assert stricter.reason is router_domain.ReviewReason.LOW_CONFIDENCE


def test_rules_scores_route_only_when_sure_and_otherwise_say_model_unavailable() -> None:
    sure = classified(confidence=0.95, threshold=0.9)
    unsure = classified(confidence=0.6, threshold=0.9)
    rules = ModelRef(version="rules-default-1", role=ModelRole.RULES)
    routed = router_domain.decide(sure.model_copy(update={"model": rules}), review_sla=SLA)
    assert routed == router_domain.RouteTo("billing", DecidedBy.RULES, 0.95)
    review = router_domain.decide(unsure.model_copy(update={"model": rules}), review_sla=SLA)
    assert isinstance(review, router_domain.SendToReview)
    assert review.reason is router_domain.ReviewReason.MODEL_UNAVAILABLE


def test_canary_scores_only_its_partitions_and_only_when_it_serves() -> None:
    partitions = [0, 1, 2, 1, 3]
    roles = classifier_domain.by_role(partitions, frozenset({1, 3}), has_canary=True)
    assert [r.value for r in roles] == ["champion", "canary", "champion", "canary", "canary"]
    without = classifier_domain.by_role(partitions, frozenset({1, 3}), has_canary=False)
    assert {r.value for r in without} == {"champion"}


def test_shadow_sample_is_a_stable_share_chosen_by_document_id() -> None:
    ids = [derive_document_id("upload", "t", str(i)) for i in range(4000)]
    half = [i for i in ids if classifier_domain.in_shadow_sample(i, 0.5)]
    assert 0.46 < len(half) / len(ids) < 0.54
    assert half == [i for i in ids if classifier_domain.in_shadow_sample(i, 0.5)]
    tenth = {i for i in ids if classifier_domain.in_shadow_sample(i, 0.1)}
    assert tenth <= set(half)  # a smaller share is a subset: raising it only adds documents
    assert all(classifier_domain.in_shadow_sample(i, 1.0) for i in ids[:50])
    assert not any(classifier_domain.in_shadow_sample(i, 0.0) for i in ids[:50])
