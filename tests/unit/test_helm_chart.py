"""The Helm chart (deploy/helm/triage) held to the code it deploys.

Each test renders the chart with the real ``helm template`` (built by deploy/helm/check.sh
into the tools cache) from the values files CI checks, and reads the manifests:
every variable a service is given is one its settings read and the combination starts it;
secrets arrive only by reference; the probes, ports, KEDA topic and consumer group are the
services' own; a missing or inconsistent value stops the install with one clear line.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from triage_classifier.settings import Settings as ClassifierSettings
from triage_contracts import topics
from triage_ingest.settings import Settings as IngestSettings
from triage_review_ui.settings import Settings as ReviewSettings
from triage_router.settings import Settings as RouterSettings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "triage"
VALUES = ROOT / "deploy" / "helm" / "check-values"
CHECKED = sorted(VALUES.glob("*.yaml"))
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "classifier": ClassifierSettings,
    "router": RouterSettings,
    "review-ui": ReviewSettings,
}
TLS_DIR = "/etc/triage/kafka-tls"
Manifest = dict[str, Any]


@functools.cache
def helm() -> str:
    """The helm that deploy/helm/check.sh builds (it builds it on the first call, once per
    machine, and prints where it is)."""
    done = subprocess.run(
        [str(ROOT / "deploy" / "helm" / "check.sh"), "--print-helm"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"deploy/helm/check.sh --print-helm failed: {done.stderr.strip()}")
    return done.stdout.strip()


def render(*values: Path, sets: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run ``helm template`` on the chart with these values files and --set options."""
    command = [helm(), "template", "triage", str(CHART), "--namespace", "triage"]
    for path in values:
        command += ["-f", str(path)]
    for option in sets:
        command += ["--set", option]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def manifests(values: Path) -> list[Manifest]:
    """The manifests the chart renders with one checked values file."""
    done = render(values)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The one manifest of this kind and name."""
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} named {name}"
    return found[0]


def container(docs: list[Manifest], service: str) -> Manifest:
    """The service's container in its Deployment."""
    deployment = one(docs, "Deployment", f"triage-{service}")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def variable(settings: type[BaseSettings], name: str) -> str:
    """The environment variable a settings field is read from."""
    alias = settings.model_fields[name].validation_alias
    prefix = settings.model_config.get("env_prefix", "")
    return alias if isinstance(alias, str) else f"{prefix}{name}".upper()


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable a settings class reads."""
    return {variable(settings, name) for name in settings.model_fields}


def secret_names(settings: type[BaseSettings]) -> set[str]:
    """The variables of a settings class that hold secrets: its SecretStr fields, the database
    URL (with its password) and the IMAP accounts (with theirs)."""
    names = {"TRIAGE_DATABASE_URL", "TRIAGE_INGEST_IMAP_ACCOUNTS"}
    for name, field in settings.model_fields.items():
        if SecretStr in getattr(field.annotation, "__args__", ()):
            names.add(variable(settings, name))
    return names


@pytest.fixture(params=CHECKED, ids=lambda path: path.stem)
def checked(request: pytest.FixtureRequest) -> list[Manifest]:
    """The manifests of each values file deploy/helm/check.sh checks."""
    path = request.param
    assert isinstance(path, Path)
    return manifests(path)


def test_the_checked_configurations_exist() -> None:
    assert {path.stem for path in CHECKED} >= {"minimal", "secured", "no-keda"}


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_every_variable_is_one_the_service_reads(checked: list[Manifest], service: str) -> None:
    given = {entry["name"] for entry in container(checked, service)["env"]}
    unknown = given - env_names(SETTINGS[service])
    assert not unknown, f"{service} does not read {sorted(unknown)}"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_secrets_come_only_by_reference(checked: list[Manifest], service: str) -> None:
    for entry in container(checked, service)["env"]:
        if entry["name"] in secret_names(SETTINGS[service]):
            assert "value" not in entry, f"{entry['name']} has a value in the chart"
            assert set(entry["valueFrom"]) == {"secretKeyRef"}
    assert not [d for d in checked if d["kind"] == "Secret"], "the chart makes no Secret"


def put_env(env: list[Mapping[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Put a rendered container's environment in this process: each secret reference gets a
    stand-in value, and the mounted TLS files are made under tmp_path."""
    for name in [name for name in os.environ if name.startswith("TRIAGE_")]:
        monkeypatch.delenv(name)
    for entry in env:
        if "value" in entry:
            value = str(entry["value"])
            if value.startswith(TLS_DIR):
                file = tmp_path / Path(value).name
                file.write_text("PEM\n")
                value = str(file)
        elif entry["name"] == "TRIAGE_DATABASE_URL":
            value = "postgresql+psycopg://triage:secret@db.example:5432/triage"
        elif entry["name"] == "TRIAGE_INGEST_IMAP_ACCOUNTS":
            value = "[]"
        else:
            value = "a-secret"
        monkeypatch.setenv(entry["name"], value)


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_each_service_starts_with_what_it_is_given(
    checked: list[Manifest], service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = container(checked, service)
    put_env(spec["env"], tmp_path, monkeypatch)
    settings = SETTINGS[service]()  # raises ValidationError as the service would at start
    assert spec["command"][0] == f"triage-{service}"
    port = spec["command"][spec["command"].index("--port") + 1]
    assert int(port) == settings.model_dump()["port"], "the chart's port is the service's own"


@pytest.mark.parametrize("service", sorted(SETTINGS))
def test_probes_ports_and_budgets(checked: list[Manifest], service: str) -> None:
    spec = container(checked, service)
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service_ports = one(checked, "Service", f"triage-{service}")["spec"]["ports"]
    assert service_ports[0]["targetPort"] == "http"
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports["http"] == service_ports[0]["port"]
    budget = one(checked, "PodDisruptionBudget", f"triage-{service}")
    assert budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == service


def scaler(docs: list[Manifest]) -> Mapping[str, Any]:
    """The classifier's KEDA trigger."""
    (trigger,) = one(docs, "ScaledObject", "triage-classifier")["spec"]["triggers"]
    assert isinstance(trigger, dict)
    return trigger


def test_keda_scales_the_classifier_on_its_own_group_and_topic() -> None:
    docs = manifests(VALUES / "minimal.yaml")
    trigger = scaler(docs)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == topics.DOCUMENTS
    assert trigger["metadata"]["consumerGroup"] == topics.CLASSIFIER_GROUP
    assert trigger["metadata"]["consumerGroup"] == ClassifierSettings().group_id
    scaled = one(docs, "ScaledObject", "triage-classifier")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "triage-classifier"
    deployment = one(docs, "Deployment", "triage-classifier")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    assert "authenticationRef" not in trigger


def test_keda_follows_the_prefix_group_and_login_the_classifier_uses() -> None:
    docs = manifests(VALUES / "secured.yaml")
    env = {e["name"]: e for e in container(docs, "classifier")["env"]}
    trigger = scaler(docs)
    prefix = env["TRIAGE_TOPIC_PREFIX"]["value"]
    assert trigger["metadata"]["topic"] == f"{prefix}{topics.DOCUMENTS}"
    assert trigger["metadata"]["consumerGroup"] == env["TRIAGE_CLASSIFIER_GROUP_ID"]["value"]
    assert trigger["metadata"]["bootstrapServers"] == env["TRIAGE_KAFKA_BOOTSTRAP"]["value"]
    assert env["TRIAGE_KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"
    auth = one(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    password = env["TRIAGE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    refs = {ref["parameter"]: ref for ref in auth["secretTargetRef"]}
    assert {"name": refs["password"]["name"], "key": refs["password"]["key"]} == password
    assert set(refs) == {"password", "ca", "cert", "key", "keyPassword"}
    username = {"parameter": "username", "name": "TRIAGE_KAFKA_SASL_USERNAME"}
    assert auth["env"] == [username | {"containerName": "classifier"}]


def test_without_keda_the_classifier_has_fixed_replicas() -> None:
    docs = manifests(VALUES / "no-keda.yaml")
    assert not [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    assert one(docs, "Deployment", "triage-classifier")["spec"]["replicas"] == 3
    assert not [d for d in docs if d["kind"] in {"NetworkPolicy", "Job"}]


def ports_of(rules: list[Mapping[str, Any]]) -> set[int | str]:
    """Every port some rule names."""
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


def test_network_policies_let_each_service_reach_only_what_it_needs() -> None:
    docs = manifests(VALUES / "secured.yaml")
    policy = {
        name: one(docs, "NetworkPolicy", f"triage-{name}")["spec"]
        for name in [*SETTINGS, "migrations"]
    }
    # Kafka on 9096 (as configured), PostgreSQL, DNS everywhere; S3 only where documents are read.
    for name in SETTINGS:
        assert {53, 9096, 5432} <= ports_of(policy[name]["egress"])
    assert 443 not in ports_of(policy["router"]["egress"])
    assert 443 in ports_of(policy["classifier"]["egress"])
    assert 993 in ports_of(policy["ingest"]["egress"]), "the IMAP egress given to ingest"
    assert 993 not in ports_of(policy["review-ui"]["egress"])
    assert ports_of(policy["migrations"]["egress"]) == {53, 5432}
    assert policy["migrations"]["ingress"] == []
    # Every ingress rule names its peers: nobody but the scrapers reaches the router.
    for name in SETTINGS:
        assert all(rule.get("from") for rule in policy[name]["ingress"]), name
    (router_in,) = policy["router"]["ingress"]
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert router_in["from"] == [{"namespaceSelector": {"matchLabels": monitoring}}]
    assert ports_of(policy["ingest"]["ingress"]) == {"http", "smtp"}


def test_the_migrations_run_before_the_services_as_a_hook() -> None:
    docs = manifests(VALUES / "minimal.yaml")
    job = one(docs, "Job", "triage-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (spec,) = job["spec"]["template"]["spec"]["containers"]
    assert spec["command"] == ["triage", "db", "upgrade"]
    assert [e["name"] for e in spec["env"]] == ["TRIAGE_DATABASE_URL"]


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.bootstrap=",), "kafka.bootstrap is required"),
        (("database.existingSecret=",), "database.existingSecret is required"),
        (("modelStore.url=",), "modelStore.url is required"),
        (
            ("kafka.securityProtocol=SASL_SSL",),
            "kafka.securityProtocol SASL_SSL needs kafka.sasl.mechanism",
        ),
        (
            ("kafka.tls.existingSecret=ca",),
            "kafka.tls.existingSecret is set but kafka.securityProtocol PLAINTEXT",
        ),
        # values.schema.json: a protocol Triage does not speak, a misspelt key.
        (("kafka.securityProtocol=TLS",), "at '/kafka/securityProtocol': value must be one of"),
        (("kafka.bootstrapp=kafka:9092",), "additional properties 'bootstrapp' not allowed"),
    ],
)
def test_a_missing_or_inconsistent_value_stops_the_install(
    sets: tuple[str, ...], message: str
) -> None:
    done = render(VALUES / "minimal.yaml", sets=sets)
    assert done.returncode != 0
    assert message in done.stderr
