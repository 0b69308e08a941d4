"""Kafka and PostgreSQL for the tests as throwaway containers (testcontainers).

The broker and the database are the ones compose.yaml defines: the same images
(TRIAGE_KAFKA_IMAGE and TRIAGE_POSTGRES_IMAGE, with compose.yaml's defaults), the same
environment (a one-node KRaft broker with auto-create off, the ``triage`` user and database),
read from compose.yaml itself, so the two cannot drift apart. Only the host ports differ: each
is a free port picked when the containers start, bound on 127.0.0.1, and the broker
advertises ``127.0.0.1:<that port>`` (compose.yaml's HOST listener).

testcontainers talks to the engine through the Docker API socket (DOCKER_HOST; with podman,
``eval "$(deploy/containers/setup.sh env)"``). Its Kafka and PostgreSQL modules are not used:
they run Confluent's start script and ``psql`` inside the container, which the official images
and ours (deploy/compose/{kafka,postgres}/Containerfile) do not all have. Readiness is checked
from the host instead, as the tests will use the servers: an admin request to the broker and a
query to PostgreSQL.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from testcontainers.core.container import DockerContainer

from tests.helpers import REPO_ROOT, free_port, run_in_thread
from triage_runtime.kafka_connection import KafkaConnection

LABEL = "org.triage.tests"
"""Label on every container started here (value: ``containers``), to find leftovers."""

READY_TIMEOUT = 180.0
"""Seconds each container has to answer (a cold JVM on two busy cores takes ~30)."""

COMPOSE = REPO_ROOT / "compose.yaml"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Infrastructure:
    """Where the containers' Kafka and PostgreSQL answer, from the host."""

    kafka_bootstrap: str
    database_url: str
    kafka_container_id: str
    postgres_container_id: str


def read_compose(variables: Mapping[str, str], path: Path = COMPOSE) -> dict[str, Any]:
    """compose.yaml as compose reads it: ``${VAR}`` and ``${VAR:-default}`` (the forms it
    uses) filled in from ``variables``, a variable that is empty or not there taking the
    default."""

    def one(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if variables.get(name):
            return variables[name]
        if default is None:
            raise KeyError(f"compose.yaml needs {name}, which is not set")
        return default

    loaded: dict[str, Any] = yaml.safe_load(_VARIABLE.sub(one, path.read_text()))
    return loaded


def compose_service(name: str, variables: Mapping[str, str]) -> dict[str, Any]:
    """Service ``name`` of compose.yaml, its variables filled in from ``variables``."""
    service: dict[str, Any] = read_compose(variables)["services"][name]
    return service


def compose_database_url(variables: Mapping[str, str]) -> str:
    """The database URL compose.yaml gives its services (``x-triage-env``)."""
    return str(read_compose(variables)["x-triage-env"]["TRIAGE_DATABASE_URL"])


def _container(service: dict[str, Any], session: str) -> DockerContainer:
    """A container of a compose service: its image and environment, its published ports bound
    on 127.0.0.1 at the host ports compose.yaml names."""
    container = DockerContainer(service["image"]).with_kwargs(labels={LABEL: session})
    container.with_envs(**{key: str(value) for key, value in service["environment"].items()})
    for published in service.get("ports", []):
        address, host_port, container_port = str(published).split(":")
        # testcontainers' with_bind_ports binds every interface; the docker client takes an
        # (address, port) pair, as compose.yaml's 127.0.0.1 binding asks.
        container.ports[container_port] = (address, int(host_port))  # type: ignore[assignment]
    return container


def _log_tail(container: DockerContainer, lines: int = 40) -> str:
    try:
        stdout, stderr = container.get_logs()
    except Exception as exc:  # noqa: BLE001 - the container may be gone; say so instead
        return f"(no log: {exc})"
    text_ = (stdout + stderr).decode(errors="replace").rstrip().splitlines()
    return "\n".join(text_[-lines:])


def wait_until(
    container: DockerContainer, what: str, check: Callable[[], None], timeout: float
) -> None:
    """Call ``check`` until it returns without raising, for at most ``timeout`` seconds; fail
    at once if the container exits. The error names the last failure and ends with the
    container's last log lines."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
        else:
            return
        state = container.get_wrapped_container()
        state.reload()
        if state.status not in ("created", "running"):
            code = state.attrs.get("State", {}).get("ExitCode")
            reason = f"{what} exited ({state.status}, code {code})"
            break
        if time.monotonic() >= deadline:
            reason = f"{what} did not answer within {timeout:.0f} s"
            break
        time.sleep(1.0)
    raise RuntimeError(
        f"{reason} (image {container.image}); last error: {last!r}\n"
        f"--- last lines of its log ---\n{_log_tail(container)}"
    )


def kafka_answers(bootstrap: str) -> None:
    """One admin request (describe the cluster) to the broker; raises if it does not answer."""
    connection = KafkaConnection(kafka_bootstrap=bootstrap)

    async def describe() -> None:
        admin = AIOKafkaAdminClient(**connection.aiokafka_kwargs(), request_timeout_ms=5000)
        await admin.start()
        try:
            await admin.describe_cluster()
        finally:
            await admin.close()

    run_in_thread(describe())


def postgres_answers(database_url: str) -> None:
    """``SELECT 1`` on the database; raises if it does not answer."""
    engine = create_engine(database_url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()


@contextmanager
def infrastructure(
    environ: Mapping[str, str], session: str, timeout: float = READY_TIMEOUT
) -> Iterator[Infrastructure]:
    """Start compose.yaml's Kafka and PostgreSQL as containers, wait until both answer from the
    host, and remove them (with their volumes) on the way out, whatever happened."""
    variables = {
        **environ,
        "TRIAGE_COMPOSE_KAFKA_PORT": str(free_port()),
        "TRIAGE_COMPOSE_POSTGRES_PORT": str(free_port()),
    }
    kafka = _container(compose_service("kafka", variables), session)
    postgres = _container(compose_service("postgres", variables), session)
    bootstrap = f"127.0.0.1:{variables['TRIAGE_COMPOSE_KAFKA_PORT']}"
    database_url = (
        make_url(compose_database_url(variables))
        .set(host="127.0.0.1", port=int(variables["TRIAGE_COMPOSE_POSTGRES_PORT"]))
        .render_as_string(hide_password=False)
    )
    with ExitStack() as cleanup:
        for container in (kafka, postgres):
            cleanup.callback(_remove, container)
            container.start()
        wait_until(postgres, "PostgreSQL", lambda: postgres_answers(database_url), timeout)
        wait_until(kafka, "Kafka", lambda: kafka_answers(bootstrap), timeout)
        yield Infrastructure(
            kafka_bootstrap=bootstrap,
            database_url=database_url,
            kafka_container_id=kafka.get_wrapped_container().id,
            postgres_container_id=postgres.get_wrapped_container().id,
        )


def _remove(container: DockerContainer) -> None:
    """Remove the container and its anonymous volumes, if it was made."""
    # testcontainers has no public "was it made" (start() may fail before it is).
    if container._container is not None:
        container.stop(force=True, delete_volume=True)
