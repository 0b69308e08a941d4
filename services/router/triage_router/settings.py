"""Router service settings (env prefix ``TRIAGE_ROUTER_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_contracts import topics
from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the router service."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_ROUTER_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8003
    group_id: str = topics.ROUTER_GROUP
    batch_max_records: int = Field(
        default=100, gt=0, le=1000, description="Classified events applied per transaction."
    )
    batch_timeout_ms: int = Field(
        default=5, ge=1, le=10_000, description="Longest wait for a batch to fill."
    )
    storage_retry_seconds: float = Field(
        default=1.0, ge=0, description="Pause before a message is redelivered after a DB error."
    )
