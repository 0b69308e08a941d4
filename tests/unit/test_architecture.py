"""The architecture rules (import-linter contracts in pyproject.toml) hold, and they fail on a
deliberate violation of each."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT

PACKAGES = sorted(REPO_ROOT.glob("*/*/triage_*/__init__.py"))


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports with the project's contracts on the packages under ``src``."""
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(lint), "--config", str(REPO_ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """A copy of every project package, to break on purpose."""
    for init in PACKAGES:
        shutil.copytree(init.parent, tmp_path / init.parent.name)
    return tmp_path


def test_every_package_is_under_a_contract() -> None:
    names = {init.parent.name for init in PACKAGES}
    assert names == {
        "triage_contracts", "triage_text", "triage_runtime", "triage_ml", "triage_cli",
        "triage_ingest", "triage_classifier", "triage_router", "triage_review_ui",
    }  # fmt: skip


def test_the_code_keeps_every_contract(sources: Path) -> None:
    result = _lint(sources)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("module", "statement", "broken"),
    [
        ("triage_router", "from triage_classifier import domain", "never import each other"),
        ("triage_runtime", "from triage_ml import scoring", "Libraries never import a service"),
        ("triage_ml", "import triage_cli.main", "Libraries never import a service"),
        ("triage_contracts", "import sqlalchemy", "Contracts import nothing"),
        ("triage_review_ui", "import sklearn", "never import torch, scikit-learn"),
        ("triage_ingest", "import torch", "never import torch, scikit-learn"),
        ("triage_text", "import matplotlib.pyplot", "never import torch, scikit-learn"),
    ],
)
def test_a_violation_breaks_its_contract(
    sources: Path, module: str, statement: str, broken: str
) -> None:
    (sources / module / "_violation.py").write_text(f"{statement}\n")
    result = _lint(sources)
    assert result.returncode == 1, result.stdout
    # The report wraps long contract names; the verdict follows the name.
    report = " ".join(result.stdout.split())
    assert re.search(re.escape(broken) + r"[^:]*? BROKEN", report), result.stdout
    assert "0 kept" not in report  # the others still hold
