"""Review UI: ops staff sign in, work the review queue, decide, and watch the dashboard.

Server-rendered pages (Jinja2, autoescaped), a hand-written stylesheet and script, sessions in
PostgreSQL, a CSRF token on every form, roles checked on the server for every action, security
headers on every response (``security``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from triage_contracts import topics
from triage_review_ui import background, errors, security
from triage_review_ui.background import LiveQuality, QueueGauges
from triage_review_ui.deps import LoginRequiredError, to_login
from triage_review_ui.documents import ItemDocuments
from triage_review_ui.metrics import count_decision
from triage_review_ui.pages import Pages
from triage_review_ui.queries import ReviewQueries
from triage_review_ui.routes import admin, auth, bulk, claims, dashboard, history, items, queue
from triage_review_ui.search import ItemTexts
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import AuthStore
from triage_runtime.db.engine import database_reachable, make_async_engine
from triage_runtime.http import RequestMetrics
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_start import KafkaStart
from triage_runtime.ops import ops_router
from triage_runtime.outbox import InBackground, Outbox
from triage_runtime.outcomes.quality import QualitySamples
from triage_runtime.outcomes.review import DecisionTopics, ReviewWorkflow
from triage_runtime.outcomes.search_text import ReviewTexts
from triage_runtime.policy_store import PolicyStore
from triage_runtime.service import producer_for
from triage_text.pool import ExtractionLimits, ExtractionPool

SERVICE = "review-ui"
HERE = Path(__file__).parent
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the review UI; the database and Kafka connect only when it starts."""
    settings = settings or Settings()
    producer = producer_for(SERVICE, "triage-review-ui")
    engine = make_async_engine(settings.database_url)
    broker = make_broker(settings, client_id="triage-review-ui")
    queries = ReviewQueries(engine)
    # Documents are shown re-extracted, with limits: a hostile one costs a killed worker.
    pool = ExtractionPool(
        workers=1,
        limits=ExtractionLimits(
            timeout_seconds=settings.extraction_timeout_seconds,
            memory_bytes=settings.extraction_memory_bytes,
            max_bytes=settings.max_document_bytes,
        ),
    )
    outbox = Outbox(engine, broker, service=SERVICE, topic_prefix=settings.topic_prefix)
    workflow = ReviewWorkflow(
        engine,
        labels=settings.labels,
        other_queues=settings.other_queues,
        lease=timedelta(minutes=settings.lease_minutes),
        producer=producer,
        topics=DecisionTopics(
            decisions=settings.topic(topics.REVIEW_DECISIONS),
            routed=lambda queue: settings.topic(topics.routed_topic(queue)),
        ),
        publisher=InBackground(outbox),  # a reviewer's click never waits on Kafka
        on_decided=count_decision,
        undo_window=timedelta(minutes=settings.undo_minutes),
    )
    gauges = QueueGauges(queries)
    documents = ItemDocuments(settings.open_blob_store(), pool)
    texts = ItemTexts(ReviewTexts(engine), documents)
    quality = LiveQuality(QualitySamples(engine), PolicyStore(engine), settings)

    async def with_kafka(stack: AsyncExitStack) -> None:
        await stack.enter_async_context(
            outbox.relaying(interval=settings.outbox_relay_seconds, keep=settings.outbox_keep)
        )

    kafka = KafkaStart(broker, settings, then=with_kafka)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            await stack.enter_async_context(pool)
            await stack.enter_async_context(kafka.running())
            await stack.enter_async_context(background.running(gauges, quality, settings))
            await stack.enter_async_context(texts.indexing(settings.search_index_seconds))
            yield
        log.info("stopped cleanly")

    app = FastAPI(
        title="Triage review",
        summary="The human review queue.",
        version=producer.version,
        lifespan=lifespan,
        # Every POST/PUT/PATCH/DELETE, of every route, shows its CSRF token first.
        dependencies=[Depends(security.csrf_guard)],
    )
    app.state.kafka = kafka  # how its Kafka start is going (tests read it)
    app.state.settings = settings
    app.state.auth = AuthStore(engine)
    app.state.queries = queries
    app.state.workflow = workflow
    app.state.quality = quality
    app.state.documents = documents
    app.state.texts = texts
    app.state.pages = Pages(settings)
    app.include_router(
        ops_router(
            service=SERVICE,
            checks={
                "database": partial(database_reachable, engine),
                "kafka": kafka.ready,
            },
            reasons={"kafka": kafka.why_not_ready},
            metrics_token=settings.metrics_token,
        )
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_exception_handler(LoginRequiredError, to_login)
    errors.install(app)
    security.install(app, settings)
    for router in (
        auth.router,
        queue.router,
        items.router,
        bulk.router,
        claims.router,
        dashboard.router,
        admin.router,
        history.router,
    ):
        app.include_router(router)
    # Added last, so it runs first and counts every answer, middleware's own included.
    app.add_middleware(RequestMetrics, service=SERVICE)
    return app
