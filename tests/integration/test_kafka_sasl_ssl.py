"""Triage on the local broker's SASL_SSL listener, configured as a user configures it.

The stack's broker listens with SASL over TLS beside PLAINTEXT (deploy/local/stack.sh):
``stack.sh env`` names the listener, the local CA that signed its certificate and the user
in TRIAGE_KAFKA_SASL_SSL_BOOTSTRAP, …_CA_FILE, …_USERNAME and …_PASSWORD, which ``./dev
test`` hands to the tests as TRIAGE_TEST_KAFKA_SASL_SSL_*. Every client here is set up
through the TRIAGE_KAFKA_* variables, the hostname check on: the topics made with
``triage topics apply``, one upload through ingest, the classifier and the router (in this
process, as in test_tracing_pipeline.py) to its routed topic, read back over SASL_SSL; and
the one-line answers of ``triage`` to a wrong password and to a CA that did not sign the
broker's certificate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.faults.harness import Services
from tests.helpers import new_api_key, self_signed_certificate
from tests.kafkatools import collect
from tests.stack import Stack, _local_stack_env
from triage_classifier.app import create_app as classifier_app
from triage_classifier.settings import Settings as ClassifierSettings
from triage_cli.exit_codes import UNREACHABLE
from triage_cli.main import app
from triage_contracts import topics
from triage_ingest.app import create_app as ingest_app
from triage_ingest.settings import Settings as IngestSettings
from triage_router.app import create_app as router_app
from triage_router.settings import Settings as RouterSettings
from triage_runtime.kafka_connection import KafkaConnection

WRONG_PASSWORD = "not-the-password"
LETTER = b"invoice payment overdue: please refund the charge, the amount due and the vat"


@dataclass(frozen=True)
class Listener:
    """The broker's SASL_SSL listener and the local user that may log in to it."""

    bootstrap: str
    ca_file: str
    username: str
    password: str

    def env(
        self,
        *,
        mechanism: str = "SCRAM-SHA-512",
        password: str | None = None,
        ca_file: str | Path | None = None,
    ) -> dict[str, str]:
        """The TRIAGE_KAFKA_* variables of a client of this listener."""
        return {
            "TRIAGE_KAFKA_BOOTSTRAP": self.bootstrap,
            "TRIAGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRIAGE_KAFKA_SSL_CA_FILE": str(ca_file or self.ca_file),
            "TRIAGE_KAFKA_SSL_CHECK_HOSTNAME": "true",
            "TRIAGE_KAFKA_SASL_MECHANISM": mechanism,
            "TRIAGE_KAFKA_SASL_USERNAME": self.username,
            "TRIAGE_KAFKA_SASL_PASSWORD": password or self.password,
        }


@pytest.fixture(scope="session")
def listener(stack: Stack) -> Listener:
    """The SASL_SSL listener the stack names; the tests are skipped on a stack without one."""
    names = ("BOOTSTRAP", "CA_FILE", "USERNAME", "PASSWORD")
    if os.environ.get("TRIAGE_TEST_KAFKA_BOOTSTRAP"):
        given = {name: os.environ.get(f"TRIAGE_TEST_KAFKA_SASL_SSL_{name}", "") for name in names}
    else:  # the stack fixture started the local stack: what its `env` prints
        local = _local_stack_env()
        given = {name: local.get(f"TRIAGE_KAFKA_SASL_SSL_{name}", "") for name in names}
    values = [given[name] for name in names]
    if not all(values):
        pytest.skip(
            "no SASL_SSL listener: set TRIAGE_TEST_KAFKA_SASL_SSL_BOOTSTRAP, _CA_FILE, "
            "_USERNAME and _PASSWORD from `deploy/local/stack.sh env` (./dev test does)"
        )
    return Listener(*values)


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _triage(*args: str) -> tuple[int, list[str]]:
    """Run ``triage ARGS`` as a user does; its exit status and non-empty output lines."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


def test_a_document_is_routed_over_sasl_ssl_with_scram_sha_512(
    listener: Listener,
    isolated: Stack,
    clean_db: str,
    small_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _use(monkeypatch, listener.env())
    monkeypatch.setenv("TRIAGE_TOPIC_PREFIX", isolated.topic_prefix)
    monkeypatch.setenv("TRIAGE_TOPICS_REPLICATION_FACTOR", "1")
    labels = json.loads((small_model / "metadata.json").read_text())["labels"]
    queues = [arg for label in labels for arg in ("--queue", label)]

    # The topics, made and checked by TopicAdmin over the same connection.
    code, lines = _triage("topics", "apply", "--no-registry", *queues)
    assert code == 0, lines
    code, lines = _triage("topics", "plan", "--no-registry", *queues, "--check")
    assert code == 0 and len(lines) == 1 and lines[0].startswith("no difference"), lines

    # The model routes nothing by itself (its thresholds are 1.0): billing at 0.9 and above.
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    code, lines = _triage(
        *("policy", "set", "--threshold", f"{small_model.name}:billing=0.9"),
        *("--reason", "route confident billing letters"),
    )
    assert code == 0, lines

    common: dict[str, Any] = {
        "database_url": clean_db,
        "blob_dir": tmp_path / "blobs",
        "topic_prefix": isolated.topic_prefix,
    }
    ingest = IngestSettings(**common)
    classifier = ClassifierSettings(**common, model_path=small_model, group_id="sasl-classifier")
    router = RouterSettings(**common, group_id="sasl-router")
    for settings in (ingest, classifier, router):  # read from the environment, as deployed
        assert settings.kafka_bootstrap == listener.bootstrap
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_ssl_check_hostname
    api_key = new_api_key(clean_db, "sasl-ssl")
    routed = isolated.topic(topics.routed_topic("billing"))

    with (
        TestClient(ingest_app(ingest)) as ingest_client,
        TestClient(classifier_app(classifier)) as classifier_client,
        TestClient(router_app(router)) as router_client,
    ):
        for client in (ingest_client, classifier_client, router_client):
            assert client.get("/readyz").json()["checks"]["kafka"] == "ok"
        response = ingest_client.post(
            "/v1/documents",
            files={"files": ("invoice.txt", LETTER, "text/plain")},
            headers={"X-API-Key": api_key},
        )
        assert response.status_code == 202, response.text
        [document] = response.json()["documents"]
        document_id = document["document_id"]
        records = asyncio.run(
            collect(
                KafkaConnection(),  # the same TRIAGE_KAFKA_* variables
                [routed],
                until=lambda messages: any(m["key"] == document_id for m in messages),
                timeout=90,
            )
        )

    [record] = [m for m in records if m["key"] == document_id]
    assert record["topic"] == routed
    assert record["value"]["document_id"] == document_id
    assert record["value"]["queue"] == "billing"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_wrong_password_is_one_line_naming_the_user_the_mechanism_and_the_settings(
    listener: Listener, mechanism: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use(monkeypatch, listener.env(mechanism=mechanism, password=WRONG_PASSWORD))
    code, lines = _triage("dlq", "list")
    assert code == UNREACHABLE, lines
    assert lines == [
        f"cannot reach Kafka at {listener.bootstrap} (TRIAGE_KAFKA_BOOTSTRAP): Kafka refused "
        f"the login of {listener.username!r} with {mechanism}: check "
        "TRIAGE_KAFKA_SASL_USERNAME and TRIAGE_KAFKA_SASL_PASSWORD"
    ]


def test_a_ca_that_did_not_sign_the_broker_certificate_is_one_line_naming_the_ca_setting(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_ca, _key = self_signed_certificate(tmp_path, "another-ca")
    _use(monkeypatch, listener.env(ca_file=other_ca))
    code, lines = _triage("topics", "plan", "--no-registry")
    assert code == UNREACHABLE, lines
    assert lines == [
        f"cannot reach Kafka at {listener.bootstrap} (TRIAGE_KAFKA_BOOTSTRAP): the Kafka "
        "broker's certificate is not trusted: check TRIAGE_KAFKA_SSL_CA_FILE and "
        "TRIAGE_KAFKA_SSL_CHECK_HOSTNAME"
    ]


def test_a_service_with_a_wrong_password_stays_up_not_ready_and_says_why(
    listener: Listener, isolated: Stack, clean_db: str, triage_bin: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **listener.env(password=WRONG_PASSWORD),
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_ROUTER_GROUP_ID": "sasl-refused-router",
    }
    services = Services(triage=triage_bin, env=env, work=tmp_path)
    service = services.start("router")
    process = service.process
    assert process is not None

    def warned() -> list[str]:
        return [
            line
            for line in services.log_tail("router", chars=200_000).splitlines()
            if "TRIAGE_KAFKA_SASL_PASSWORD" in line
        ]

    try:
        deadline = time.monotonic() + 30
        readyz: httpx.Response | None = None
        while time.monotonic() < deadline:
            assert process.poll() is None, f"router exited:\n{services.log_tail('router')}"
            try:
                readyz = httpx.get(service.url + "/readyz", timeout=2)
            except httpx.HTTPError:
                readyz = None
            if readyz is not None and warned():
                break
            time.sleep(0.25)
        assert readyz is not None, f"router never answered:\n{services.log_tail('router')}"
        assert readyz.status_code == 503, readyz.text
        assert "kafka" in readyz.json()["checks"]
        assert readyz.json()["checks"]["kafka"] != "ok", readyz.text
        assert httpx.get(service.url + "/healthz", timeout=2).status_code == 200
        # It keeps trying, and says so once, not once per attempt.
        time.sleep(3)
        assert process.poll() is None, f"router exited:\n{services.log_tail('router')}"
        [line] = warned()
        assert f"Kafka refused the login of {listener.username!r} with SCRAM-SHA-512" in line
    finally:
        services.stop_all()
