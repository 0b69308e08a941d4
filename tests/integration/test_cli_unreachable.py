"""Commands that read topics say in one line that Kafka cannot be reached, with a real
PostgreSQL behind them (so it is Kafka they trip on) and a closed local port as Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage_cli.exit_codes import UNREACHABLE
from triage_cli.main import app


@pytest.mark.parametrize(
    "command",
    [
        ["replay", "--since", "1h", "--dry-run", "--report", "{tmp}/r.csv"],
        ["batch", "score", "--topic-range", "1h", "--output", "{tmp}/o.csv"],
    ],
    ids=["replay", "batch"],
)
def test_a_topic_read_with_kafka_unreachable_is_one_line(
    command: list[str],
    clean_db: str,
    small_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", clean_db)
    monkeypatch.setenv("TRIAGE_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    args = [a.format(tmp=tmp_path) for a in command] + ["--model", str(small_model)]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == UNREACHABLE, result.output
    assert lines[-1] == "cannot reach Kafka at 127.0.0.1:1 (TRIAGE_KAFKA_BOOTSTRAP)"
    assert "Traceback" not in result.output
