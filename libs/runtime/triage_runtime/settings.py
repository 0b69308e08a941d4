"""Settings shared by every service. Each service subclasses with its own env prefix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from triage_runtime.blobstore import BlobStore, LocalBlobStore
from triage_runtime.kafka_connection import KafkaConnection
from triage_runtime.s3blobs import blob_store_from_url


class CommonSettings(KafkaConnection):
    """Connection settings every service reads from the same, un-prefixed variables.

    It is a ``KafkaConnection``: the Kafka settings (``TRIAGE_KAFKA_*``) are that class's.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    database_url: str = Field(
        default="postgresql+psycopg://triage:triage@127.0.0.1:15432/triage",
        validation_alias="TRIAGE_DATABASE_URL",
        description="SQLAlchemy URL of the PostgreSQL database.",
    )
    blob_dir: Path = Field(
        default=Path(".stack/blobs"),
        validation_alias="TRIAGE_BLOB_DIR",
        description="Root directory of the content-addressed local blob store.",
    )
    blob_url: str | None = Field(
        default=None,
        validation_alias="TRIAGE_BLOB_URL",
        description=(
            "Blob store: file:///abs/path or s3://bucket/prefix. Unset: the local directory "
            "TRIAGE_BLOB_DIR (which also holds temporary upload spool files)."
        ),
    )
    s3_endpoint_url: str | None = Field(default=None, validation_alias="TRIAGE_S3_ENDPOINT_URL")
    s3_region: str | None = Field(default=None, validation_alias="TRIAGE_S3_REGION")
    s3_access_key_id: str | None = Field(default=None, validation_alias="TRIAGE_S3_ACCESS_KEY_ID")
    s3_secret_access_key: SecretStr | None = Field(
        default=None, validation_alias="TRIAGE_S3_SECRET_ACCESS_KEY"
    )
    topic_prefix: str = Field(
        default="",
        validation_alias="TRIAGE_TOPIC_PREFIX",
        pattern=r"^[A-Za-z0-9._-]{0,60}$",
        description="Prefix for every topic name, to share a cluster between environments.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        validation_alias="TRIAGE_METRICS_TOKEN",
        description="When set, /metrics wants it as a bearer token (health stays open).",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias="TRIAGE_OTLP_ENDPOINT",
        description=(
            "OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces) to export "
            "OpenTelemetry spans to; unset, none are recorded (needs triage-runtime[otlp])."
        ),
    )
    lag_interval_seconds: float = Field(
        default=15.0,
        gt=0,
        validation_alias="TRIAGE_LAG_INTERVAL_SECONDS",
        description="How often a consuming service measures its consumer group's lag.",
    )
    outbox_relay_seconds: float = Field(
        default=1.0,
        gt=0,
        validation_alias="TRIAGE_OUTBOX_RELAY_SECONDS",
        description=(
            "How often a writing service's outbox relay looks for events its writers could "
            "not publish at once (broker down, a crash after the commit)."
        ),
    )
    outbox_keep_hours: float = Field(
        default=168.0,
        gt=0,
        validation_alias="TRIAGE_OUTBOX_KEEP_HOURS",
        description="How long published outbox rows are kept before the relay deletes them.",
    )
    header_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        validation_alias="TRIAGE_HEADER_TIMEOUT_SECONDS",
        description=(
            "A connection must send a request's headers within this long of opening (or of "
            "its previous answer); one that does not is closed, with 408 if it sent part."
        ),
    )
    log_level: str = Field(default="INFO", validation_alias="TRIAGE_LOG_LEVEL")
    log_json: bool = Field(
        default=True,
        validation_alias="TRIAGE_LOG_JSON",
        description="Structured JSON log lines (true) or plain text (false).",
    )

    @property
    def outbox_keep(self) -> timedelta:
        """``outbox_keep_hours`` as a duration."""
        return timedelta(hours=self.outbox_keep_hours)

    def open_blob_store(self) -> BlobStore:
        """Return the configured blob store (nothing is contacted until it is used)."""
        if not self.blob_url:
            return LocalBlobStore(self.blob_dir)
        return blob_store_from_url(
            self.blob_url,
            endpoint_url=self.s3_endpoint_url,
            region=self.s3_region,
            access_key_id=self.s3_access_key_id,
            secret_access_key=self.s3_secret_access_key,
            create_bucket=True,
        )

    def topic(self, name: str) -> str:
        """Return the topic name as this environment spells it (with the prefix)."""
        return f"{self.topic_prefix}{name}"
