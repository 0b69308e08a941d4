"""Classifier service settings (env prefix ``TRIAGE_CLASSIFIER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the classifier service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_CLASSIFIER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8002
    model_path: Path = Field(
        default=Path(".stack/models/champion"),
        description="Directory of the model artifact to serve as champion.",
    )
    group_id: str = "triage-classifier"
    batch_max_records: int = Field(default=32, gt=0, le=1000)
    batch_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    max_document_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
