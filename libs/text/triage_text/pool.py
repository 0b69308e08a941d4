"""Text extraction that a hostile document can neither stall nor take down.

Small plain text and HTML documents (up to ``IN_PROCESS_MAX_BYTES``) are cheap and are
extracted in this process. Everything else that reaches a parser (PDFs, through pdfminer, and
larger text and HTML) goes to a small pool of worker processes, each capped in address space
(``RLIMIT_AS``) and in wall-clock time per document. Large text is not cheap when hostile:
25 MB of U+FDFA (which NFKC expands eighteen-fold) took 45 s and 3.5 GB to normalise, and
html.parser needs about 3 s per MB of ``<<<<``; in a worker that is ``too_large`` or
``timeout`` instead of a stalled, swollen service. Both paths call
:func:`triage_text.extract.extract_text`, the function training uses, so training and serving
see the same text.

Design: the pool owns its worker processes directly instead of using a
``ProcessPoolExecutor``, because an executor cannot cancel a running task and killing one
of its processes breaks the whole executor (every other in-flight document fails with
``BrokenProcessPool``). Here each worker is a ``multiprocessing`` process with a pipe of its
own, driven by exactly one thread of a thread pool of the same size:

* at most ``workers`` PDFs are in flight; further callers wait in the thread pool's queue,
  and the event loop only ever awaits a future;
* the thread sends the document and polls the pipe for ``timeout_seconds``; on timeout it
  SIGKILLs that one worker, so the other in-flight documents are not touched at all;
* a worker that dies while working (OOM killer, segfault, an operator's ``kill``) shows as
  end-of-file on its pipe: that document is ``CORRUPT``; a worker found dead before it took
  a document is replaced and the document is sent once more, as it was not at fault;
* a cancelled caller's document is abandoned: its worker is killed within 0.1 s rather than
  left to run to the timeout;
* dead, killed or retired workers are replaced lazily, when their slot is next used; the
  start-up handshake keeps start-up time out of the next document's time budget.

Statuses the pool adds to those of ``extract_text``: ``TIMEOUT`` means the worker took longer
than ``timeout_seconds`` (counted from hand-over, not queueing) and was killed; ``TOO_LARGE``
means the input is over ``max_bytes`` *or* the worker ran over its memory cap
(``memory_bytes``) while extracting it; ``CORRUPT`` also covers a worker that died while
working on the document. ``extract_text`` reports a ``MemoryError`` raised inside pdfminer as
``CORRUPT`` (its catch-all takes it), so a worker whose peak RSS got a third of the way from
idle to its cap turns a ``CORRUPT`` into ``TOO_LARGE`` (and retires); a ``MemoryError`` that
escapes ``extract_text`` is ``TOO_LARGE`` directly.

Counters (``stats``): ``completed`` documents finished on either path, split into
``in_process`` and ``worker_tasks``; ``timeouts``; ``memory_errors``; ``worker_deaths``;
``abandoned`` (caller cancelled, worker killed); ``workers_started`` and, of those,
``worker_restarts`` (replacements).

Workers are started with the ``forkserver`` method (``spawn`` where there is none), never
``fork``: forking a process that runs threads and an event loop can copy held locks. As with
any use of those methods, workers import the main module, which must therefore be guarded by
``if __name__ == "__main__"``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import resource
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from triage_contracts import ExtractionStatus
from triage_text.extract import (
    HTML_MEDIA_TYPES,
    SUPPORTED_MEDIA_TYPES,
    TEXT_MEDIA_TYPES,
    ExtractedText,
    extract_text,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.process import BaseProcess
    from types import TracebackType
    from typing import Self

__all__ = [
    "DEFAULT_LIMITS",
    "IN_PROCESS_MAX_BYTES",
    "ExtractionLimits",
    "ExtractionPool",
    "PoolClosedError",
]

logger = logging.getLogger(__name__)

_READY: Final = "ready"
# Generous: a busy host can take seconds to start an interpreter and import the parser.
_STARTUP_TIMEOUT: Final = 60.0
# How long a retiring (or killed) worker may take to exit before it is killed (again).
_EXIT_GRACE: Final = 5.0
# How often a thread waiting for a worker checks whether its caller was cancelled.
_POLL_SLICE: Final = 0.1
# Cheap documents up to this size run on the event loop; larger ones in a thread, so that
# normalising them does not freeze the loop.
_INLINE_BYTES: Final = 64 * 1024
IN_PROCESS_MAX_BYTES: Final = 256 * 1024
"""Text and HTML up to this size are extracted in this process (worst case about 0.8 s of
hostile HTML); larger documents go to a worker, under its time and memory limits."""
# Imported once by the fork server, so that a worker does not import them again: it then
# starts in ~20 ms, plus whatever importing the main module costs (every forkserver child
# imports it unless it was run with -m; pytest's costs ~0.25 s).
_PRELOAD: Final = ["triage_text.pool", "pdfminer.high_level"]

# The worker's reply: status value, text, page count, and whether it now retires (memory).
_Reply = tuple[str, str, int | None, bool]


@dataclass(frozen=True)
class ExtractionLimits:
    """Resource limits for extracting one document in a worker process."""

    timeout_seconds: float = 20.0
    """Wall-clock seconds per document, from hand-over to the worker until its answer."""
    memory_bytes: int = 1024**3
    """Address-space cap (``RLIMIT_AS``) per worker, code included; needing more is TOO_LARGE."""
    max_bytes: int = 25 * 1024**2
    """Input size cap, passed to ``extract_text``; larger documents are ``TOO_LARGE``."""

    def __post_init__(self) -> None:
        """Reject limits that would make every extraction fail."""
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, not {self.timeout_seconds}")
        if self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive, not {self.memory_bytes}")
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")


DEFAULT_LIMITS: Final = ExtractionLimits()


class PoolClosedError(RuntimeError):
    """Raised when a document is submitted to, or still running in, a closed pool."""


# --- worker process side ----------------------------------------------------------------


def _peak_rss_bytes() -> int:
    """Return this process's peak resident set size in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kilobytes, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def _limit_address_space(memory_bytes: int) -> None:
    """Cap this process's address space, never above the hard limit it inherited."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))


def _pressure_mark(memory_bytes: int) -> int:
    """Return the peak RSS from which this worker counts as having run into its cap."""
    idle = _peak_rss_bytes()
    # A third of the way from idle to the cap: a failed allocation of n bytes usually
    # follows allocations of about as much (CPython grows and then joins its buffers), so
    # by then the peak is at least half-way; a third leaves a margin.
    return idle + max(memory_bytes - idle, 0) // 3


def _extract_job(data: bytes, media_type: str, max_bytes: int, pressure_mark: int) -> _Reply:
    """Extract one document in the worker, turning memory exhaustion into ``TOO_LARGE``."""
    try:
        result = extract_text(data, media_type, max_bytes=max_bytes)
    except MemoryError:
        return (ExtractionStatus.TOO_LARGE.value, "", None, True)
    except Exception:  # noqa: BLE001 - a document must never end the worker's loop
        return (ExtractionStatus.CORRUPT.value, "", None, False)
    # extract_text's catch-all turns a MemoryError inside pdfminer into CORRUPT, so running
    # into the cap is inferred from the peak RSS. A worker past the mark retires whatever
    # the outcome, which also resets the peak (ru_maxrss only ever grows).
    under_pressure = _peak_rss_bytes() >= pressure_mark
    if under_pressure and result.status is ExtractionStatus.CORRUPT:
        return (ExtractionStatus.TOO_LARGE.value, "", None, True)
    return (result.status.value, result.text, result.pages, under_pressure)


def _worker_main(conn: Connection, memory_bytes: int) -> None:
    """Serve extraction jobs from ``conn`` until it closes or memory runs short."""
    # Ctrl-C goes to the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_address_space(memory_bytes)
    # Importing the parser now keeps import time out of the first document's time budget.
    import pdfminer.high_level  # noqa: F401

    # Hostile PDFs make pdfminer warn by the thousand; the status already says what happened.
    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    pressure_mark = _pressure_mark(memory_bytes)
    conn.send(_READY)
    while True:
        try:
            data, media_type, max_bytes = conn.recv()
        except EOFError:  # the parent closed the pipe or exited
            return
        reply = _extract_job(data, media_type, max_bytes, pressure_mark)
        del data
        conn.send(reply)
        if reply[3]:  # retire: a fresh process beats a bloated, fragmented heap
            return


# --- parent side ---------------------------------------------------------------------------


def _context() -> ForkServerContext | SpawnContext:
    """Return the ``forkserver`` context where there is one, else ``spawn``; never ``fork``."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        # Has no effect once this process's fork server runs, which is then just slower.
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


def _needs_worker(data: bytes, media_type: str, max_bytes: int) -> bool:
    """Tell whether extracting this document runs a parser that needs isolating."""
    if len(data) > max_bytes:
        return False  # extract_text refuses it before parsing anything
    base_type = media_type.split(";", 1)[0].strip().lower()
    if base_type in TEXT_MEDIA_TYPES or base_type in HTML_MEDIA_TYPES:
        return len(data) > IN_PROCESS_MAX_BYTES
    # Unsupported types are refused at once; any other supported type (PDF today, and
    # whatever is added later) reaches a third-party parser and is isolated by default.
    return base_type in SUPPORTED_MEDIA_TYPES


@dataclass(eq=False)
class _Slot:
    """A worker process and the parent's end of its pipe, owned by one thread at a time."""

    index: int
    starts: int = 0
    process: BaseProcess | None = None
    conn: Connection | None = None


class ExtractionPool:
    """Extracts documents, PDFs in killable memory-capped workers (see the module docstring)."""

    def __init__(
        self, *, workers: int | None = None, limits: ExtractionLimits = DEFAULT_LIMITS
    ) -> None:
        """Prepare the pool; worker processes start on first use or in ``__aenter__``."""
        count = workers if workers is not None else (os.cpu_count() or 1)
        if count < 1:
            raise ValueError(f"workers must be at least 1, not {count}")
        self._limits = limits
        self._workers = count
        self._context = _context()
        self._threads = ThreadPoolExecutor(max_workers=count, thread_name_prefix="extraction")
        self._slots = [_Slot(index) for index in range(count)]
        self._free: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        for slot in self._slots:
            self._free.put(slot)
        self._lock = threading.Lock()
        self._live: dict[int, BaseProcess] = {}
        self._closed = False
        self._stats = dict.fromkeys(
            (
                "completed",
                "in_process",
                "worker_tasks",
                "timeouts",
                "memory_errors",
                "worker_deaths",
                "abandoned",
                "workers_started",
                "worker_restarts",
            ),
            0,
        )

    @property
    def limits(self) -> ExtractionLimits:
        """Return the limits every worker runs under."""
        return self._limits

    @property
    def workers(self) -> int:
        """Return the number of worker processes, which is also the in-flight bound."""
        return self._workers

    @property
    def stats(self) -> dict[str, int]:
        """Return a snapshot of the counters described in the module docstring."""
        with self._lock:
            return dict(self._stats)

    def worker_pids(self) -> list[int]:
        """Return the process ids of the worker processes currently running."""
        with self._lock:
            return sorted(pid for process in self._live.values() if (pid := process.pid))

    async def extract(self, data: bytes, media_type: str) -> ExtractedText:
        """Extract normalised text or the typed reason there is none; never raises for content."""
        if self._closed:
            raise PoolClosedError("the extraction pool is closed")
        if not _needs_worker(data, media_type, self._limits.max_bytes):
            if len(data) <= _INLINE_BYTES:
                result = extract_text(data, media_type, max_bytes=self._limits.max_bytes)
            else:
                result = await asyncio.to_thread(
                    extract_text, data, media_type, max_bytes=self._limits.max_bytes
                )
            self._count("in_process", "completed")
            return result
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()
        try:
            return await loop.run_in_executor(
                self._threads, self._extract_blocking, data, media_type, abandoned
            )
        except asyncio.CancelledError:
            # Nobody wants the answer any more: free the worker now, not at the timeout.
            # The thread itself kills the worker and hands the slot back.
            abandoned.set()
            raise

    async def extract_many(self, items: Sequence[tuple[bytes, str]]) -> list[ExtractedText]:
        """Extract many documents concurrently; results are in the order of ``items``."""
        return list(await asyncio.gather(*(self.extract(data, kind) for data, kind in items)))

    async def start(self) -> None:
        """Start every worker process now rather than on first use."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._threads, self._warm_one) for _ in self._slots)
        )

    def close(self) -> None:
        """Kill the workers and refuse further work; documents still running raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            processes = list(self._live.values())
            idle: list[_Slot] = []
            while True:
                try:
                    idle.append(self._free.get_nowait())
                except queue.Empty:
                    break
        for process in processes:
            # Busy workers are only signalled: the thread that owns one sees end-of-file
            # on its pipe and reaps it, so no two threads ever wait on one process.
            process.kill()
        for slot in idle:
            self._discard(slot, kill=True)
        # Queued documents still run, to fail fast with PoolClosedError rather than be
        # cancelled, which would tell their callers that *they* were cancelled.
        self._threads.shutdown(wait=False)

    async def __aenter__(self) -> Self:
        """Start the workers, so the first PDF does not pay for it."""
        try:
            await self.start()
        except BaseException:
            self.close()  # __aexit__ does not run when __aenter__ fails
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the pool."""
        self.close()

    # --- runs in the pool's threads ---------------------------------------------------------

    def _count(self, *names: str) -> None:
        """Add one to each named counter."""
        with self._lock:
            for name in names:
                self._stats[name] += 1

    def _acquire(self) -> _Slot:
        """Take a free slot; never waits, as there are as many slots as threads."""
        if self._closed:
            raise PoolClosedError("the extraction pool is closed")
        return self._free.get()

    def _release(self, slot: _Slot) -> None:
        """Hand a slot back, or clean it up if the pool closed meanwhile."""
        with self._lock:
            if not self._closed:
                self._free.put(slot)
                return
        self._discard(slot, kill=True)

    def _warm_one(self) -> None:
        """Make sure one slot has a running worker."""
        slot = self._acquire()
        try:
            self._ensure_worker(slot)
        finally:
            self._release(slot)

    def _extract_blocking(
        self, data: bytes, media_type: str, abandoned: threading.Event
    ) -> ExtractedText:
        """Run one document on a worker, enforcing the time limit."""
        slot = self._acquire()
        try:
            result = self._run(slot, data, media_type, abandoned)
        finally:
            self._release(slot)
        self._count("worker_tasks", "completed")
        return result

    def _run(
        self, slot: _Slot, data: bytes, media_type: str, abandoned: threading.Event
    ) -> ExtractedText:
        """Hand the document to the slot's worker, replacing it once if it was found dead."""
        job = (data, media_type, self._limits.max_bytes)
        for _attempt in range(2):
            conn = self._ensure_worker(slot)
            try:
                conn.send(job)
            except OSError:  # it died while idle; the document never reached it
                self._discard(slot, kill=True)
                continue
            return self._collect(slot, conn, abandoned)
        raise RuntimeError("extraction workers die before they can take a document")

    def _collect(self, slot: _Slot, conn: Connection, abandoned: threading.Event) -> ExtractedText:
        """Wait for the worker's answer; kill it if it is late, replace it if it died."""
        deadline = time.monotonic() + self._limits.timeout_seconds
        while not conn.poll(min(max(deadline - time.monotonic(), 0.0), _POLL_SLICE)):
            if abandoned.is_set():
                self._discard(slot, kill=True)
                self._count("abandoned")
                return ExtractedText(ExtractionStatus.TIMEOUT)  # for no one: the caller is gone
            if time.monotonic() >= deadline:
                pid = slot.process.pid if slot.process is not None else None
                logger.warning(
                    "extraction worker %s timed out after %.1f s; killing it",
                    pid,
                    self._limits.timeout_seconds,
                )
                self._discard(slot, kill=True)
                self._count("timeouts")
                return ExtractedText(ExtractionStatus.TIMEOUT)
        try:
            status, text, pages, retiring = conn.recv()
        except (EOFError, OSError):
            exitcode = self._discard(slot, kill=True)
            if self._closed:
                raise PoolClosedError("the extraction pool closed during extraction") from None
            logger.warning("extraction worker died with exit code %s while working", exitcode)
            self._count("worker_deaths")
            return ExtractedText(ExtractionStatus.CORRUPT)
        result = ExtractedText(ExtractionStatus(status), text, pages)
        if retiring:
            self._discard(slot, kill=False)
            if result.status is ExtractionStatus.TOO_LARGE:
                self._count("memory_errors")
        return result

    def _ensure_worker(self, slot: _Slot) -> Connection:
        """Return the slot's pipe, starting a worker first if it has none or it died."""
        if slot.process is not None and slot.conn is not None and slot.process.is_alive():
            return slot.conn
        if slot.process is not None:
            self._discard(slot, kill=True)
        if self._closed:
            raise PoolClosedError("the extraction pool is closed")
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_end, self._limits.memory_bytes),
            name=f"triage-extraction-{slot.index}",
            daemon=True,
        )
        try:
            # Outside the lock: the first start also launches the fork server (~0.5 s).
            process.start()
        finally:
            # Only the child may hold its end: end-of-file must mean the worker is gone.
            child_end.close()
        with self._lock:
            self._live[slot.index] = process
            slot.process, slot.conn = process, parent_end
            self._stats["workers_started"] += 1
            if slot.starts:
                self._stats["worker_restarts"] += 1
            slot.starts += 1
            closed = self._closed
        try:
            ready = not closed and parent_end.poll(_STARTUP_TIMEOUT) and parent_end.recv() == _READY
        except (EOFError, OSError):
            ready = False
        if not ready:
            exitcode = self._discard(slot, kill=True)
            if self._closed:
                raise PoolClosedError("the extraction pool closed while a worker started")
            raise RuntimeError(
                f"extraction worker exited with code {exitcode} while starting; its stderr "
                f"says why (memory_bytes={self._limits.memory_bytes} too small to load the "
                "parser is one cause)"
            )
        return parent_end

    def _discard(self, slot: _Slot, *, kill: bool) -> int | None:
        """Stop and reap the slot's worker and close its pipe; return its exit code."""
        with self._lock:
            process, conn = slot.process, slot.conn
            slot.process = slot.conn = None
            self._live.pop(slot.index, None)
        exitcode = None
        if process is not None:
            if kill and process.is_alive():
                process.kill()
            process.join(_EXIT_GRACE)
            if process.is_alive():  # a retiring worker that hangs on its way out
                process.kill()
                process.join()
            exitcode = process.exitcode
        if conn is not None:
            conn.close()
        return exitcode
