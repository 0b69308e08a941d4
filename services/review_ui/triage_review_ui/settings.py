"""Review UI settings (env prefix ``TRIAGE_REVIEW_UI_``)."""

from __future__ import annotations

from pydantic import Field, IPvAnyNetwork, field_validator
from pydantic_settings import SettingsConfigDict

from triage_contracts import topics
from triage_runtime.settings import CommonSettings


class Settings(CommonSettings):
    """Settings for the review UI."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_REVIEW_UI_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8004
    page_size: int = Field(default=50, gt=0, le=500)
    labels: list[str] = Field(
        default_factory=lambda: ["billing", "technical", "legal", "other"],
        description="The model's labels: the queues a reviewer may choose, whose decisions are "
        "training data (JSON list).",
    )
    other_queues: list[str] = Field(
        default_factory=list,
        description="Routed queues besides the model's labels a reviewer may send a document "
        "to (JSON list); those decisions are routed but are not training data.",
    )
    preselect: bool = Field(
        default=False,
        description="Pre-select the model's label on the decision form. Off: the reviewer "
        "chooses every time, against automation bias (docs/review.md).",
    )
    lease_minutes: float = Field(
        default=15.0,
        gt=0,
        description="How long a claim lasts; an open, visible item page renews it.",
    )
    undo_minutes: float = Field(
        default=10.0, ge=0, description="How long the author of a decision may undo it."
    )
    session_hours: float = Field(default=12.0, gt=0, description="How long a sign-in lasts.")
    cookie_secure: bool = Field(
        default=False,
        description=(
            "Always mark cookies Secure. They are anyway whenever a request came over HTTPS,"
            " directly or as a trusted proxy's X-Forwarded-Proto says."
        ),
    )
    trusted_proxies: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description=(
            "Proxies (JSON list of addresses or CIDRs) whose X-Forwarded-For and"
            " X-Forwarded-Proto are believed; from anyone else they are ignored."
        ),
    )
    due_soon_hours: float = Field(
        default=2.0, ge=0, description="The queue marks items due within this many hours."
    )
    search_index_seconds: float = Field(
        default=5.0, gt=0, description="How often open items' text is stored for search."
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

    @field_validator("labels", "other_queues")
    @classmethod
    def _queue_names(cls, queues: list[str]) -> list[str]:
        for queue in queues:
            topics.routed_topic(queue)  # raises ValueError for a name no topic can carry
        return queues

    @property
    def heartbeat_seconds(self) -> float:
        """How often an open item page renews its claim: a third of the lease, at most 60 s."""
        return min(self.lease_minutes * 60 / 3, 60.0)
