"""The one thread a process runs every model call on.

torch keeps its intra-op thread team, and oneDNN its kernel caches, per calling thread. A
model called from whichever thread of ``asyncio.to_thread``'s pool is free gets a new team
(and cold caches) per thread, and two calls in flight from two threads run two teams on the
same cores. On two vCPUs that made ``triage replay`` score at about 0.6 of the model alone;
on one thread it is the model alone's rate (docs/performance.md).

The classifier service and the offline re-scoring commands (``triage replay``,
``triage batch score --topic-range``, ``triage drift report``) both call their model here.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def _set_up(torch_threads: int | None) -> None:
    """The thread's first work: torch's intra-op thread count, when one is configured."""
    if torch_threads is not None:
        import torch

        torch.set_num_threads(torch_threads)


class ModelThread:
    """Runs calls one at a time on one thread, in the order they were made.

    The thread starts on the first call and stops with ``close()``; a closed ModelThread
    starts a new thread on its next call (so an app can stop and start again).
    """

    def __init__(self, *, torch_threads: int | None = None, name: str = "model") -> None:
        self._torch_threads = torch_threads
        self._name = name
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call()`` on the model thread, in the caller's context (so its spans are the
        children of the caller's), and return its result."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=1,
                thread_name_prefix=self._name,
                initializer=_set_up,
                initargs=(self._torch_threads,),
            )
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, call)

    def close(self) -> None:
        """Wait for the call in progress, if any, and stop the thread."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            executor.shutdown()
