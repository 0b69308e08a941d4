"""Ingest service: the upload API, plus the SMTP, IMAP and drop-folder connectors.

Every path hands its input to one Intake (store bytes, record, publish once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from triage_contracts import topics
from triage_ingest.body import BodyLimits
from triage_ingest.connectors import connectors_for, running
from triage_ingest.deps import key_holder
from triage_ingest.gate import UploadGate
from triage_ingest.imap_health import ImapHealth
from triage_ingest.intake import Intake
from triage_ingest.metrics import UPLOADS
from triage_ingest.routes import documents
from triage_ingest.settings import Settings
from triage_ingest.store import IngestStore
from triage_runtime.apikeys import ApiKeys
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.http import (
    ConcurrencyLimit,
    RateLimiter,
    RequestBodyLimit,
    RequestMetrics,
    internal_error,
)
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_start import KafkaStart
from triage_runtime.ops import ops_router
from triage_runtime.outbox import Outbox
from triage_runtime.service import producer_for

SERVICE = "ingest"
DEPENDENCY_RETRY_SECONDS = 5
log = logging.getLogger(__name__)


async def dependency_down(_request: Request, exc: Exception) -> JSONResponse:
    """Kafka or PostgreSQL failed mid-request: nothing was accepted; ask for a retry."""
    log.warning("upload refused: a dependency failed", extra={"error": type(exc).__name__})
    UPLOADS.labels("unavailable").inc()
    return JSONResponse(
        {"detail": "a storage dependency is unavailable; nothing was accepted, retry later"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": str(DEPENDENCY_RETRY_SECONDS)},
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ingest app; Kafka, PostgreSQL and connectors start only with the app."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-ingest")
    broker = make_broker(settings, client_id="triage-ingest")
    engine = make_async_engine(settings.database_url)
    store = IngestStore(engine)
    blobs = settings.open_blob_store()
    outbox = Outbox(engine, broker, service=SERVICE, topic_prefix=settings.topic_prefix)
    intake = Intake(
        blobs=blobs,
        broker=broker,
        store=store,
        outbox=outbox,
        producer=producer,
        documents_topic=settings.topic(topics.DOCUMENTS),
        deadletter_topic=settings.topic(topics.DEADLETTER),
    )
    imap_health = ImapHealth()

    async def with_kafka(stack: AsyncExitStack) -> None:
        await stack.enter_async_context(
            outbox.relaying(interval=settings.outbox_relay_seconds, keep=settings.outbox_keep)
        )

    kafka = KafkaStart(broker, settings, then=with_kafka)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            # Without Kafka, what arrives waits in the outbox (the relay starts once connected).
            await stack.enter_async_context(kafka.running())
            await stack.enter_async_context(
                running(connectors_for(settings, intake, store, imap_health=imap_health))
            )
            log.info("ingest ready", extra={"port": settings.port})
            yield
        log.info("stopped cleanly")

    app = FastAPI(
        title="Triage ingest",
        summary="Upload documents into Triage and follow them through the pipeline.",
        version=producer.version,
        lifespan=lifespan,
    )
    app.state.kafka = kafka  # how its Kafka start is going (tests read it)
    app.state.settings = settings
    app.state.store = store
    app.state.blobs = blobs
    app.state.intake = intake
    app.state.api_keys = ApiKeys(engine)
    app.state.limiter = RateLimiter(
        per_minute=settings.uploads_per_minute_per_key,
        burst=settings.upload_burst_per_key,
        clock=time.monotonic,
    )
    app.add_middleware(RequestBodyLimit, limit=lambda: settings.max_request_bytes)
    # An overloaded ingest refuses before reading any body.
    app.add_middleware(
        ConcurrencyLimit,
        limit=lambda: settings.max_concurrent_uploads,
        paths=("/v1/documents",),
        retry_after_seconds=1,
        on_reject=UPLOADS.labels("overloaded").inc,
    )
    # Added after, so it runs before: the key is checked, and the key's own slot taken,
    # before a service slot or any byte of the body.
    app.add_middleware(
        UploadGate,
        # Read from app.state at each request, as the route's dependency does.
        holder=lambda key: key_holder(settings, app.state.api_keys, key),
        rate_wait=lambda who: (
            app.state.limiter.take(who.id) if settings.uploads_per_minute_per_key > 0 else 0.0
        ),
        per_key_limit=lambda: settings.max_concurrent_uploads_per_key,
        body_limits=lambda: BodyLimits.of(settings),
        paths=("/v1/documents",),
    )
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(DBAPIError, dependency_down)
    app.add_exception_handler(KafkaError, dependency_down)
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={
                "kafka": kafka.ready,
                "database": partial(database_reachable, engine),
            },
            reasons={"kafka": kafka.why_not_ready},
            metrics_token=settings.metrics_token,
            detail=(lambda: {"imap": imap_health.detail()}) if settings.imap_accounts else None,
            degraded=lambda: [f"imap {name}" for name in imap_health.failing()],
        )
    )
    app.include_router(documents.router)
    # Added last, so it runs first and counts every answer, middleware's own included.
    app.add_middleware(RequestMetrics, service=SERVICE)
    return app
