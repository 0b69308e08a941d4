"""Classifier service settings (env prefix ``TRIAGE_CLASSIFIER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_contracts import topics
from triage_ml.scoring import ScoringSettings


class Settings(ScoringSettings):
    """Settings for the classifier service (with how documents are read and scored)."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_CLASSIFIER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    model_path: Path = Field(
        default=Path(".stack/models/champion"),
        description="Artifact directory (or a symlink to one) to serve, when no alias is set.",
    )
    model_alias: str | None = Field(
        default=None,
        pattern=r"^(champion|canary|shadow)$",
        description="Serve this registry alias instead of model_path (needs the database).",
    )
    model_store_url: str = Field(
        default=".stack/model-store",
        validation_alias="TRIAGE_MODEL_STORE_URL",
        description="Where registered artifacts live: a directory, file:// or s3:// URL.",
    )
    model_cache_dir: Path = Field(
        default=Path(".stack/model-cache"), description="Local copies of fetched artifacts."
    )
    model_refresh_seconds: float = Field(
        default=10.0, gt=0, description="How often the alias or path is checked for a change."
    )
    fallback_to_rules: bool = Field(
        default=True, description="Score with the rules model when no trained model loads."
    )
    rules_path: Path | None = Field(
        default=None, description="Rules file for the fallback (default: the shipped rules)."
    )
    drift_window: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description=(
            "Documents in the rolling drift window of each serving model (champion, canary); "
            "0 turns drift monitoring off."
        ),
    )
    drift_interval_seconds: float = Field(
        default=60.0, gt=0, description="How often drift is computed and exported as gauges."
    )
    drift_min_documents: int = Field(
        default=100,
        ge=1,
        description="Fewer documents than this in a window export the drift gauges as NaN.",
    )
    group_id: str = topics.CLASSIFIER_GROUP
    batch_max_records: int = Field(default=32, gt=0, le=1000)
    batch_timeout_ms: int = Field(
        default=5,
        ge=1,
        le=10_000,
        description=(
            "How long a poll of an empty documents topic waits for a record; the consumer then "
            "pauses as long before polling again, so on a quiet topic a document can wait up "
            "to twice this. Nothing waits for a batch to fill: a busy topic's micro-batch is "
            "what has arrived, up to batch_max_records."
        ),
    )
    require_api_key: bool = Field(
        default=True,
        description="POST /v1/classify wants an X-API-Key made by `triage apikey create`.",
    )
    retry_max_attempts: int = Field(
        default=5, ge=0, description="Attempts on the retry topic before a dead letter."
    )
    retry_backoff_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; it doubles with each attempt."
    )
    retry_backoff_max_seconds: float = Field(
        default=60.0, gt=0, description="Longest delay between two attempts."
    )
    max_classify_request_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest POST /v1/classify body (413 above)."
    )
