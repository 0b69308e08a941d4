"""ModelThread: every call on one thread, one at a time, with torch's thread count set."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial

import torch

from triage_ml.model_thread import ModelThread


def test_calls_run_on_one_thread_one_at_a_time_in_order() -> None:
    running = 0
    overlapped = False
    seen: list[tuple[int, int]] = []

    def call(n: int) -> int:
        nonlocal running, overlapped
        running += 1
        overlapped |= running > 1
        time.sleep(0.01)
        seen.append((n, threading.get_ident()))
        running -= 1
        return n * n

    async def scenario() -> list[int]:
        thread = ModelThread()
        try:
            return await asyncio.gather(*(thread.run(partial(call, n)) for n in range(6)))
        finally:
            thread.close()

    assert asyncio.run(scenario()) == [0, 1, 4, 9, 16, 25]
    assert not overlapped
    assert [n for n, _ in seen] == list(range(6))
    assert len({ident for _, ident in seen}) == 1
    assert seen[0][1] != threading.get_ident()


def test_the_thread_sets_torchs_threads_and_starts_again_after_close() -> None:
    before = torch.get_num_threads()
    thread = ModelThread(torch_threads=1)

    async def threads_seen() -> tuple[int, int]:
        return await thread.run(lambda: (torch.get_num_threads(), threading.get_ident()))

    try:
        first, _ = asyncio.run(threads_seen())
        thread.close()
        again, _ = asyncio.run(threads_seen())
    finally:
        thread.close()
        torch.set_num_threads(before)
    assert first == again == 1
