"""``triage-router`` (or ``python -m triage_router``): run the router service."""

from __future__ import annotations

from triage_router.app import create_app
from triage_router.settings import Settings
from triage_runtime.serve import serve


def main() -> None:
    """Entry point of the ``triage-router`` console script."""
    serve(service="router", settings_class=Settings, create_app=create_app)


if __name__ == "__main__":
    main()
