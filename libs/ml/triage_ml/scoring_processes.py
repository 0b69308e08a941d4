"""A model in several processes, for offline re-scoring that should use every core.

On a small host, two processes of one torch thread each outscore one process of two threads
(by 5-12 % on two vCPUs, docs/performance.md): the threads of one process meet at a barrier
after every operation, and whatever else runs on the host stalls both. ``triage replay`` and
``triage batch score --topic-range`` take ``--processes N`` and score their batches here,
N batches at a time, while reading, extraction and PostgreSQL stay in the parent.

Each worker is a ``spawn``-ed process (never ``fork``: the parent runs threads and an event
loop) with a pipe of its own. It unpickles the parent's :class:`LoadedModel` (which never
carries the torch weights), loads the embedding model itself, scores once to warm up, and
says it is ready; the parent waits for every worker before it returns from ``start``, so
start-up is not counted against the first batch. A request is a module-level function and
its arguments; the worker calls ``function(model, *args)`` and sends back the result, or the
error's type and text. A worker that dies is a :class:`ScoringProcessError` for the call it
had, and for every later call (the command stops; what it committed stays committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import pickle
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Self

from triage_ml.model import LoadedModel

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

READY = "ready"
START_SECONDS = 300.0  # importing torch and loading the model, on a loaded host
STOP_SECONDS = 10.0


class ScoringProcessError(RuntimeError):
    """A scoring process failed to start, died, or raised."""


def _worker_main(conn: Connection, model_pickle: bytes, torch_threads: int) -> None:
    """A scoring process: load the model, warm up, then answer requests until told to stop."""
    import torch

    torch.set_num_threads(torch_threads)
    try:
        model: LoadedModel = pickle.loads(model_pickle)  # noqa: S301 (from our parent)
        model.prepare()
        model.predict(["warm up"])
    except BaseException as exc:  # noqa: BLE001 (any failure is the parent's to report)
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send((READY, None))
    while True:
        try:
            request = conn.recv()
        except EOFError:  # the parent went away
            return
        if request is None:
            return
        function, args = request
        try:
            reply: tuple[str, Any] = ("ok", function(model, *args))
        except Exception as exc:  # noqa: BLE001 (the caller gets it as ScoringProcessError)
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection

    def exchange(self, request: tuple[Callable[..., Any], tuple[Any, ...]]) -> tuple[str, Any]:
        """Send one request and wait for its reply (in a thread of the parent)."""
        try:
            self.conn.send(request)
            reply: tuple[str, Any] = self.conn.recv()
        except (EOFError, OSError) as exc:
            self.process.join(1)
            raise ScoringProcessError(
                f"scoring process {self.process.pid} died (exit code {self.process.exitcode})"
            ) from exc
        return reply


class ScoringProcesses:
    """``processes`` processes, each with ``model`` loaded and ``torch_threads`` torch threads.

    Use ``async with``; ``call`` runs a request on whichever process is free.
    """

    def __init__(self, model: LoadedModel, *, processes: int, torch_threads: int = 1) -> None:
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self._model = model
        self._count = processes
        self._torch_threads = torch_threads
        self._workers: list[_Worker] = []
        self._idle: asyncio.Queue[_Worker] | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._failed: ScoringProcessError | None = None

    @property
    def processes(self) -> int:
        """How many scoring processes there are."""
        return self._count

    @property
    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [w.process.pid for w in self._workers if w.process.pid is not None]

    async def start(self) -> None:
        """Start every process and wait until each has its model loaded and warm."""
        context = multiprocessing.get_context("spawn")
        blob = pickle.dumps(self._model)
        for _ in range(self._count):
            parent, child = context.Pipe()
            process = context.Process(
                target=_worker_main,
                args=(child, blob, self._torch_threads),
                name="triage-scoring",
                daemon=True,
            )
            process.start()
            child.close()
            self._workers.append(_Worker(process, parent))
        self._threads = ThreadPoolExecutor(self._count, thread_name_prefix="scoring-pipe")
        try:
            await asyncio.get_running_loop().run_in_executor(self._threads, self._await_ready)
        except BaseException:
            self.close()
            raise
        self._idle = asyncio.Queue()
        for worker in self._workers:
            self._idle.put_nowait(worker)

    def _await_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        for worker in self._workers:
            if not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                raise ScoringProcessError(f"scoring process not ready in {START_SECONDS:.0f} s")
            try:
                status, detail = worker.conn.recv()
            except EOFError:
                worker.process.join(1)
                raise ScoringProcessError(
                    f"scoring process exited while starting (exit code {worker.process.exitcode})"
                ) from None
            if status != READY:
                raise ScoringProcessError(f"scoring process could not load the model: {detail}")

    async def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(model, *args)`` in a free scoring process; its result, or its error as a
        ScoringProcessError. ``function`` must be importable (module level)."""
        if self._idle is None or self._threads is None:
            raise ScoringProcessError("the scoring processes are not running")
        if self._failed is not None:
            raise self._failed
        worker = await self._idle.get()
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, worker.exchange, (function, args)
        )
        try:
            # A cancelled caller must not hand the pipe to another request mid-exchange: the
            # worker is free again only when its reply has been read.
            status, value = await asyncio.shield(future)
        except ScoringProcessError as exc:
            self._failed = exc
            raise
        finally:
            future.add_done_callback(partial(self._free, worker))
        if status != "ok":
            raise ScoringProcessError(f"scoring failed in process {worker.process.pid}: {value}")
        return value

    def _free(self, worker: _Worker, done: asyncio.Future[Any]) -> None:
        """The worker's exchange is over: it may take the next request."""
        if self._idle is not None and not done.cancelled():
            self._idle.put_nowait(worker)

    def close(self) -> None:
        """Ask every process to stop; kill any that has not after a few seconds."""
        workers, self._workers = self._workers, []
        for worker in workers:
            with contextlib.suppress(OSError, ValueError):  # already gone
                worker.conn.send(None)
        deadline = time.monotonic() + STOP_SECONDS
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1)
            worker.conn.close()
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None
        self._idle = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
