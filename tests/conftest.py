"""Fixtures shared by every tier."""

import shutil
import sys
from pathlib import Path

import pytest

from tests.stack import clean_db, isolated, no_topics, stack

__all__ = ["clean_db", "isolated", "no_topics", "stack", "triage_bin"]


@pytest.fixture(scope="session")
def triage_bin() -> str:
    """The ``triage`` console script of this environment (``triage-<service>`` beside it)."""
    triage = shutil.which("triage", path=str(Path(sys.executable).parent))
    assert triage, "the triage console script is not installed in this environment"
    return triage
