"""compose.yaml starts things in the right order, calls a service healthy only when its
/readyz says so, sets only variables something reads, and its local Kafka image reads the
official image's variables. deploy/compose/ci.sh runs it for real."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from tests.containers import COMPOSE, compose_service, read_compose
from tests.helpers import REPO_ROOT
from tests.unit.test_settings_documented import SETTINGS, env_names
from triage_classifier.settings import Settings as ClassifierSettings
from triage_ingest.settings import Settings as IngestSettings
from triage_review_ui.settings import Settings as ReviewUiSettings
from triage_router.settings import Settings as RouterSettings

KAFKA_RUN = REPO_ROOT / "deploy" / "compose" / "kafka" / "run.sh"
SERVICES: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "classifier": ClassifierSettings,
    "router": RouterSettings,
    "review-ui": ReviewUiSettings,
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml as compose reads it with no variable set."""
    return read_compose({})


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    return {name: spec["condition"] for name, spec in service["depends_on"].items()}


def test_jobs_and_services_start_in_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _conditions(services["migrate"]) == {"postgres": "service_healthy"}
    assert _conditions(services["bootstrap"]) == {
        "kafka": "service_healthy",
        "migrate": "service_completed_successfully",
    }
    for name in SERVICES:
        assert _conditions(services[name]) == {
            "kafka": "service_healthy",
            "postgres": "service_healthy",
            "bootstrap": "service_completed_successfully",
        }, name
    assert "healthcheck" in services["kafka"]
    assert "healthcheck" in services["postgres"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_a_service_is_healthy_when_ready(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    port = SERVICES[name]().port  # type: ignore[attr-defined]
    assert service["healthcheck"]["test"] == [
        "CMD",
        "triage-probe",
        f"http://127.0.0.1:{port}/readyz",
    ]
    published = service["ports"][0].rsplit(":", 1)[1]
    assert published == str(port)
    prefix = "TRIAGE_" + name.upper().replace("-", "_")
    assert service["environment"][f"{prefix}_HOST"] == "0.0.0.0"


def test_writable_state_is_in_the_shared_volume(compose: dict[str, Any]) -> None:
    for name in [*SERVICES, "bootstrap"]:
        assert "triage-data:/data" in compose["services"][name]["volumes"], name
        environment = compose["services"][name]["environment"]
        assert environment["TRIAGE_BLOB_DIR"].startswith("/data/")
        assert environment["TRIAGE_MODEL_STORE_URL"].startswith("/data/")
    assert compose["services"]["classifier"]["environment"]["TRIAGE_CLASSIFIER_MODEL_ALIAS"] == (
        "champion"
    )


def test_every_variable_set_is_read(compose: dict[str, Any]) -> None:
    read = set().union(*(env_names(settings) for settings in SETTINGS))
    bootstrap = (REPO_ROOT / "deploy" / "compose" / "bootstrap.sh").read_text()
    read |= set(re.findall(r"TRIAGE_[A-Z_]+", bootstrap))
    read.add("TRIAGE_TOPICS_REPLICATION_FACTOR")  # triage topics apply's --replication-factor
    for name, service in compose["services"].items():
        for variable in service.get("environment", {}):
            if variable.startswith("TRIAGE_"):
                assert variable in read, f"{name} sets {variable}, which nothing reads"


def test_the_infrastructure_images_can_be_replaced() -> None:
    text = COMPOSE.read_text()
    stack = (REPO_ROOT / "deploy" / "local" / "lib" / "common.sh").read_text()
    version = re.search(r"KAFKA_VERSION=\$\{TRIAGE_KAFKA_VERSION:-([0-9.]+)\}", stack)
    assert version, "deploy/local/lib/common.sh no longer says the Kafka version"
    assert f"${{TRIAGE_KAFKA_IMAGE:-docker.io/apache/kafka:{version[1]}}}" in text
    assert "${TRIAGE_POSTGRES_IMAGE:-docker.io/library/postgres:15}" in text
    containerfile = (REPO_ROOT / "deploy" / "compose" / "kafka" / "Containerfile").read_text()
    assert containerfile.count(f"ARG KAFKA_VERSION={version[1]}") == 2


def test_topics_are_not_made_on_first_use(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == (
        "false"
    )


def _kafka_properties(environment: dict[str, str]) -> list[str]:
    result = subprocess.run(
        ["bash", str(KAFKA_RUN), "--print-config"],
        env={"PATH": os.environ["PATH"], **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def test_the_local_kafka_image_reads_the_official_variables() -> None:
    assert _kafka_properties(
        {
            "KAFKA_NODE_ID": "1",
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
            "KAFKA_LISTENER_NAME_HOST_SOME__SETTING": "x",
            "KAFKA_CONFIG___WITH___DASHES": "y",
            "KAFKA_HEAP_OPTS": "-Xmx1g",
            "KAFKA_OPTS": "-Dsomething",
            "CLUSTER_ID": "abc",
        }
    ) == [
        "config-with-dashes=y",
        "listener.name.host.some_setting=x",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,HOST:PLAINTEXT",
        "node.id=1",
    ]


def test_compose_gives_the_local_kafka_a_whole_configuration(compose: dict[str, Any]) -> None:
    environment = {
        name: str(value) for name, value in compose["services"]["kafka"]["environment"].items()
    }
    properties = dict(line.split("=", 1) for line in _kafka_properties(environment))
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.quorum.voters"] == "1@localhost:9093"
    assert properties["log.dirs"] == "/var/lib/kafka/data"
    assert "heap.opts" not in properties


def test_the_tests_containers_get_compose_yamls_broker_on_the_port_they_are_given() -> None:
    """The containers mode (tests/containers.py) runs compose.yaml's kafka service: with the
    port it picked, the broker advertises 127.0.0.1:<port> and that port is published."""
    kafka = compose_service(
        "kafka",
        {"TRIAGE_COMPOSE_KAFKA_PORT": "31555", "TRIAGE_KAFKA_IMAGE": "localhost/k:1"},
    )
    assert kafka["image"] == "localhost/k:1"
    listeners = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "HOST://127.0.0.1:31555" in listeners
    assert kafka["ports"] == ["127.0.0.1:31555:19092"]
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert compose_service("postgres", {})["image"] == "docker.io/library/postgres:15"


def test_a_compose_variable_without_a_default_must_be_set(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  x:\n    image: ${NO_DEFAULT}\n")
    with pytest.raises(KeyError, match="NO_DEFAULT"):
        read_compose({}, compose)
    assert read_compose({"NO_DEFAULT": "i"}, compose)["services"]["x"]["image"] == "i"
