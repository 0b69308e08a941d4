"""The Kafka connection settings: validation, and what every client is given (TLS, SASL)."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError
from pydantic import ValidationError

from tests.helpers import self_signed_certificate
from triage_runtime.kafka import make_broker
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.settings import CommonSettings

SASL_KEYS = ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password")


@pytest.fixture(autouse=True)
def _no_kafka_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test says its own Kafka settings; none leak in from the shell."""
    for name in KafkaConnection.model_fields:
        monkeypatch.delenv(f"TRIAGE_{name.upper()}", raising=False)


def _connection(**values: Any) -> KafkaConnection:
    return KafkaConnection.model_validate({"kafka_bootstrap": "kafka-1:9093", **values})


def test_plaintext_by_default_gives_no_tls_and_no_sasl() -> None:
    connection = KafkaConnection()
    assert connection.aiokafka_kwargs() == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "PLAINTEXT",
    }
    assert connection.faststream_security() is None
    assert connection.kafka_ssl_context is None


def test_every_service_reads_sasl_ssl_with_scram_512_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, _ = self_signed_certificate(tmp_path, "ca")
    for name, value in {
        "TRIAGE_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093",
        "TRIAGE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "TRIAGE_KAFKA_SSL_CA_FILE": str(ca),
        "TRIAGE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "TRIAGE_KAFKA_SASL_USERNAME": "triage-classifier",
        "TRIAGE_KAFKA_SASL_PASSWORD": "s3cret-scram",
    }.items():
        monkeypatch.setenv(name, value)
    settings = CommonSettings()

    kwargs = settings.aiokafka_kwargs()
    context = kwargs.pop("ssl_context")
    assert kwargs == {
        "bootstrap_servers": "kafka-1:9093,kafka-2:9093",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "triage-classifier",
        "sasl_plain_password": "s3cret-scram",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "127.0.0.1"),),)]
    # The secret stays out of reprs and logs of the settings.
    assert "s3cret-scram" not in repr(settings) and "s3cret-scram" not in str(settings)


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("PLAINTEXT", None),
        ("SSL", None),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
def test_the_broker_gets_the_same_arguments_as_every_other_client(
    protocol: str, mechanism: str | None
) -> None:
    sasl = (
        {"kafka_sasl_mechanism": mechanism, "kafka_sasl_username": "u", "kafka_sasl_password": "p"}
        if mechanism
        else {}
    )
    connection = _connection(kafka_security_protocol=protocol, **sasl)
    expected = connection.aiokafka_kwargs()
    expected.pop("bootstrap_servers")
    # What FastStream hands its aiokafka clients when make_broker builds the broker.
    builder = make_broker(connection, client_id="t").config.broker_config.builder
    assert isinstance(builder, functools.partial)
    built = builder.keywords
    assert built["bootstrap_servers"] == ["kafka-1:9093"]
    built = {"security_protocol": "PLAINTEXT", **built}  # aiokafka's default when not given
    given = {k: built.get(k) for k in expected}
    assert given == expected
    if mechanism is None:
        assert all(built.get(k) is None for k in SASL_KEYS)
    if protocol in ("SSL", "SASL_SSL"):
        assert isinstance(built["ssl_context"], ssl.SSLContext)


def test_mutual_tls_loads_the_client_certificate_and_may_skip_the_hostname_check(
    tmp_path: Path,
) -> None:
    ca, _ = self_signed_certificate(tmp_path, "ca")
    cert, key = self_signed_certificate(tmp_path, "client")
    connection = _connection(
        kafka_security_protocol="SSL",
        kafka_ssl_ca_file=ca,
        kafka_ssl_cert_file=cert,
        kafka_ssl_key_file=key,
        kafka_ssl_check_hostname=False,
    )
    context = connection.aiokafka_kwargs()["ssl_context"]
    assert context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED  # the chain is still verified
    assert context is connection.kafka_ssl_context  # built once, shared by every client


def test_a_key_that_is_not_a_key_fails_when_the_context_is_built(tmp_path: Path) -> None:
    cert, _ = self_signed_certificate(tmp_path, "client")
    not_a_key = tmp_path / "client.key"
    not_a_key.write_text("not a key\n")
    connection = _connection(
        kafka_security_protocol="SSL", kafka_ssl_cert_file=cert, kafka_ssl_key_file=not_a_key
    )
    with pytest.raises(ssl.SSLError):
        connection.aiokafka_kwargs()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"},
            "TRIAGE_KAFKA_SECURITY_PROTOCOL=SASL_SSL needs TRIAGE_KAFKA_SASL_MECHANISM, "
            "TRIAGE_KAFKA_SASL_USERNAME and TRIAGE_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_sasl_username": "u"},
            "TRIAGE_KAFKA_SASL_USERNAME set but TRIAGE_KAFKA_SECURITY_PROTOCOL=SSL: use SASL_SSL",
        ),
        (
            {"kafka_sasl_password": "p"},
            "TRIAGE_KAFKA_SASL_PASSWORD set but TRIAGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_password": "p"},
            "TRIAGE_KAFKA_SSL_KEY_PASSWORD is set without TRIAGE_KAFKA_SSL_KEY_FILE",
        ),
        ({"kafka_security_protocol": "SASL_TLS"}, "'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or"),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "GSSAPI",
                "kafka_sasl_username": "u",
                "kafka_sasl_password": "p",
            },
            "'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'",
        ),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/nowhere/ca.pem"}, "file"),
    ],
)
def test_inconsistent_settings_are_refused_with_what_to_change(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        _connection(**values)
    assert message in str(refused.value)


def test_tls_files_without_tls_and_a_certificate_without_its_key_are_refused(
    tmp_path: Path,
) -> None:
    cert, _ = self_signed_certificate(tmp_path, "client")
    with pytest.raises(ValidationError, match="use SSL or SASL_SSL to connect over TLS"):
        _connection(kafka_ssl_ca_file=cert)
    with pytest.raises(ValidationError, match="a client certificate needs its key"):
        _connection(kafka_security_protocol="SSL", kafka_ssl_cert_file=cert)


def test_a_refused_login_names_the_user_and_the_settings_to_check() -> None:
    connection = _connection(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="triage",
        kafka_sasl_password="wrong",
    )
    # What aiokafka logs for the server when the broker refuses the SCRAM exchange.
    refused = str(
        SaslAuthenticationFailed(
            "Authentication failed during authentication due to invalid credentials with "
            "SASL mechanism SCRAM-SHA-512"
        )
    )
    assert connection.login_refused(refused) == (
        "Kafka refused the login of 'triage' with SCRAM-SHA-512: check "
        "TRIAGE_KAFKA_SASL_USERNAME and TRIAGE_KAFKA_SASL_PASSWORD"
    )
    offered = str(UnsupportedSaslMechanismError("Kafka broker does not support SCRAM-SHA-512"))
    assert connection.login_refused(offered) == (
        "Kafka does not offer TRIAGE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512"
    )
    assert connection.login_refused("[Errno 111] Connect call failed") is None
