"""Structured JSON logging. Log lines carry ids and counts, never document text or addresses."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# LogRecord attributes that are not user-supplied extras.
_RESERVED = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


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
    """Send all logging to stderr, as JSON lines or plain text."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(logging.Formatter(f"%(asctime)s {service} %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
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
