"""Drop-folder connector: files put in DROP_DIR/inbox are ingested, then moved to done/ or failed/.

Writers should create a file elsewhere (or as a dot-file) and rename it into inbox/, so it is
never read half-written. A file written in place is taken only once its size and mtime have
been seen unchanged for the settle interval (``drop_settle_seconds``), however long the writer
pauses before that; a file renamed in (its inode changed after its content did) is taken at
once.
A file is claimed by renaming it into processing/ (atomic on one filesystem), so two
connectors never take the same file, and files left in processing/ by a crash are retried.

Hostile files get a reason, never a stuck folder: a symbolic link is moved to failed/ without
being followed (its target path is what is kept), a name too long to take a claim prefix is
shortened from the front (the extension stays), an email over the size limit is not read,
and a file that fails for any other reason is retried on the next pass without holding up
the files after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
import uuid
from pathlib import Path

from triage_contracts import ErrorClass, Source, SourceKind
from triage_ingest import domain
from triage_ingest.intake import Intake
from triage_ingest.metrics import CONNECTOR_ITEMS
from triage_ingest.settings import Settings
from triage_text.email.parse import EMAIL_MEDIA_TYPE
from triage_text.mediatype import SNIFF_BYTES

log = logging.getLogger(__name__)

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload")
# A claimed name adds "xxxxxxxx-".
_CLAIM_PREFIX_BYTES = 9


class DropFolder:
    """Polls a directory tree and ingests what appears in its inbox."""

    def __init__(self, intake: Intake, settings: Settings) -> None:
        assert settings.drop_dir is not None
        self._intake = intake
        self._root = settings.drop_dir
        self._poll = settings.drop_poll_seconds
        self._settle = settings.drop_settle_seconds
        # name -> (inode, size, mtime, ctime) when first seen so, and when (monotonic clock).
        self._seen: dict[str, tuple[tuple[int, int, int, int], float]] = {}
        self._max_bytes = settings.max_document_bytes
        self._source = Source(kind=SourceKind.FOLDER, name=settings.drop_source_name)
        self._task: asyncio.Task[None] | None = None
        self.inbox, self.processing = self._root / "inbox", self._root / "processing"
        self.done, self.failed = self._root / "done", self._root / "failed"

    async def start(self) -> None:
        """Create the folders and start polling."""
        for folder in (self.inbox, self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="drop-folder")

    async def stop(self) -> None:
        """Stop polling; a file being processed finishes first or is retried on restart."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:
                log.exception("drop folder pass failed; retrying")
            await asyncio.sleep(self._poll)

    def _claimable(self) -> list[Path]:
        now = time.monotonic()
        seen: dict[str, tuple[tuple[int, int, int, int], float]] = {}
        ready = []
        for path in self.inbox.iterdir():
            if path.name.startswith(".") or path.name.endswith(IGNORED_SUFFIXES):
                continue
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue  # renamed away or claimed by another connector meanwhile
            # Links are taken too (never followed), so they do not sit in the inbox forever.
            if not (stat.S_ISLNK(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue
            signature = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            previous = self._seen.get(path.name)
            since = previous[1] if previous and previous[0] == signature else now
            seen[path.name] = (signature, since)
            if _renamed_in(info) or now - since >= self._settle:
                ready.append(path)
        self._seen = seen
        return sorted(ready)

    def _leftovers(self) -> list[Path]:
        return sorted(p for p in self.processing.iterdir() if p.is_symlink() or p.is_file())

    def _claim(self, path: Path) -> Path | None:
        claimed = self.processing / f"{uuid.uuid4().hex[:8]}-{_claimable_name(path.name)}"
        try:
            path.rename(claimed)
        except FileNotFoundError:
            return None  # another connector took it
        return claimed

    async def poll_once(self) -> int:
        """Claim and ingest every settled file (and any left in processing/); return how many."""
        handled = 0
        # Leftovers first: a crash after claiming must not lose a file.
        for leftover in await asyncio.to_thread(self._leftovers):
            handled += await self._handle_or_keep(leftover)
        for path in await asyncio.to_thread(self._claimable):
            claimed = await asyncio.to_thread(self._claim, path)
            if claimed is not None:
                handled += await self._handle_or_keep(claimed)
        return handled

    async def _handle_or_keep(self, path: Path) -> int:
        """Handle one claimed file; on failure keep it in processing/ for the next pass."""
        try:
            await self._handle(path)
        except Exception:
            # Broker or database trouble, or a file nothing here foresaw: it is retried on
            # the next pass, and the files after it are not held up meanwhile.
            log.exception("could not ingest a dropped file; it stays in processing/")
            CONNECTOR_ITEMS.labels("folder", "deferred").inc()
            return 0
        return 1

    async def _handle(self, path: Path) -> None:
        original_name = path.name.split("-", 1)[1] if "-" in path.name else path.name
        if await asyncio.to_thread(path.is_symlink):
            await self._fail_link(path, original_name)
            return
        size = (await asyncio.to_thread(path.stat)).st_size
        if original_name.lower().endswith(".eml") and size > self._max_bytes:
            reason = f"email is {size} bytes, over the {self._max_bytes}-byte limit"
            await self._fail(path, original_name, size, ErrorClass.OVERSIZE, reason)
            return
        if original_name.lower().endswith(".eml"):
            raw = await asyncio.to_thread(path.read_bytes)
            await self._intake.accept_email(raw, source=self._source, name=original_name)
            await asyncio.to_thread(self._finish, path, self.done)
            CONNECTOR_ITEMS.labels("folder", "ingested").inc()
            return
        try:
            # Typed as an untyped upload is: by content first, then by the name's extension.
            head = await asyncio.to_thread(_head, path)
            media_type = domain.media_type_for(None, original_name, head)
        except domain.UnsupportedMediaTypeError as exc:
            await self._fail(path, original_name, size, ErrorClass.UNSUPPORTED_MEDIA_TYPE, str(exc))
            return
        if size > self._max_bytes:
            reason = f"file is {size} bytes, over the {self._max_bytes}-byte limit"
            await self._fail(path, original_name, size, ErrorClass.OVERSIZE, reason)
            return
        sha256 = await self._intake.store_file(path)
        await self._intake.accept(
            source=self._source,
            sha256=sha256,
            size_bytes=size,
            media_type=media_type,
            filename=original_name,
        )
        await asyncio.to_thread(self._finish, path, self.done)
        CONNECTOR_ITEMS.labels("folder", "ingested").inc()

    async def _fail(
        self, path: Path, name: str, size: int, error_class: ErrorClass, reason: str
    ) -> None:
        sha256 = await self._intake.store_file(path)
        guessed = EMAIL_MEDIA_TYPE if name.endswith(".eml") else "application/octet-stream"
        await self._intake.dead_letter(
            source=self._source,
            raw_sha256=sha256,
            raw_size=size,
            media_type=guessed,
            error_class=error_class,
            reason=reason,
            raw_name=name,
        )
        await asyncio.to_thread(self._finish_failed, path, f"{error_class}: {reason}\n")
        CONNECTOR_ITEMS.labels("folder", "failed").inc()

    async def _fail_link(self, path: Path, name: str) -> None:
        """Move a symbolic link to failed/ unfollowed; its target path is the kept input."""
        target = os.fsencode(await asyncio.to_thread(os.readlink, path))
        sha256 = await self._intake.store_bytes(target)
        reason = "a symbolic link is not a file; links are never followed"
        await self._intake.dead_letter(
            source=self._source,
            raw_sha256=sha256,
            raw_size=len(target),
            media_type="inode/symlink",
            error_class=ErrorClass.UNSUPPORTED_MEDIA_TYPE,
            reason=reason,
            raw_name=name,
        )
        await asyncio.to_thread(
            self._finish_failed, path, f"{ErrorClass.UNSUPPORTED_MEDIA_TYPE}: {reason}\n"
        )
        CONNECTOR_ITEMS.labels("folder", "failed").inc()

    def _finish_failed(self, path: Path, reason: str) -> None:
        target = self._finish(path, self.failed)
        target.with_name(target.name + ".reason.txt").write_text(reason)

    @staticmethod
    def _finish(path: Path, folder: Path) -> Path:
        target = folder / path.name
        path.rename(target)
        return target


def _head(path: Path) -> bytes:
    """A file's first bytes, by which its type is decided."""
    with path.open("rb") as handle:
        return handle.read(SNIFF_BYTES)


def _renamed_in(info: os.stat_result) -> bool:
    """Whether the inode changed after its content last did, as a rename into the inbox makes
    it (the content is complete); a writer's pause never does this, so such a file waits."""
    return info.st_ctime_ns > info.st_mtime_ns


def _claimable_name(name: str) -> str:
    """Return ``name`` cut from the front, if need be, to leave room for the claim prefix."""
    return domain.shortened_name(name, domain.MAX_NAME_BYTES - _CLAIM_PREFIX_BYTES)
