"""Classifier service settings (env prefix ``TRIAGE_CLASSIFIER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the classifier service."""

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
    canary_partitions: Annotated[frozenset[int], NoDecode] = Field(
        default=frozenset(),
        description=(
            "Partitions of the documents topic scored by the registry alias `canary` "
            "(comma-separated, e.g. `0,3`); empty: no canary. Documents are keyed by id, so "
            "the canary's share of traffic is the share of these partitions."
        ),
    )
    shadow_sample: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Share of documents also scored by the registry alias `shadow` onto the shadow "
            "topic (0: off, 1: all); chosen by document id, so a redelivery is sampled alike."
        ),
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
    group_id: str = "triage-classifier"
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
    torch_threads: int | None = Field(
        default=None,
        gt=0,
        le=256,
        description=(
            "Intra-op threads torch may use for scoring (default: torch's, one per core). "
            "With N classifier processes on a host, cores / N; see docs/performance.md."
        ),
    )
    max_document_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    extraction_workers: int | None = Field(
        default=None, gt=0, description="Processes for PDF extraction (default: CPU count)."
    )
    extraction_timeout_seconds: float = Field(default=20.0, gt=0)
    extraction_memory_bytes: int = Field(default=1024**3, gt=0)
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

    @field_validator("canary_partitions", mode="before")
    @classmethod
    def _partitions(cls, value: Any) -> Any:
        """Accept ``"0,3"`` (as the environment gives it) as well as a collection of ints."""
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError as exc:
                raise ValueError("canary_partitions is a comma-separated list of numbers") from exc
        return value

    @field_validator("canary_partitions")
    @classmethod
    def _non_negative(cls, value: frozenset[int]) -> frozenset[int]:
        if any(partition < 0 for partition in value):
            raise ValueError("partition numbers start at 0")
        return value
