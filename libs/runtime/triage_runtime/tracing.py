"""OpenTelemetry spans for every Kafka hop, one trace per document.

Every event carries a trace id (``Event.trace_id``, 32 hex digits, set when a document is
received and copied onto every event about it). That id *is* the OpenTelemetry trace id:
each span about an event is in the trace of the event's ``trace_id``, and each record on
Kafka carries a W3C ``traceparent`` header whose trace id is that one and whose parent id is
the span that sent it.

The spans: ``send <topic>`` (kind PRODUCER) for each event published, from the send until
the broker's acknowledgement; ``process <topic>`` (kind CONSUMER) for each record a consumer
decodes, a child of the ``traceparent`` it came with. A consumer works in batches, so the
events it publishes later cannot find their parent in the current context: the process
remembers the last span of each trace it saw (a bounded map) and parents the next one on it.
The first span of a document's trace (the ingest's first send) is a root whose trace id is
the document's, made so by the id generator below.

An HTTP request (``serving``, made by ``triage_runtime.http.RequestMetrics``), a consumer's
batch (``batch``) and a ``triage`` command (``traced_command``) are spans of traces of their
own, since each may hold several documents: the documents' spans made while one runs link
to it, and it links back to each record's ``process`` span and each new document's root.
Steps inside them are ``working`` spans, their children.

Nothing is exported unless ``TRIAGE_OTLP_ENDPOINT`` is set (the ``otlp`` extra of
triage-runtime installs the exporter). Off, the spans are not recorded, and the headers
still carry a ``traceparent`` with the document's trace id (flags 00: not sampled).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from triage_contracts import Event
from triage_contracts import headers as header_names

TRACEPARENT = header_names.TRACEPARENT
"""The W3C trace-context header every Triage record carries."""

REMEMBERED_TRACES = 4096
"""How many traces a process remembers the last span of (the documents of a few batches)."""

_INSTRUMENTATION = "triage"
_propagator = TraceContextTextMapPropagator()
_root_trace_id: ContextVar[int | None] = ContextVar("triage_root_trace_id", default=None)
_last_span: OrderedDict[int, SpanContext] = OrderedDict()
_outer: ContextVar[Span | None] = ContextVar("triage_outer_span", default=None)


class _Tracing:
    """The process's tracer provider: None while tracing is off."""

    provider: TracerProvider | None = None


_state = _Tracing()


class TracingUnavailableError(RuntimeError):
    """Tracing is configured but cannot run (the exporter is not installed)."""


class DocumentTraceIds(RandomIdGenerator):
    """Random ids, except that a root span started for an event takes the event's trace id."""

    def generate_trace_id(self) -> int:
        wanted = _root_trace_id.get()
        return wanted if wanted is not None else super().generate_trace_id()


def configure_tracing(
    *,
    service: str,
    otlp_endpoint: str | None,
    processors: Sequence[SpanProcessor] = (),
) -> TracerProvider | None:
    """Record this process's spans if ``otlp_endpoint`` is set (exported there over OTLP/HTTP)
    or ``processors`` are given (tests pass an in-memory exporter's); otherwise record none.

    Returns the provider, or None when tracing is off. Calling it again replaces the provider
    (the previous one is shut down, exporting what it holds). Raises TracingUnavailableError when
    an endpoint is set and the exporter is not installed."""
    if _state.provider is not None:
        _state.provider.shutdown()
        _state.provider = None
    _last_span.clear()
    if not otlp_endpoint and not processors:
        return None
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"triage-{service}"}),
        id_generator=DocumentTraceIds(),
    )
    if otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise TracingUnavailableError(
                "TRIAGE_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
                "install triage-runtime[otlp]"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    for processor in processors:
        provider.add_span_processor(processor)
    _state.provider = provider
    return provider


def _tracer() -> trace.Tracer:
    if _state.provider is None:
        return trace.NoOpTracer()
    return _state.provider.get_tracer(_INSTRUMENTATION)


def _remember(span_context: SpanContext) -> None:
    _last_span[span_context.trace_id] = span_context
    _last_span.move_to_end(span_context.trace_id)
    while len(_last_span) > REMEMBERED_TRACES:
        _last_span.popitem(last=False)


def _in_trace(parent: SpanContext) -> Context:
    return trace.set_span_in_context(NonRecordingSpan(parent), Context())


def _parent_for(trace_id: int) -> Context | None:
    """The context a span about trace ``trace_id`` starts in; None: it is the trace's root."""
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id == trace_id:
        return trace.set_span_in_context(trace.get_current_span(), Context())
    remembered = _last_span.get(trace_id)
    return _in_trace(remembered) if remembered is not None else None


def _start(
    name: str, trace_id: int, kind: SpanKind, parent: Context | None, event: Event, **attrs: Any
) -> Span:
    # The request, batch or command this document's span is made in is another trace: the
    # two are linked, not nested.
    outer = _outer.get() or trace.INVALID_SPAN
    outer_context = outer.get_span_context()
    links = (
        [Link(outer_context)]
        if outer_context.is_valid and outer_context.trace_id != trace_id
        else []
    )
    span = _start_span(name, trace_id, kind, parent, event, links=links, **attrs)
    # The request or batch links back to where each document's part in it begins: the span
    # that took its record, or the first span of a document new to this process.
    if links and (kind is SpanKind.CONSUMER or parent is None) and outer.is_recording():
        outer.add_link(span.get_span_context())
    return span


def _start_span(
    name: str,
    trace_id: int,
    kind: SpanKind,
    parent: Context | None,
    event: Event,
    *,
    links: Sequence[Link],
    **attrs: Any,
) -> Span:
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "triage.event_id": str(event.event_id),
        "triage.schema": event.schema_name,
    }
    document_id: str | None = getattr(event, "document_id", None)
    if document_id:
        attributes["triage.document_id"] = document_id
    attributes.update({key.replace("__", "."): value for key, value in attrs.items()})
    if parent is not None:
        return _tracer().start_span(
            name, context=parent, kind=kind, attributes=attributes, links=links
        )
    token = _root_trace_id.set(trace_id)
    try:
        return _tracer().start_span(
            name, context=Context(), kind=kind, attributes=attributes, links=links
        )
    finally:
        _root_trace_id.reset(token)


def start_send(topic: str, event: Event) -> tuple[Span, dict[str, str]]:
    """Start the span of sending ``event`` to ``topic``; return it (the caller ends it when
    the broker has acknowledged) and the ``traceparent`` header to send with the record."""
    trace_id = int(event.trace_id, 16)
    span = _start(
        f"send {topic}",
        trace_id,
        SpanKind.PRODUCER,
        _parent_for(trace_id),
        event,
        messaging__destination__name=topic,
        messaging__operation__type="send",
    )
    context = span.get_span_context()
    if not context.is_valid:
        # Tracing is off: still say which trace the record is in, as not sampled.
        context = SpanContext(
            trace_id=trace_id,
            span_id=uuid.UUID(str(event.event_id)).int & 0xFFFFFFFFFFFFFFFF or 1,
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
        )
    elif span.is_recording():
        _remember(context)
    headers: dict[str, str] = {}
    _propagator.inject(headers, context=_in_trace(context))
    return span, headers


def consumed(
    event: Event, headers: Mapping[str, str], *, topic: str, partition: int, offset: int
) -> SpanContext:
    """Record the span of a consumer taking ``event`` from ``topic``: a child of the record's
    ``traceparent`` when it is in the event's trace, else of the last span of that trace this
    process saw (or the trace's root). Later spans of that trace in this process are its
    children. Returns its context (invalid when tracing is off)."""
    trace_id = int(event.trace_id, 16)
    parent: Context | None = _propagator.extract(dict(headers))
    sent = trace.get_current_span(parent).get_span_context()
    if not (sent.is_valid and sent.trace_id == trace_id):
        parent = _parent_for(trace_id)
    span = _start(
        f"process {topic}",
        trace_id,
        SpanKind.CONSUMER,
        parent,
        event,
        messaging__destination__name=topic,
        messaging__operation__type="process",
        messaging__kafka__destination__partition=partition,
        messaging__kafka__offset=offset,
    )
    context = span.get_span_context()
    if span.is_recording():
        _remember(context)
    span.end()
    return context


@contextmanager
def working(name: str, **attributes: Any) -> Iterator[Span]:
    """A span of work in this process (a batch, a step of one, a command), current while the
    block runs: the child of the span current when it starts, or the root of a trace of its
    own. Attribute names use ``__`` for dots (``triage__records=64``). An exception leaving
    the block is recorded on it."""
    with _tracer().start_as_current_span(
        name,
        attributes={key.replace("__", "."): value for key, value in attributes.items()},
    ) as span:
        yield span


@contextmanager
def _outer_span(span: Span) -> Iterator[Span]:
    token = _outer.set(span)
    try:
        yield span
    finally:
        _outer.reset(token)


@contextmanager
def batch(name: str, **attributes: Any) -> Iterator[Span]:
    """``working``, for a batch of records: the span of each record taken or event sent
    while it runs (in its document's trace) links to it, and it links back to each record's
    ``process`` span (and to the first span of a document new to this process)."""
    with working(name, **attributes) as span, _outer_span(span):
        yield span


@contextmanager
def traced_command(service: str, *, otlp_endpoint: str | None) -> Iterator[Span]:
    """Record a command's spans while the block runs, when ``otlp_endpoint`` is set: one span
    for the command (current, so the events it sends link to it) and the sends' own; they
    are exported before this returns, and tracing is off again after. Unset, nothing is
    recorded (the span given is not recording)."""
    if not otlp_endpoint:
        with batch(service) as span:
            yield span
        return
    configure_tracing(service=service, otlp_endpoint=otlp_endpoint)
    try:
        with batch(service) as span:
            yield span
    finally:
        configure_tracing(service=service, otlp_endpoint=None)  # exports what it holds


def _request_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in raw}


@contextmanager
def serving(method: str, path: str, raw_headers: Sequence[tuple[bytes, bytes]]) -> Iterator[Span]:
    """The span of serving one HTTP request (kind SERVER), current while it is served: the
    child of the request's ``traceparent`` when it has one, else the root of a new trace.
    Linked to the documents' spans made while it is served, as ``batch`` is.
    ``answered`` names it by its route and gives it its status when the answer is known."""
    parent = _propagator.extract(_request_headers(raw_headers))
    with (
        _tracer().start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span,
        _outer_span(span),
    ):
        yield span


def answered(span: Span, *, method: str, route: str, status: str) -> None:
    """Name a ``serving`` span ``<method> <route template>`` and record its answer's status
    (``none`` when the client left first); a 5xx answer is an error."""
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    if status.isdigit():
        span.set_attribute("http.response.status_code", int(status))
        if int(status) >= 500:
            span.set_status(Status(StatusCode.ERROR))
