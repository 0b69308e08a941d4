"""Fixtures for tests that need the real Kafka broker, PostgreSQL, IMAP and S3 servers.

Addresses come from TRIAGE_TEST_KAFKA_BOOTSTRAP and TRIAGE_TEST_DATABASE_URL, the IMAP
variables TRIAGE_TEST_IMAP_HOST, TRIAGE_TEST_IMAP_PORT, TRIAGE_TEST_IMAPS_PORT,
TRIAGE_TEST_IMAP_CA_FILE, TRIAGE_TEST_IMAP_USER and TRIAGE_TEST_IMAP_PASSWORD, and the S3
variables TRIAGE_TEST_S3_ENDPOINT_URL, TRIAGE_TEST_S3_ACCESS_KEY_ID,
TRIAGE_TEST_S3_SECRET_ACCESS_KEY and TRIAGE_TEST_S3_REGION. When they are not set, the
project's local stack is started (deploy/local/stack.sh start) and used. Each test session
gets its own database and its own topic prefix, so runs never see each other's data.

With TRIAGE_TEST_CONTAINERS=1 (tests/containers.sh sets it), Kafka and PostgreSQL are instead
throwaway containers that testcontainers starts for the session and removes after it
(``tests.containers``: compose.yaml's broker and database, images TRIAGE_KAFKA_IMAGE and
TRIAGE_POSTGRES_IMAGE, engine DOCKER_HOST); TRIAGE_TEST_KAFKA_BOOTSTRAP and
TRIAGE_TEST_DATABASE_URL are ignored and the local stack is not started. IMAP and S3 are not
containers: they come from the TRIAGE_TEST_IMAP_* and TRIAGE_TEST_S3_* variables if set, and
otherwise the tests that need them skip (``require_imap``, ``require_s3``); so do the fault
tests, which stop and start the local stack's servers.

The broker does not create topics on first use (auto.create.topics.enable=false, as on most
production clusters): the session's prefix and each ``isolated`` prefix get the declared
topics (``triage_contracts.topics.declared_topics``) up front, in one admin request.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.containers import Infrastructure, infrastructure
from tests.helpers import PRODUCER, REPO_ROOT, run_in_thread
from triage_contracts import topics
from triage_contracts.topics import declared_topics
from triage_runtime.db.engine import upgrade
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.outbox import Publisher
from triage_runtime.outcomes.review import DecisionTopics, ReviewWorkflow
from triage_runtime.topic_admin import Create, TopicAdmin

TEST_QUEUES = ("billing", "legal", "other", "technical")
"""The queues the tests route to (the labels of their models and review workflows): each
gets its routed topic under every test prefix."""


@dataclass(frozen=True)
class Imap:
    """The IMAP server the tests append mail to and read it back from."""

    host: str
    port: int
    imaps_port: int
    ca_file: str
    user: str
    password: str


@dataclass(frozen=True)
class S3Endpoint:
    """The S3-compatible server and how to sign for it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str


def empty_and_delete_bucket(client: Any, bucket: str) -> None:
    """Remove a test bucket with everything in it (unfinished multipart uploads too)."""
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])
    client.delete_bucket(Bucket=bucket)


@dataclass(frozen=True)
class Stack:
    """Where the real services are, and this session's private namespace on them."""

    kafka_bootstrap: str
    database_url: str
    topic_prefix: str
    imap: Imap | None = None
    s3: S3Endpoint | None = None
    containers: Infrastructure | None = None
    """The containers Kafka and PostgreSQL run in (TRIAGE_TEST_CONTAINERS), else None."""

    def topic(self, name: str) -> str:
        """Return ``name`` with this session's prefix."""
        return self.topic_prefix + name


def create_declared_topics(
    kafka_bootstrap: str, prefix: str, queues: Iterable[str] = TEST_QUEUES
) -> None:
    """Create the declared topics, one routed topic per queue, under ``prefix``, in one
    request, with the declared partitions and configs on one replica (as ``triage topics
    apply --replication-factor 1`` does on the local stack); existing ones are left alone.
    """
    specs = declared_topics(queues, replication_factor=1)
    connection = KafkaConnection(kafka_bootstrap=kafka_bootstrap)

    async def create() -> None:
        async with TopicAdmin(connection, prefix=prefix) as admin:
            await admin.apply([Create(spec) for spec in specs])  # returns once listed

    run_in_thread(create())


def delete_topics_under(kafka_bootstrap: str, prefix: str) -> None:
    """Delete every topic under a test's prefix, in one request, so a suite's thousands of
    partitions do not pile up on the one broker."""
    connection = KafkaConnection(kafka_bootstrap=kafka_bootstrap)

    async def delete() -> None:
        admin = AIOKafkaAdminClient(**connection.aiokafka_kwargs())
        await admin.start()
        try:
            names = [name for name in await admin.list_topics() if name.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    run_in_thread(delete())


def _local_stack_env() -> dict[str, str]:
    script = REPO_ROOT / "deploy" / "local" / "stack.sh"
    subprocess.run([str(script), "start"], check=True, timeout=900)
    printed = subprocess.run(
        [str(script), "env"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return dict(re.findall(r"^export (\w+)=['\"]?([^'\"\n]*)['\"]?$", printed, re.MULTILINE))


def containers_mode() -> bool:
    """Whether TRIAGE_TEST_CONTAINERS asks for Kafka and PostgreSQL as containers."""
    return os.environ.get("TRIAGE_TEST_CONTAINERS", "") not in ("", "0")


def _imap(env: dict[str, str]) -> Imap:
    return Imap(
        host=env["IMAP_HOST"],
        port=int(env["IMAP_PORT"]),
        imaps_port=int(env["IMAPS_PORT"]),
        ca_file=env["IMAP_CA_FILE"],
        user=env["IMAP_USER"],
        password=env["IMAP_PASSWORD"],
    )


def _s3(env: dict[str, str]) -> S3Endpoint:
    return S3Endpoint(
        endpoint_url=env["S3_ENDPOINT_URL"],
        access_key_id=env["S3_ACCESS_KEY_ID"],
        secret_access_key=env["S3_SECRET_ACCESS_KEY"],
        region=env.get("S3_REGION", "us-east-1"),
    )


def require_imap(stack: Stack) -> Imap:
    """The stack's IMAP server, or skip the test when it has none (containers mode)."""
    if stack.imap is None:
        pytest.skip(
            "no IMAP server: TRIAGE_TEST_CONTAINERS gives Kafka and PostgreSQL only"
            " (set TRIAGE_TEST_IMAP_* to use one)"
        )
    return stack.imap


def require_s3(stack: Stack) -> S3Endpoint:
    """The stack's S3 server, or skip the test when it has none (containers mode)."""
    if stack.s3 is None:
        pytest.skip(
            "no S3 server: TRIAGE_TEST_CONTAINERS gives Kafka and PostgreSQL only"
            " (set TRIAGE_TEST_S3_* to use one)"
        )
    return stack.s3


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The real Kafka and PostgreSQL, with a fresh database and topic prefix for this session."""
    kafka = os.environ.get("TRIAGE_TEST_KAFKA_BOOTSTRAP")
    database = os.environ.get("TRIAGE_TEST_DATABASE_URL")
    imap_env = {
        key.removeprefix("TRIAGE_TEST_"): value
        for key, value in os.environ.items()
        if key.startswith("TRIAGE_TEST_IMAP")
    }
    s3_env = {
        key.removeprefix("TRIAGE_TEST_"): value
        for key, value in os.environ.items()
        if key.startswith("TRIAGE_TEST_S3_")
    }
    with ExitStack() as session:
        containers: Infrastructure | None = None
        if containers_mode():
            containers = session.enter_context(
                infrastructure(os.environ, session=f"pytest-{os.getpid()}")
            )
            kafka, database = containers.kafka_bootstrap, containers.database_url
        elif not (kafka and database and imap_env and s3_env):
            env = _local_stack_env()
            kafka = kafka or env["TRIAGE_KAFKA_BOOTSTRAP"]
            database = database or env["TRIAGE_DATABASE_URL"]
            local = {k.removeprefix("TRIAGE_"): v for k, v in env.items()}
            imap_env = imap_env or local
            s3_env = s3_env or local
        assert kafka and database

        name = f"triage_test_{secrets.token_hex(4)}"
        admin = create_engine(database, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        test_url = make_url(database).set(database=name).render_as_string(hide_password=False)
        upgrade(test_url)
        prefix = f"test-{secrets.token_hex(4)}."
        create_declared_topics(kafka, prefix)
        try:
            yield Stack(
                kafka_bootstrap=kafka,
                database_url=test_url,
                topic_prefix=prefix,
                imap=_imap(imap_env) if imap_env else None,
                s3=_s3(s3_env) if s3_env else None,
                containers=containers,
            )
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


@pytest.fixture
def isolated(stack: Stack) -> Iterator[Stack]:
    """The stack with a topic prefix of this test's own, so no test reads another's events;
    the declared topics exist under it while the test runs."""
    prefix = f"{stack.topic_prefix}{secrets.token_hex(3)}."
    create_declared_topics(stack.kafka_bootstrap, prefix)
    yield replace(stack, topic_prefix=prefix)
    delete_topics_under(stack.kafka_bootstrap, prefix)


@pytest.fixture
def no_topics(stack: Stack) -> Iterator[Stack]:
    """The stack with a topic prefix of this test's own under which no topic exists yet (for
    tests of what happens before ``triage topics apply``)."""
    prefix = f"{stack.topic_prefix}{secrets.token_hex(3)}."
    yield replace(stack, topic_prefix=prefix)
    delete_topics_under(stack.kafka_bootstrap, prefix)


@pytest.fixture
def clean_db(stack: Stack) -> str:
    """The session database, emptied before the test."""
    empty_database(stack.database_url)
    return stack.database_url


def empty_database(database_url: str) -> None:
    """Delete every row the services and tests write (the schema stays)."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE review_item, routing_decision, document, api_key, idempotency_record,"
                " imap_cursor, model_alias_history, model_alias, model_version, web_session,"
                " login_attempt, audit_log, app_user, routing_correction, routing_policy,"
                " document_outcome, document_purge, outbox, document_raw, dead_letter_blob,"
                " pending_blob, imap_attempt"
                " RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()


def review_workflow(
    engine: AsyncEngine, stack: Stack, labels: Sequence[str], publisher: Publisher
) -> ReviewWorkflow:
    """A review workflow as the review UI makes it, publishing to ``stack``'s topics."""
    return ReviewWorkflow(
        engine,
        labels=labels,
        lease=timedelta(minutes=5),
        producer=PRODUCER,
        topics=DecisionTopics(
            decisions=stack.topic(topics.REVIEW_DECISIONS),
            routed=lambda queue: stack.topic(topics.routed_topic(queue)),
        ),
        publisher=publisher,
    )
