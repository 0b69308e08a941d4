"""The Prometheus configuration and alert rules under deploy/prometheus are valid and fire."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import REPO_ROOT

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    return subprocess.run(
        [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    "args",
    [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")],
)
def test_configuration_and_rules_are_valid(args: tuple[str, ...]) -> None:
    result = _promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_fire_when_the_classifier_stops_and_dead_letters_grow() -> None:
    result = _promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
