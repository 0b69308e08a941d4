"""Server-rendered pages: the Jinja2 templates (autoescaped) and the context every page gets."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from triage_review_ui.domain import (
    decision_text,
    due_in,
    hours_text,
    part_state,
    shown_name,
    sla,
)
from triage_review_ui.explanations import shown_explanation
from triage_review_ui.queries import shown_counts, shown_reason
from triage_review_ui.settings import Settings
from triage_runtime.accounts.store import SessionInfo

TEMPLATES = Path(__file__).parent / "templates"


class Pages:
    """Renders a template with the session, the settings and the queues (``labels``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.templates = Jinja2Templates(directory=TEMPLATES)
        self.templates.env.filters["due_in"] = due_in
        self.templates.env.filters["shown_reason"] = shown_reason
        self.templates.env.filters["shown_counts"] = shown_counts
        self.templates.env.filters["shown_explanation"] = shown_explanation
        self.templates.env.filters["shown_name"] = shown_name
        self.templates.env.filters["sla"] = self._sla
        self.templates.env.filters["hours_text"] = hours_text
        self.templates.env.filters["decision_text"] = decision_text
        self.templates.env.filters["part_state"] = part_state
        self.templates.env.globals["labels"] = settings.labels

    def _sla(self, due_at: datetime) -> str | None:
        return sla(due_at, timedelta(hours=self._settings.due_soon_hours))

    def render(
        self, request: Request, name: str, session: SessionInfo | None, **context: Any
    ) -> Response:
        """The page ``name`` for ``session`` (None before sign-in)."""
        return self.templates.TemplateResponse(
            request, name, {"session": session, "settings": self._settings, **context}
        )
