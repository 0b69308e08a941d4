"""Commands exit non-zero when their verdict says "do not proceed" or they skipped work:
``canary report`` (3 on rollback), ``replay`` and ``batch score`` (4 on skipped records).

The commands run end to end through the CLI; only what they read from Kafka and PostgreSQL
(the canary's observations, the replay's and batch's topic reads, the audit write and the
routing policy) is replaced.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.helpers import small_examples
from triage_cli import batch_cli, canary_cli, policy_cli, replay_cli
from triage_cli.exit_codes import ROLLBACK, SKIPPED
from triage_cli.main import app
from triage_ml import model as model_lib
from triage_ml.canary import Scored
from triage_runtime.routing import DEFAULT_POLICY

MIX = {"billing": 600, "technical": 300, "legal": 100}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


def _arm(role: str, mix: dict[str, int]) -> list[Scored]:
    """Documents of one arm with these label counts, every tenth sent to review."""
    labels = [label for label, count in mix.items() for _ in range(count)]
    return [
        Scored(
            role=role,
            version=f"{role}-v1",
            label=label,
            routed=i % 10 != 0,
            latency_seconds=0.5 + i / 1000,
        )
        for i, label in enumerate(labels)
    ]


@pytest.fixture
def audited(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The canary report's audit records, kept here instead of in PostgreSQL."""
    records: list[dict[str, Any]] = []

    async def audit(actor: str, detail: dict[str, Any]) -> None:
        records.append(detail)

    monkeypatch.setattr(canary_cli, "_audit", audit)
    return records


def _canary_report(
    monkeypatch: pytest.MonkeyPatch, canary_mix: dict[str, int], tmp_path: Path
) -> tuple[int, str, dict[str, Any]]:
    scored = _arm("champion", MIX) + _arm("canary", canary_mix)

    async def observations(start: datetime, end: datetime | None) -> tuple[list[Any], list[Any]]:
        return scored, []

    monkeypatch.setattr(canary_cli, "_observations", observations)
    out = tmp_path / "report.json"
    args = ["canary", "report", "--since", "1h", "--min-documents", "50", "--json", str(out)]
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split()), json.loads(out.read_text())


def test_canary_report_exits_3_on_a_rollback_verdict_after_recording_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, audited: list[dict[str, Any]]
) -> None:
    # The canary calls nearly everything billing: the label distribution check fails.
    code, output, written = _canary_report(
        monkeypatch, {"billing": 950, "technical": 40, "legal": 10}, tmp_path
    )
    assert "verdict: rollback" in output
    assert code == ROLLBACK == 3
    assert written["report"]["verdict"] == "rollback"
    assert [record["report"]["verdict"] for record in audited] == ["rollback"]


def test_canary_report_exits_0_on_promote_and_wait(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, audited: list[dict[str, Any]]
) -> None:
    code, output, _ = _canary_report(monkeypatch, MIX, tmp_path)
    assert "verdict: promote" in output
    assert code == 0
    # Too few canary documents to decide.
    code, output, _ = _canary_report(monkeypatch, {"billing": 6, "technical": 3}, tmp_path)
    assert "verdict: wait" in output
    assert code == 0
    assert [record["report"]["verdict"] for record in audited] == ["promote", "wait"]


def _replay(
    monkeypatch: pytest.MonkeyPatch, artifact: Path, tmp_path: Path, skipped: Counter[str]
) -> tuple[int, str, Path]:
    async def run(replay_id: str, **_: Any) -> tuple[list[Any], dict[str, Any], Counter[str], int]:
        return [], {}, skipped, 5 + sum(skipped.values())

    monkeypatch.setattr(replay_cli, "_run", run)
    report = tmp_path / "replay.csv"
    args = ["replay", "--since", "1h", "--model", str(artifact), "--report", str(report)]
    result = CliRunner().invoke(app, args)
    return result.exit_code, " ".join(result.output.split()), report


def test_replay_exits_4_when_it_skipped_records(
    monkeypatch: pytest.MonkeyPatch, artifact: Path, tmp_path: Path
) -> None:
    skipped = Counter({"blob_missing": 874})
    code, output, report = _replay(monkeypatch, artifact, tmp_path, skipped)
    assert "skipped: blob_missing │ 874" in output
    assert "874 record(s) skipped" in output
    assert code == SKIPPED == 4
    assert report.read_text().startswith("document_id,")  # the CSV is still written

    code, _, _ = _replay(monkeypatch, artifact, tmp_path, Counter())
    assert code == 0


def _batch(
    monkeypatch: pytest.MonkeyPatch, artifact: Path, tmp_path: Path, skipped: dict[str, int]
) -> tuple[int, str, Path]:
    row = dict.fromkeys(batch_cli.FIELDS) | {"document_id": "doc_1", "action": "route"}

    def topic_rows(*_: Any, sink: Any, **__: Any) -> dict[str, int]:
        sink([row])
        return skipped

    monkeypatch.setattr(batch_cli, "_topic_rows", topic_rows)
    monkeypatch.setattr(policy_cli, "current_policy", lambda **_: DEFAULT_POLICY)
    out = tmp_path / "scores.jsonl"
    args = ["batch", "score", "--topic-range", "1h..", "--model", str(artifact)]
    result = CliRunner().invoke(app, [*args, "--output", str(out)])
    return result.exit_code, " ".join(result.output.split()), out


def test_batch_score_of_a_topic_range_exits_4_when_it_skipped_records(
    monkeypatch: pytest.MonkeyPatch, artifact: Path, tmp_path: Path
) -> None:
    code, output, out = _batch(monkeypatch, artifact, tmp_path, {"undecodable": 2})
    assert "skipped 2 record(s): undecodable" in output
    assert code == SKIPPED
    assert [json.loads(line)["document_id"] for line in out.read_text().splitlines()] == [
        "doc_1"
    ]  # what was scored is written

    code, _, _ = _batch(monkeypatch, artifact, tmp_path, {})
    assert code == 0
