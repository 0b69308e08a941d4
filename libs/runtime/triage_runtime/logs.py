"""Structured JSON logging. Log lines carry ids and counts, never document text or addresses."""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

# LogRecord attributes that are not user-supplied extras; and uvicorn's ``color_message``, a
# copy of the message with terminal colour codes, which a log store shows as noise.
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object per line, with extras as top-level keys."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RESERVED and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(*, service: str, level: str = "INFO", json_lines: bool = True) -> None:
    """Send all logging to stderr, as JSON lines or plain text, through one handler.

    Libraries that install handlers of their own (FastStream's coloured text on stdout and
    stderr) lose them and pass their records up to it; so do Python's warnings and uncaught
    exceptions, which would otherwise be printed as plain text.
    """
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
    logging.captureWarnings(capture=True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    # aiokafka is chatty at INFO about every group join; warnings still come through.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # pdfminer's debug and info output quotes document content: never let it through.
    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    # aiosmtpd's "mail.log" quotes every SMTP command, sender and recipient addresses
    # included, at info and debug: only its warnings and errors may through (the e2e mail
    # test plants an address and searches every log line for it).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # imapclient logs IMAP traffic (message headers and bodies) at debug.
    logging.getLogger("imapclient").setLevel(max(logging.INFO, root.level))


def _log_uncaught(
    kind: type[BaseException], error: BaseException, traceback: TracebackType | None
) -> None:
    logging.getLogger("uncaught").critical(
        "uncaught exception: %s", kind.__name__, exc_info=(kind, error, traceback)
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    logging.getLogger("uncaught").critical(
        "uncaught exception in thread %s: %s",
        args.thread.name if args.thread else "?",
        args.exc_type.__name__,
        exc_info=args.exc_value,
    )
