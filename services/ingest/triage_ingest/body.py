"""An upload's body while it streams in: cut off when it stalls or trickles (408), refused
as soon as a file, the number of files or the form around them passes its limit (413).

The route's form is parsed by starlette's multipart parser, which spools every file in full
before the handler sees any; so the sizes are watched here, on the ASGI ``receive`` the
parser reads from, with the same parser library (python-multipart) fed the same bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, status
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.types import Message, Receive

from triage_ingest.metrics import UPLOADS
from triage_ingest.settings import FORM_BYTES, Settings

# Time a body that stalls, or trickles under the minimum rate, is given once it is late.
LATE_GRACE_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """What one upload's body may do."""

    idle_seconds: float
    min_bytes_per_second: float  # 0: no minimum
    max_file_bytes: int
    max_files: int
    max_form_bytes: int = FORM_BYTES

    @classmethod
    def of(cls, settings: Settings) -> BodyLimits:
        """The limits the settings give every key (there are no per-key file limits)."""
        return cls(
            idle_seconds=settings.body_idle_timeout_seconds,
            min_bytes_per_second=settings.min_body_bytes_per_second,
            max_file_bytes=settings.max_document_bytes,
            max_files=settings.max_files_per_request,
        )


def file_too_large(filename: str | None, limit: int) -> HTTPException:
    """The 413 for one file over the per-file limit."""
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"{filename or 'file'} is larger than the {limit}-byte limit",
    )


def too_many_files(max_files: int) -> HTTPException:
    """The 413 for a request with more files than it may have."""
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE, f"at most {max_files} files per request"
    )


def _refused(exc: HTTPException) -> HTTPException:
    UPLOADS.labels("too_large").inc()
    exc.headers = {"Connection": "close"}  # the rest of the body is never read
    return exc


class FormSizes:
    """Sizes of a multipart body's parts as its bytes come: refuses (413) the moment a file
    passes ``max_file_bytes``, a file past ``max_files`` starts, or the bytes that are not
    file contents pass ``max_form_bytes``. A body it cannot parse it leaves to the form
    parser (which answers 400)."""

    def __init__(self, boundary: bytes, limits: BodyLimits) -> None:
        """Raise ``FormParserError`` for a boundary the parser will not take."""
        self._limits = limits
        self._parser: MultipartParser | None = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
            },
        )
        self.files = 0
        self.seen = 0
        self.file_bytes = 0  # all files' contents so far
        self._part_bytes = 0
        self._filename: str | None = None
        self._in_file = False
        self._header = b""
        self._value = b""
        self._disposition = b""
        self._refusal: HTTPException | None = None

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body; raise the 413 if they break a limit."""
        self.seen += len(chunk)
        if self._parser is not None:
            try:
                self._parser.write(chunk)
            except FormParserError:  # not multipart as it said: the form parser will say so
                self._parser = None
        if self._refusal is None and self.seen - self.file_bytes > self._limits.max_form_bytes:
            self._refusal = HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"the form around the files is larger than {self._limits.max_form_bytes} bytes",
            )
        if self._refusal is not None:
            self._parser = None
            raise _refused(self._refusal)

    def _part_begin(self) -> None:
        self._in_file = False
        self._part_bytes = 0
        self._disposition = b""

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header = self._value = b""

    def _headers_finished(self) -> None:
        # A part is a file when it has a file name, as starlette's parser decides it.
        _, options = parse_options_header(self._disposition)
        if b"filename" not in options:
            return
        self._in_file = True
        self._filename = options[b"filename"].decode("utf-8", "replace")
        self.files += 1
        if self.files > self._limits.max_files and self._refusal is None:
            self._refusal = too_many_files(self._limits.max_files)

    def _part_data(self, _data: bytes, start: int, end: int) -> None:
        if not self._in_file:
            return
        self._part_bytes += end - start
        self.file_bytes += end - start
        if self._part_bytes > self._limits.max_file_bytes and self._refusal is None:
            self._refusal = file_too_large(self._filename, self._limits.max_file_bytes)


def multipart_boundary(content_type: bytes | None) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type, or None."""
    media_type, options = parse_options_header(content_type)
    return options.get(b"boundary") if media_type == b"multipart/form-data" else None


def watched(
    receive: Receive,
    *,
    content_type: bytes | None,
    limits: BodyLimits,
    clock: Callable[[], float] = time.monotonic,
) -> Receive:
    """``receive``, but the body is cut off with 408 when nothing comes for the idle timeout
    or it falls behind the minimum rate, and refused with 413 as soon as it breaks a size
    limit (for a multipart body).

    The rate is an allowance, as Apache's mod_reqtimeout counts it: the whole body is due
    ``idle_seconds`` after it starts plus one second for each ``min_bytes_per_second`` bytes
    that have come, so a client that sends a byte every few seconds is cut off, however
    short each gap.
    """
    boundary = multipart_boundary(content_type)
    try:
        sizes = FormSizes(boundary, limits) if boundary else None
    except FormParserError:  # the form parser refuses it too (400)
        sizes = None
    started = clock()
    received = 0
    body_done = False

    async def timed() -> Message:
        nonlocal received, body_done
        if body_done:  # after the body, only a disconnect can come: no deadline
            return await receive()
        wait = limits.idle_seconds
        too_slow = False
        if limits.min_bytes_per_second > 0:
            due = started + limits.idle_seconds + received / limits.min_bytes_per_second
            if due - clock() < wait:
                wait, too_slow = max(due - clock(), LATE_GRACE_SECONDS), True
        try:
            message = await asyncio.wait_for(receive(), wait)
        except TimeoutError:
            raise _late(limits, too_slow=too_slow) from None
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            received += len(chunk)
            if sizes is not None and chunk:
                sizes.feed(chunk)
            body_done = not message.get("more_body", False)
        else:
            body_done = True
        return message

    return timed


def _late(limits: BodyLimits, *, too_slow: bool) -> HTTPException:
    if too_slow:
        UPLOADS.labels("body_too_slow").inc()
        detail = f"the request body arrived slower than {limits.min_bytes_per_second:g} bytes/s"
    else:
        UPLOADS.labels("body_timeout").inc()
        detail = f"the request body stopped arriving for {limits.idle_seconds:g} s"
    return HTTPException(status.HTTP_408_REQUEST_TIMEOUT, detail, headers={"Connection": "close"})
