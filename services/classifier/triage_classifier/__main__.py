"""``triage-classifier`` (or ``python -m triage_classifier``): run the classifier service."""

from __future__ import annotations

from triage_classifier.app import create_app
from triage_classifier.settings import Settings
from triage_runtime.serve import serve


def main() -> None:
    """Entry point of the ``triage-classifier`` console script."""
    serve(service="classifier", settings_class=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
