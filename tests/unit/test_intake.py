"""Intake.store_files: several files into the blob store at once, in order, nothing half-done."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from tests.unit.inmemory import MemoryBlobHolds
from triage_contracts import Producer
from triage_ingest.intake import Intake
from triage_runtime.blobstore import LocalBlobStore


class SlowBlobs(LocalBlobStore):
    """A local blob store whose writes take a while, and which counts the finished ones."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.finished = 0
        self._lock = threading.Lock()

    def put_file(self, path: Path) -> str:
        if not path.exists():  # fails at once, while the others are still writing
            raise FileNotFoundError(path)
        time.sleep(0.05)
        sha = super().put_file(path)
        with self._lock:
            self.finished += 1
        return sha


def _intake(blobs: LocalBlobStore) -> Intake:
    unused = cast(Any, None)  # store_files touches only the blob store, and holds what it stores
    return Intake(
        blobs=blobs,
        broker=unused,
        store=cast(Any, MemoryBlobHolds()),
        outbox=unused,
        producer=Producer(service="ingest", version="test"),
        documents_topic="documents",
        deadletter_topic="deadletter",
    )


def test_files_are_stored_together_and_hashes_come_back_in_order(tmp_path: Path) -> None:
    blobs = SlowBlobs(tmp_path / "blobs")
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i}.txt")
        files[-1].write_bytes(f"document {i}".encode())
    hashes = asyncio.run(_intake(blobs).store_files(files))
    assert hashes == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    assert [blobs.get(h) for h in hashes] == [f.read_bytes() for f in files]


def test_a_failure_is_raised_only_after_every_other_write_finished(tmp_path: Path) -> None:
    blobs = SlowBlobs(tmp_path / "blobs")
    good = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for path in good:
        path.write_bytes(path.name.encode())
    with pytest.raises(FileNotFoundError):
        asyncio.run(_intake(blobs).store_files([tmp_path / "missing.txt", *good]))
    assert blobs.finished == 2
    assert all(blobs.exists(hashlib.sha256(p.read_bytes()).hexdigest()) for p in good)
