"""An invalid TRIAGE_* setting stops a service at start with one line per setting, naming
the variable (never a traceback, never the value given: it may be a secret)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from triage_ingest.settings import Settings as IngestSettings
from triage_runtime.serve import STARTUP_FAILURE
from triage_runtime.setting_errors import setting_errors


def test_a_service_with_invalid_settings_exits_with_one_line_per_setting() -> None:
    command = shutil.which("triage-router", path=str(Path(sys.executable).parent))
    assert command, "triage-router is not installed in this environment"
    env = {
        **os.environ,
        "TRIAGE_ROUTER_PORT": "eighty",  # a field of the router's own (TRIAGE_ROUTER_ prefix)
        "TRIAGE_KAFKA_SECURITY_PROTOCOL": "s3cret-pw",  # a shared one, read by its alias
    }
    done = subprocess.run(
        [command], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == STARTUP_FAILURE, done.stderr
    assert sorted(done.stderr.splitlines()) == [
        "error: TRIAGE_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT', 'SSL', "
        "'SASL_PLAINTEXT' or 'SASL_SSL'",
        "error: TRIAGE_ROUTER_PORT: Input should be a valid integer, unable to parse string as "
        "an integer",
    ]
    assert done.stdout == ""
    assert "s3cret" not in done.stderr


def test_a_rule_across_settings_is_one_line_that_names_them_and_hides_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_KAFKA_SASL_PASSWORD", "s3cret-pw")  # without a SASL protocol
    with pytest.raises(ValidationError) as refused:
        IngestSettings()
    assert setting_errors(refused.value, IngestSettings) == [
        "TRIAGE_KAFKA_SASL_PASSWORD set but TRIAGE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT: use "
        "SASL_SSL (or SASL_PLAINTEXT) to log in with SASL"
    ]
