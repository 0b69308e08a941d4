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
