"""TRIAGE_TEST_CONTAINERS really puts the tests on containers: the session's broker and
database are the containers' published ports, the broker is configured as compose.yaml says
(auto-create off), and a container that does not come up fails the start with its log and is
removed. The pipeline tests run the same way (tests/containers.sh)."""

from __future__ import annotations

import os
import secrets

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from sqlalchemy.engine import make_url
from testcontainers.core.docker_client import DockerClient

from tests.containers import LABEL, compose_service, infrastructure
from tests.stack import Stack, containers_mode
from triage_runtime.kafka_connection import KafkaConnection

pytestmark = pytest.mark.skipif(
    not containers_mode(), reason="containers mode only (TRIAGE_TEST_CONTAINERS=1)"
)


def _published_port(container_id: str, container_port: str) -> tuple[str, int]:
    """The host address and port the engine publishes ``container_port`` of a container on."""
    container = DockerClient().client.containers.get(container_id)
    assert container.status == "running", container.status
    assert container.labels.get(LABEL), container.labels
    binding = container.attrs["NetworkSettings"]["Ports"][f"{container_port}/tcp"][0]
    return binding["HostIp"], int(binding["HostPort"])


def test_the_session_stack_is_the_containers_published_ports(stack: Stack) -> None:
    assert stack.containers is not None
    host, port = _published_port(stack.containers.kafka_container_id, "19092")
    assert stack.kafka_bootstrap == f"{host}:{port}"
    assert host == "127.0.0.1"
    url = make_url(stack.database_url)
    assert (url.host, url.port) == _published_port(stack.containers.postgres_container_id, "5432")


async def test_the_container_broker_does_not_create_topics_on_first_use(stack: Stack) -> None:
    admin = AIOKafkaAdminClient(
        **KafkaConnection(kafka_bootstrap=stack.kafka_bootstrap).aiokafka_kwargs()
    )
    await admin.start()
    try:
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.BROKER, "1", {"auto.create.topics.enable": None})]
        )
    finally:
        await admin.close()
    ((_, _, _, _, configs),) = response.resources
    assert [(name, value) for name, value, *_ in configs] == [
        ("auto.create.topics.enable", "false")
    ]


def test_a_broker_that_does_not_start_fails_with_its_log_and_nothing_is_left() -> None:
    session = f"failing-{secrets.token_hex(4)}"
    # An image that is no broker: the PostgreSQL image, which exits at once without a password.
    postgres_image = compose_service("postgres", os.environ)["image"]
    environ = {**os.environ, "TRIAGE_KAFKA_IMAGE": postgres_image}
    with (
        pytest.raises(RuntimeError, match=r"Kafka exited \(exited, code [1-9]") as failure,
        infrastructure(environ, session=session, timeout=120),
    ):
        pytest.fail("a PostgreSQL image answered as a broker")
    assert "--- last lines of its log ---\n" in str(failure.value)
    assert "POSTGRES_PASSWORD is not set" in str(failure.value)
    left = DockerClient().client.containers.list(all=True, filters={"label": f"{LABEL}={session}"})
    assert left == []


def test_the_containers_are_removed_when_the_block_ends() -> None:
    session = f"block-{secrets.token_hex(4)}"
    client = DockerClient().client
    with infrastructure(os.environ, session=session) as infra:
        ids = {infra.kafka_container_id, infra.postgres_container_id}
        volumes = {
            mount["Name"]
            for container_id in ids
            for mount in client.containers.get(container_id).attrs["Mounts"]
            if mount.get("Name")
        }
        assert len(volumes) == 2
    left = client.containers.list(all=True, filters={"label": f"{LABEL}={session}"})
    assert left == []
    assert not volumes & {volume.name for volume in client.volumes.list()}
