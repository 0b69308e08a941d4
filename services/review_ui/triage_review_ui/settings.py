"""Review UI settings (env prefix ``TRIAGE_REVIEW_UI_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the review UI."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_REVIEW_UI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8004
    page_size: int = Field(default=50, gt=0, le=500)
    labels: list[str] = Field(
        default_factory=lambda: ["billing", "technical", "legal", "other"],
        description="The queues a reviewer may choose (JSON list).",
    )
    lease_minutes: float = Field(default=15.0, gt=0, description="How long a claim lasts.")
    undo_minutes: float = Field(
        default=10.0, ge=0, description="How long the author of a decision may undo it."
    )
    due_soon_hours: float = Field(
        default=2.0, gt=0, description="An open item due within this many hours is due soon."
    )
    session_hours: float = Field(default=12.0, gt=0, description="How long a sign-in lasts.")
    cookie_secure: bool = Field(
        default=False,
        description="Send the session cookie only over HTTPS; turn on behind TLS.",
    )
    gauge_interval_seconds: float = Field(
        default=15.0, gt=0, description="How often the review queue gauges are refreshed."
    )
    quality_window_days: float = Field(
        default=30.0,
        gt=0,
        description="Live precision counts the decided quality samples of routings this recent.",
    )
    quality_confidence: float = Field(
        default=0.95,
        gt=0,
        lt=1,
        description="Confidence of live precision's (two-sided) Wilson interval.",
    )
    quality_min_samples: int = Field(
        default=20,
        ge=1,
        description="Decided samples a label needs before the dashboard calls it below target.",
    )
    max_document_bytes: int = Field(
        default=25 * 1024 * 1024, gt=0, description="Larger documents are not shown as text."
    )
    extraction_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest extraction of a document shown as text."
    )
    extraction_memory_bytes: int = Field(
        default=512 * 1024**2, gt=0, description="Memory cap of the extraction worker."
    )
