"""``triage-review-ui`` (or ``python -m triage_review_ui``): run the review-ui service."""

from __future__ import annotations

from triage_review_ui.app import create_app
from triage_review_ui.settings import Settings
from triage_runtime.serve import serve


def main() -> None:
    """Entry point of the ``triage-review-ui`` console script."""
    serve(service="review-ui", settings_class=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
