"""Fault tests start the services as processes on the real stack and break things under load.

Every test here gets the ``faults`` marker (``pytest -m faults tests/faults``). The broker
restart and crash and the database stop and crash act on the servers of the stack the tests
were given, through ``deploy/local/stack.sh stop-server`` / ``crash-server`` /
``start-server`` with the same TRIAGE_STACK_DIR and ports, so run them only against a stack
that nobody else is using at that moment.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import Pool

from tests.faults.harness import (
    SUMMARIES,
    FaultLog,
    FaultRun,
    Ledger,
    Services,
    StackControl,
    create_topics,
    document_count,
    make_documents,
    seeded_rng,
)
from tests.helpers import REPO_ROOT
from tests.stack import Stack, require_imap, require_s3
from triage_contracts import topics


class MakeRun(Protocol):
    """Builds a fault run named ``name`` with ``documents`` documents to stream."""

    def __call__(self, name: str, *, documents: int | None = None) -> Awaitable[FaultRun]:
        """Build the run (topics created, nothing started)."""
        ...


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``faults`` marker (the suite runs with --strict-markers)."""
    config.addinivalue_line(
        "markers",
        "faults: injects faults (kill -9, broker restart and crash, database stop and crash,"
        " rebalance)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/faults/ with ``faults``."""
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print one line per fault test: what was sent, what became of it, how long it took."""
    if SUMMARIES:
        terminalreporter.section("fault tests")
        for line in SUMMARIES:
            terminalreporter.write_line(line)


def _ping_on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection that died with a PostgreSQL restart; the pool replaces it."""
    try:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT 1")
        cursor.close()
    except Exception as exc:  # any failure means: this connection is gone
        raise DisconnectionError from exc


@pytest.fixture(scope="session", autouse=True)
def pools_survive_postgres_restarts() -> Iterator[None]:
    """Every SQLAlchemy pool in this process checks a connection before handing it out.

    The PostgreSQL test restarts the server, which ends every open connection, among them
    the one the session's ``stack`` fixture keeps in its pool (its engine has no
    ``pool_pre_ping``) to drop the test database at the end. Set up before ``stack``, so
    torn down after it.
    """
    event.listen(Pool, "checkout", _ping_on_checkout)
    yield
    event.remove(Pool, "checkout", _ping_on_checkout)


@pytest.fixture(scope="session")
def fault_model(triage_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once on the shipped sample data (``triage model train``)."""
    out = tmp_path_factory.mktemp("fault-models")
    # One BLAS thread: on a busy two-core machine, OpenBLAS threads fighting over the cores
    # make this 5-second training take minutes.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    trained = subprocess.run(
        [
            triage_bin,
            "model",
            "train",
            "--data",
            str(REPO_ROOT / "data/sample/train"),
            "--out",
            str(out),
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Path(trained.stdout.strip().splitlines()[-1])


def _port(url: str) -> str:
    port = urlsplit(url if "//" in url else f"//{url}").port
    assert port, f"no port in {url}"
    return str(port)


@pytest.fixture(scope="session")
def stack_control(stack: Stack) -> StackControl:
    """``stack.sh`` aimed at the servers the tests use: same stack dir, same ports."""
    if stack.containers is not None:
        pytest.skip("the fault tests stop and start the local stack's servers (stack.sh)")
    imap, s3 = require_imap(stack), require_s3(stack)
    env = {
        **os.environ,
        "TRIAGE_KAFKA_PORT": _port(stack.kafka_bootstrap.split(",")[0]),
        "TRIAGE_PG_PORT": str(make_url(stack.database_url).port),
        "TRIAGE_IMAP_PORT": str(imap.port),
        "TRIAGE_IMAPS_PORT": str(imap.imaps_port),
        "TRIAGE_S3_PORT": _port(s3.endpoint_url),
    }
    return StackControl(env)


@pytest.fixture
async def make_run(
    stack: Stack,
    clean_db: str,
    fault_model: Path,
    triage_bin: str,
    stack_control: StackControl,
    tmp_path: Path,
) -> AsyncIterator[MakeRun]:
    """Build a fault run: fresh database tables, topics of its own, services not yet started."""
    made: list[FaultRun] = []
    queues = tuple(json.loads((fault_model / "metadata.json").read_text())["labels"])

    async def make(name: str, *, documents: int | None = None) -> FaultRun:
        prefix = f"{stack.topic_prefix}faults.{name}.{secrets.token_hex(2)}."
        env = {
            **os.environ,
            "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "TRIAGE_DATABASE_URL": clean_db,
            "TRIAGE_TOPIC_PREFIX": prefix,
            "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
            "TRIAGE_CLASSIFIER_MODEL_PATH": str(fault_model),
            "TRIAGE_CLASSIFIER_GROUP_ID": f"faults-{name}-classifier",
            "TRIAGE_ROUTER_GROUP_ID": f"faults-{name}-router",
            "TRIAGE_INGEST_UPLOADS_PER_MINUTE_PER_KEY": "0",
            "TRIAGE_LOG_LEVEL": "INFO",
        }
        env.pop("TRIAGE_BLOB_URL", None)
        env.pop("TRIAGE_CLASSIFIER_MODEL_ALIAS", None)
        await create_topics(
            stack.kafka_bootstrap,
            [
                prefix + t
                for t in (
                    topics.DOCUMENTS,
                    topics.DOCUMENTS_RETRY,
                    topics.CLASSIFIED,
                    topics.DEADLETTER,
                    *(topics.routed_topic(q) for q in queues),
                )
            ],
        )
        seed, rng = seeded_rng(name)
        count = document_count() if documents is None else documents
        docs = make_documents(count, f"{name}-{secrets.token_hex(3)}")
        run = FaultRun(
            name=name,
            bootstrap=stack.kafka_bootstrap,
            database_url=clean_db,
            prefix=prefix,
            blob_dir=tmp_path / "blobs",
            queues=queues,
            services=Services(triage=triage_bin, env=env, work=tmp_path),
            control=stack_control,
            docs=docs,
            rng=rng,
            ledger=Ledger(total=len(docs)),
            faults=FaultLog(seed=seed),
        )
        given = "from TRIAGE_FAULT_SEED" if "TRIAGE_FAULT_SEED" in os.environ else "default"
        print(f"\n{name}: seed {seed} ({given}), {len(docs)} documents")
        made.append(run)
        return run

    yield make
    for run in made:
        run.services.stop_all()
