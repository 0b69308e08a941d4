"""Small helpers every service's ``create_app`` uses."""

from __future__ import annotations

from importlib import metadata

from triage_contracts import Producer


def package_version(distribution: str) -> str:
    """Return an installed distribution's version, or ``0+unknown``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def producer_for(service: str, distribution: str) -> Producer:
    """Return the Producer stamp a service puts on its events."""
    return Producer(service=service, version=package_version(distribution))
