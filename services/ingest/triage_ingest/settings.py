"""Ingest service settings (env prefix ``TRIAGE_INGEST_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the ingest service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_INGEST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8001
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, gt=0)
    max_files_per_request: int = Field(default=20, gt=0)
    source_name: str = Field(default="http-upload", pattern=r"^[a-z0-9][a-z0-9_.-]{0,79}$")
