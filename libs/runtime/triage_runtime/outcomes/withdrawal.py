"""Taking a routing back: the one DocumentWithdrawn every correction announces it with.

A replay moving a document, a reviewer overruling a quality sample's routing, and an undone
or reopened human decision all withdraw a routing this way; where the document goes instead
is a DocumentRouted superseding it, or a review item.
"""

from __future__ import annotations

from triage_contracts import DocumentWithdrawnV1, ModelRef, Producer
from triage_runtime.db.models import RoutingDecision


def withdrawal(
    routing: RoutingDecision,
    *,
    producer: Producer,
    trace_id: str,
    model: ModelRef | None,
    reason: str,
    replay_id: str | None = None,
) -> DocumentWithdrawnV1:
    """The DocumentWithdrawn for ``routing``'s queue topic, naming the event it withdraws."""
    return DocumentWithdrawnV1(
        producer=producer,
        document_id=routing.document_id,
        trace_id=trace_id,
        model=model,
        queue=routing.queue,
        withdrawn_event_id=routing.event_id,
        reason=reason,
        replay_id=replay_id,
    )
