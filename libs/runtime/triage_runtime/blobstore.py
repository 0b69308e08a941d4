"""Content-addressed blob storage: raw document bytes live here, events carry only the hash."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

CHUNK_BYTES = 1024 * 1024


class BlobNotFoundError(LookupError):
    """No blob is stored under that hash."""


class BlobIntegrityError(RuntimeError):
    """Stored bytes do not match the SHA-256 they are stored under."""


@dataclass(frozen=True, slots=True)
class ListedBlob:
    """A blob as listed: its hash and when its bytes were last written."""

    sha256: str
    modified_at: datetime


def is_sha256(name: str) -> bool:
    """Say whether ``name`` is a SHA-256 hex digest as blobs are named (lower case)."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes in hex, read in chunks (the hash a store gives them)."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore(Protocol):
    """Where raw bytes are kept, addressed by their SHA-256."""

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 in hex; storing the same bytes twice is a no-op."""
        ...

    def put_file(self, path: Path) -> str:
        """Store a file's bytes, reading it in chunks; return their SHA-256 in hex."""
        ...

    def get(self, sha256: str) -> bytes:
        """Return the bytes stored under ``sha256`` or raise BlobNotFoundError."""
        ...

    def exists(self, sha256: str) -> bool:
        """Say whether a blob is stored under ``sha256``."""
        ...

    def delete(self, sha256: str) -> bool:
        """Remove the blob under ``sha256`` (retention); return whether one was there."""
        ...

    def list_blobs(self) -> Iterator[ListedBlob]:
        """Every stored blob, in no promised order (the orphan sweep reads it)."""
        ...


class LocalBlobStore:
    """A blob store in a local directory, sharded by the first hash digits; writes are atomic."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self._root / "sha256" / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` and return its SHA-256 in hex; storing the same bytes twice is a no-op."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write to a temporary file in the same directory, fsync, then rename: a reader
        # never sees a partial blob and a crash leaves at most a stray temp file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def put_file(self, path: Path) -> str:
        """Store a file's bytes, reading it in chunks; return their SHA-256 in hex."""
        self._root.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            target = self._path(digest.hexdigest())
            if target.exists():
                Path(tmp).unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                Path(tmp).replace(target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest.hexdigest()

    def get(self, sha256: str) -> bytes:
        """Return the bytes stored under ``sha256``: BlobNotFoundError when there are none,
        BlobIntegrityError when they changed on disk (as the S3 store checks too)."""
        try:
            data = self._path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise BlobNotFoundError(sha256) from exc
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobIntegrityError(f"the blob stored under {sha256} does not match its hash")
        return data

    def exists(self, sha256: str) -> bool:
        """Say whether a blob is stored under ``sha256``."""
        return self._path(sha256).exists()

    def delete(self, sha256: str) -> bool:
        """Remove the blob under ``sha256`` (retention); return whether one was there."""
        path = self._path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    def list_blobs(self) -> Iterator[ListedBlob]:
        """Every stored blob, in no promised order (the orphan sweep reads it)."""
        for path in (self._root / "sha256").glob("??/??/*"):
            if not is_sha256(path.name):  # a write's temporary file
                continue
            try:
                mtime = path.stat().st_mtime
            except FileNotFoundError:  # removed since it was listed
                continue
            yield ListedBlob(path.name, datetime.fromtimestamp(mtime, UTC))
