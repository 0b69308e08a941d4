"""Bad paths and unreachable servers end ``triage`` commands in one line, never a traceback.

Run through the real CLI; the servers are "unreachable" for real: the unit tier points
TRIAGE_DATABASE_URL and TRIAGE_KAFKA_BOOTSTRAP at a closed local port (tests/unit/conftest.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import refusing_tls_server
from triage_cli.exit_codes import UNREACHABLE, USAGE
from triage_cli.main import app

SECRET = "s3cret-pw"


def _run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    root = tmp_path / "golden"
    for label, text in {"billing": "refund the invoice", "technical": "the api is down"}.items():
        (root / label).mkdir(parents=True)
        (root / label / "a.txt").write_text(text)
    return root


@pytest.mark.parametrize(
    "command",
    [
        ["model", "eval", "--golden", "{golden}"],
        ["batch", "score", "--input", "{golden}", "--output", "{tmp}/out.csv"],
        ["model", "promote", "{model}", "--golden", "{golden}"],
    ],
    ids=["eval", "batch", "promote"],
)
@pytest.mark.parametrize("reference", ["./nope", "models/nope", "{tmp}/a-file"])
def test_a_model_path_that_is_no_directory_is_refused_before_the_registry(
    command: list[str], reference: str, golden: Path, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a model")
    model = reference.format(tmp=tmp_path)
    args = [a.format(golden=golden, tmp=tmp_path, model=model) for a in command]
    if "{model}" not in command:
        args += ["--model", model]
    code, lines = _run(*args)
    assert code == 2, lines
    assert lines[-1] == f"no such model directory: {model}"
    assert not any("database" in line or "Traceback" in line for line in lines)


@pytest.mark.parametrize(
    "command",
    [
        ["model", "list"],
        ["model", "eval", "--golden", "{golden}", "--model", "champion"],
        ["model", "history", "champion"],
        ["policy", "show"],
        ["apikey", "list"],
        ["user", "list"],
        ["db", "upgrade"],
        ["retention", "run"],
        ["topics", "plan"],
        ["batch", "score", "--topic-range", "1h", "--output", "{tmp}/o.csv", "--model", "v1"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_unreachable_database_is_one_line_naming_where_without_the_password(
    command: list[str], golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"postgresql+psycopg://me:{SECRET}@127.0.0.1:1/db")
    code, lines = _run(*(a.format(golden=golden, tmp=tmp_path) for a in command))
    assert code == UNREACHABLE, lines
    assert lines[-1].startswith("cannot reach the database at 127.0.0.1:1 (TRIAGE_DATABASE_URL)")
    assert "refused" in lines[-1].lower()
    assert not any(SECRET in line or "Traceback" in line for line in lines), lines


@pytest.mark.parametrize(
    "command",
    [
        ["dlq", "list"],
        ["dlq", "redrive", "0:1"],
        ["canary", "report", "--since", "1h"],
        ["shadow", "report", "--since", "1h"],
        ["topics", "plan", "--no-registry"],
        ["topics", "apply", "--queue", "billing", "--no-registry"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_an_unreachable_kafka_is_one_line_naming_the_bootstrap(command: list[str]) -> None:
    code, lines = _run(*command)
    assert code == UNREACHABLE, lines
    assert lines == ["cannot reach Kafka at 127.0.0.1:1 (TRIAGE_KAFKA_BOOTSTRAP)"]


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["model", "eval", "--model", "x", "--golden", "{missing}"], "--golden"),
        (["model", "train", "--data", "{missing}", "--out", "{tmp}/m"], "--data"),
        (["batch", "score", "--input", "{missing}", "--output", "{tmp}/o.csv"], "--input"),
        (["model", "promote", "v1", "--golden", "{missing}"], "--golden"),
    ],
    ids=["eval", "train", "batch", "promote"],
)
def test_a_missing_data_path_is_one_line(command: list[str], option: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    code, lines = _run(*(a.format(missing=missing, tmp=tmp_path) for a in command))
    assert code == 2
    assert lines == [f"error: Invalid value for '{option}': path '{missing}' does not exist."]


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[str]:
    """A local TLS server (not Kafka) with a self-signed certificate; yields its host:port."""
    with refusing_tls_server(tmp_path) as where:
        yield where


def test_an_untrusted_kafka_certificate_is_one_line_naming_the_ca_setting(
    tls_listener: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", tls_listener)
    monkeypatch.setenv("TRIAGE_KAFKA_SECURITY_PROTOCOL", "SSL")
    code, lines = _run("dlq", "list")
    assert code == UNREACHABLE, lines
    assert lines == [
        f"cannot reach Kafka at {tls_listener} (TRIAGE_KAFKA_BOOTSTRAP): the Kafka broker's "
        "certificate is not trusted: check TRIAGE_KAFKA_SSL_CA_FILE and "
        "TRIAGE_KAFKA_SSL_CHECK_HOSTNAME"
    ]


def test_a_queue_no_topic_can_carry_is_one_line_before_kafka_is_asked() -> None:
    code, lines = _run("topics", "plan", "--queue", "Bad Queue")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: Invalid value for --queue: queue name")


def test_invalid_settings_are_one_line_each_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_SECURITY_PROTOCOL", "TLS")
    monkeypatch.setenv("TRIAGE_LAG_INTERVAL_SECONDS", SECRET)
    code, lines = _run("dlq", "list")
    assert code == USAGE
    assert lines == [
        "error: TRIAGE_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', "
        "'SASL_PLAINTEXT' or 'SASL_SSL'",
        "error: TRIAGE_LAG_INTERVAL_SECONDS: Input should be a valid number, unable to parse "
        "string as a number",
    ]


def test_settings_that_contradict_each_other_are_one_line_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    code, lines = _run("dlq", "list")
    assert code == USAGE
    assert lines == [
        "error: TRIAGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TRIAGE_KAFKA_SASL_MECHANISM, "
        "TRIAGE_KAFKA_SASL_USERNAME and TRIAGE_KAFKA_SASL_PASSWORD"
    ]


@pytest.mark.parametrize("kind", ["embed-lr", "tfidf-embed-lr"])
def test_an_embedding_kind_without_the_embeddings_extra_is_refused_in_one_line(
    kind: str, golden: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in the CLI image, which installs triage-cli without its embeddings extra.
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    code, lines = _run(
        "model", "train", "--data", str(golden), "--kind", kind, "--out", str(tmp_path / "m")
    )
    assert code == USAGE
    assert lines == [
        f"{kind} needs the embeddings extra (sentence-transformers, torch), which is not "
        "installed here: install triage-cli[embeddings], or train tfidf-lr"
    ]
    assert not (tmp_path / "m").exists()
