"""ScoringProcesses: the model in several spawned processes, loaded before the first call."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tests.helpers import small_examples
from triage_ml import model as model_lib
from triage_ml.model import LoadedModel
from triage_ml.scoring_processes import ScoringProcessError, ScoringProcesses

TEXTS = ["the invoice payment is overdue", "api server outage, login error", "contract clause"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    pipeline, metadata, *_ = model_lib.train(small_examples(), seed=0)
    return model_lib.load(model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("m")))


# Requests run in the scoring processes, so they are module-level functions.
def probabilities(model: LoadedModel, texts: list[str]) -> list[list[float]]:
    return [[float(p) for p in row] for row in model.predict_proba(texts)]


def pid_after(model: LoadedModel, seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def fails(model: LoadedModel, why: str) -> None:
    raise ValueError(why)


class _Unembeddable:
    """A features step whose embedding model is missing."""

    def prepare(self) -> None:
        raise OSError("embedding model directory /nowhere does not exist")


class _Pipeline:
    named_steps: ClassVar[dict[str, Any]] = {"features": _Unembeddable()}


def test_processes_score_as_this_process_does_side_by_side_and_stop_when_closed(
    model: LoadedModel,
) -> None:
    async def scenario() -> tuple[list[list[float]], list[int], list[int]]:
        async with ScoringProcesses(model, processes=2) as scorers:
            scored = await scorers.call(probabilities, TEXTS)
            pids = await asyncio.gather(*(scorers.call(pid_after, 0.5) for _ in range(2)))
            # An error comes back with its reason, and the process goes on.
            with pytest.raises(ScoringProcessError, match="ValueError: no such label"):
                await scorers.call(fails, "no such label")
            assert len(await scorers.call(probabilities, TEXTS[:1])) == 1
            return scored, list(pids), scorers.pids

    scored, pids, workers = asyncio.run(scenario())
    np.testing.assert_allclose(scored, model.predict_proba(TEXTS), rtol=1e-9)
    # Two calls at once went to the two processes, neither of them this one.
    assert sorted(pids) == sorted(workers) and len(set(pids)) == 2
    assert os.getpid() not in pids
    for pid in workers:  # closed: every process gone
        assert "gone" in _state(pid) or "zombie" in _state(pid)


def test_a_process_that_dies_fails_its_call_and_every_later_one(model: LoadedModel) -> None:
    async def scenario() -> None:
        async with ScoringProcesses(model, processes=1) as scorers:
            [pid] = scorers.pids
            call = asyncio.create_task(scorers.call(pid_after, 30))
            await asyncio.sleep(0.5)
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(ScoringProcessError, match=f"process {pid} died"):
                await call
            with pytest.raises(ScoringProcessError, match="died"):
                await scorers.call(probabilities, TEXTS)

    asyncio.run(scenario())


def test_a_model_that_cannot_load_stops_start_up_with_the_reason() -> None:
    broken = LoadedModel(
        version="broken-1", labels=("a", "b"), thresholds={}, metadata={}, _pipeline=_Pipeline()
    )

    async def scenario() -> None:
        async with ScoringProcesses(broken, processes=2):
            pass

    with pytest.raises(ScoringProcessError, match=r"could not load the model.*does not exist"):
        asyncio.run(scenario())


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "gone"
