"""Fixtures for tests that need the real Kafka broker and PostgreSQL server.

Addresses come from TRIAGE_TEST_KAFKA_BOOTSTRAP and TRIAGE_TEST_DATABASE_URL. When they are
not set, the project's local stack is started (deploy/local/stack.sh start) and used.
Each test session gets its own database and its own topic prefix, so runs never see each
other's data.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.helpers import REPO_ROOT
from triage_runtime.db.engine import upgrade


@dataclass(frozen=True)
class Stack:
    """Where the real services are, and this session's private namespace on them."""

    kafka_bootstrap: str
    database_url: str
    topic_prefix: str

    def topic(self, name: str) -> str:
        """Return ``name`` with this session's prefix."""
        return self.topic_prefix + name


def _local_stack_env() -> dict[str, str]:
    script = REPO_ROOT / "deploy" / "local" / "stack.sh"
    subprocess.run([str(script), "start"], check=True, timeout=900)
    printed = subprocess.run(
        [str(script), "env"], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    return dict(re.findall(r"^export (\w+)=['\"]?([^'\"\n]*)['\"]?$", printed, re.MULTILINE))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The real Kafka and PostgreSQL, with a fresh database and topic prefix for this session."""
    kafka = os.environ.get("TRIAGE_TEST_KAFKA_BOOTSTRAP")
    database = os.environ.get("TRIAGE_TEST_DATABASE_URL")
    if not (kafka and database):
        env = _local_stack_env()
        kafka = kafka or env["TRIAGE_KAFKA_BOOTSTRAP"]
        database = database or env["TRIAGE_DATABASE_URL"]

    name = f"triage_test_{secrets.token_hex(4)}"
    admin = create_engine(database, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    test_url = make_url(database).set(database=name).render_as_string(hide_password=False)
    upgrade(test_url)
    try:
        yield Stack(
            kafka_bootstrap=kafka,
            database_url=test_url,
            topic_prefix=f"test-{secrets.token_hex(4)}.",
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def isolated(stack: Stack) -> Stack:
    """The stack with a topic prefix of this test's own, so no test reads another's events."""
    return Stack(
        kafka_bootstrap=stack.kafka_bootstrap,
        database_url=stack.database_url,
        topic_prefix=f"{stack.topic_prefix}{secrets.token_hex(3)}.",
    )


@pytest.fixture
def clean_db(stack: Stack) -> str:
    """The session database, emptied before the test."""
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE review_item, routing_decision, document, api_key, idempotency_record,"
                " imap_cursor RESTART IDENTITY CASCADE"
            )
        )
    engine.dispose()
    return stack.database_url
