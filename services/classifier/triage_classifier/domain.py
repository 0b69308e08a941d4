"""What the classifier decides: the DocumentClassified event for each extracted document."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from triage_contracts import (
    DocumentClassifiedV1,
    DocumentReceivedV1,
    Extraction,
    ExtractionStatus,
    ModelRef,
    ModelRole,
    Prediction,
    Producer,
)
from triage_ml.model import LoadedModel
from triage_text.extract import ExtractedText


@dataclass(frozen=True, slots=True)
class Extracted:
    """A received document and what extraction made of it."""

    received: DocumentReceivedV1
    text: ExtractedText


def classify(
    batch: Sequence[Extracted],
    *,
    model: LoadedModel,
    model_ref: ModelRef,
    producer: Producer,
) -> list[DocumentClassifiedV1]:
    """Score every document with text in one model call; the others carry no prediction."""
    scorable = [item for item in batch if item.text.status is ExtractionStatus.OK]
    predictions: dict[int, Prediction] = {}
    if scorable:
        scored = model.predict([item.text.text for item in scorable])
        predictions = {id(item): p for item, p in zip(scorable, scored, strict=True)}
    return [
        DocumentClassifiedV1(
            producer=producer,
            document_id=item.received.document_id,
            trace_id=item.received.trace_id,
            model=model_ref,
            document=item.received.document,
            extraction=Extraction(
                status=item.text.status, chars=len(item.text.text), pages=item.text.pages
            ),
            prediction=predictions.get(id(item)),
        )
        for item in batch
    ]


def in_shadow_sample(document_id: str, share: float) -> bool:
    """Whether a document is in the shadow sample; the same id always gets the same answer.

    The id's hex digits are uniform, so the chosen share of documents is ``share``.
    """
    if share >= 1.0:
        return True
    if share <= 0.0:
        return False
    return int(document_id[4:12], 16) < share * 16**8


def by_role(
    partitions: Sequence[int], canary_partitions: frozenset[int], *, has_canary: bool
) -> list[ModelRole]:
    """The role that scores each record: canary on its partitions when a canary serves."""
    return [
        ModelRole.CANARY if has_canary and partition in canary_partitions else ModelRole.CHAMPION
        for partition in partitions
    ]
