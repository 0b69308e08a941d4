"""How every Triage Kafka client connects: bootstrap servers, TLS and SASL, from one class.

``KafkaConnection`` is read from the ``TRIAGE_KAFKA_*`` variables (``CommonSettings`` is one,
so every service and the CLI have it). It is turned into client arguments in one place each:
``aiokafka_kwargs()`` for the aiokafka consumers, producers and admin clients, and
``faststream_security()`` for FastStream's KafkaBroker (which maps it to the same aiokafka
arguments; a unit test holds the two to each other).
"""

from __future__ import annotations

import ssl
from functools import cached_property
from typing import Any, Literal, Self

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)
from pydantic import Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_SASL_CLASSES: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
    "PLAIN": SASLPlaintext,
    "SCRAM-SHA-256": SASLScram256,
    "SCRAM-SHA-512": SASLScram512,
}


class KafkaConnection(BaseSettings):
    """Where the Kafka cluster is and how to authenticate to it (TLS, SASL)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap: str = Field(
        default="127.0.0.1:19092",
        validation_alias="TRIAGE_KAFKA_BOOTSTRAP",
        description="Kafka bootstrap servers, comma-separated host:port.",
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        validation_alias="TRIAGE_KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or SASL_SSL (SASL over TLS).",
    )
    kafka_ssl_ca_file: FilePath | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SSL_CA_FILE",
        description="PEM file of the CA(s) that signed the brokers' certificates (unset: system).",
    )
    kafka_ssl_cert_file: FilePath | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SSL_CERT_FILE",
        description="PEM client certificate, for brokers that want mutual TLS.",
    )
    kafka_ssl_key_file: FilePath | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SSL_KEY_FILE",
        description="PEM private key of the client certificate.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SSL_KEY_PASSWORD",
        description="Password of the client key, when it is encrypted.",
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True,
        validation_alias="TRIAGE_KAFKA_SSL_CHECK_HOSTNAME",
        description=(
            "Check that a broker's certificate names the host connected to (the chain is "
            "verified either way)."
        ),
    )
    kafka_sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SASL_MECHANISM",
        description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; needed with a SASL_ protocol.",
    )
    kafka_sasl_username: str | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SASL_USERNAME",
        description="SASL user name.",
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None,
        validation_alias="TRIAGE_KAFKA_SASL_PASSWORD",
        description="SASL password.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        protocol = self.kafka_security_protocol
        uses_sasl = protocol.startswith("SASL_")
        uses_tls = protocol in ("SSL", "SASL_SSL")
        sasl_set = [
            name
            for name, value in (
                ("TRIAGE_KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                ("TRIAGE_KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("TRIAGE_KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            )
            if value is not None
        ]
        if uses_sasl and len(sasl_set) < 3:
            raise ValueError(
                f"TRIAGE_KAFKA_SECURITY_PROTOCOL={protocol} needs TRIAGE_KAFKA_SASL_MECHANISM, "
                "TRIAGE_KAFKA_SASL_USERNAME and TRIAGE_KAFKA_SASL_PASSWORD"
            )
        if not uses_sasl and sasl_set:
            raise ValueError(
                f"{', '.join(sasl_set)} set but TRIAGE_KAFKA_SECURITY_PROTOCOL={protocol}: "
                "use SASL_SSL (or SASL_PLAINTEXT) to log in with SASL"
            )
        tls_set = [
            name
            for name, value in (
                ("TRIAGE_KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file),
                ("TRIAGE_KAFKA_SSL_CERT_FILE", self.kafka_ssl_cert_file),
                ("TRIAGE_KAFKA_SSL_KEY_FILE", self.kafka_ssl_key_file),
                ("TRIAGE_KAFKA_SSL_KEY_PASSWORD", self.kafka_ssl_key_password),
            )
            if value is not None
        ]
        if not uses_tls and tls_set:
            raise ValueError(
                f"{', '.join(tls_set)} set but TRIAGE_KAFKA_SECURITY_PROTOCOL={protocol}: "
                "use SSL or SASL_SSL to connect over TLS"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError(
                "TRIAGE_KAFKA_SSL_CERT_FILE and TRIAGE_KAFKA_SSL_KEY_FILE go together "
                "(a client certificate needs its key)"
            )
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            raise ValueError(
                "TRIAGE_KAFKA_SSL_KEY_PASSWORD is set without TRIAGE_KAFKA_SSL_KEY_FILE"
            )
        return self

    @property
    def kafka_uses_tls(self) -> bool:
        """Whether connections to the brokers are TLS."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @cached_property
    def kafka_ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of every connection (None without TLS); built once, on first use.

        Raises ``ssl.SSLError``/``OSError`` if a file is not a certificate or key, or the key's
        password is wrong.
        """
        if not self.kafka_uses_tls:
            return None
        context = ssl.create_default_context(
            cafile=str(self.kafka_ssl_ca_file) if self.kafka_ssl_ca_file else None
        )
        if self.kafka_ssl_cert_file is not None:
            password = self.kafka_ssl_key_password
            context.load_cert_chain(
                str(self.kafka_ssl_cert_file),
                str(self.kafka_ssl_key_file),
                password=password.get_secret_value() if password else None,
            )
        context.check_hostname = self.kafka_ssl_check_hostname
        return context

    def login_refused(self, reason: str) -> str | None:
        """What to change, when aiokafka's reason for a failed connection is the login or TLS.

        ``reason`` is the error aiokafka logs for a bootstrap server it could not connect to
        (it raises only "Unable to bootstrap"); None when the reason is neither.
        """
        if "SaslAuthenticationFailed" in reason or "Authentication failed" in reason:
            return (
                f"Kafka refused the login of {self.kafka_sasl_username!r} with "
                f"{self.kafka_sasl_mechanism}: check TRIAGE_KAFKA_SASL_USERNAME and "
                "TRIAGE_KAFKA_SASL_PASSWORD"
            )
        if "UnsupportedSaslMechanism" in reason:
            return f"Kafka does not offer TRIAGE_KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism}"
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            return (
                "the Kafka broker's certificate is not trusted: check TRIAGE_KAFKA_SSL_CA_FILE "
                "and TRIAGE_KAFKA_SSL_CHECK_HOSTNAME"
            )
        return None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for an aiokafka consumer, producer or admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.kafka_bootstrap,
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_uses_tls:
            kwargs["ssl_context"] = self.kafka_ssl_context
        if self.kafka_sasl_mechanism is not None:
            assert self.kafka_sasl_password is not None  # the validator checked
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs

    def faststream_security(self) -> BaseSecurity | None:
        """The ``security`` argument of FastStream's KafkaBroker (None for PLAINTEXT)."""
        context = self.kafka_ssl_context
        if self.kafka_sasl_mechanism is not None:
            assert self.kafka_sasl_username is not None  # the validator checked
            assert self.kafka_sasl_password is not None
            return _SASL_CLASSES[self.kafka_sasl_mechanism](
                self.kafka_sasl_username,
                self.kafka_sasl_password.get_secret_value(),
                ssl_context=context,
                use_ssl=self.kafka_uses_tls,
            )
        if context is not None:
            return BaseSecurity(ssl_context=context)
        return None
