"""``triage-ingest`` (or ``python -m triage_ingest``): run the ingest service."""

from __future__ import annotations

from triage_ingest.app import create_app
from triage_ingest.settings import Settings
from triage_runtime.serve import serve


def main() -> None:
    """Entry point of the ``triage-ingest`` console script."""
    serve(service="ingest", settings_class=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
