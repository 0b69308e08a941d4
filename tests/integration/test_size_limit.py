"""One size limit, TRIAGE_INGEST_MAX_DOCUMENT_BYTES, on every path (issue 20, defect 9).

IMAP's side is in test_imap.py (it needs the real Dovecot's mailboxes).
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import free_port, isolated_ingest_settings, new_api_key, sql_rows
from tests.kafkatools import collect
from tests.stack import Stack
from triage_contracts import topics
from triage_ingest.app import create_app

LIMIT = 50_000


def _letters(stack: Stack, count: int) -> list[dict[str, Any]]:
    return asyncio.run(
        collect(
            stack.kafka_bootstrap,
            [stack.topic(topics.DEADLETTER)],
            until=lambda ms: len(ms) >= count,
        )
    )


def _mail(size: int) -> bytes:
    """A mail of exactly ``size`` bytes as SMTP counts them (CRLF line ends, no final dot)."""
    head = b"From: dana@example.com\r\nSubject: Sized\r\n\r\n"
    n = size - len(head)
    full = n // 100 - 1
    mail = head + (b"x" * 98 + b"\r\n") * full + b"y" * (n - 100 * full - 2) + b"\r\n"
    assert len(mail) == size
    return mail


def _wait_for(path: Path, pattern: str, *, timeout: float = 20.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := sorted(path.glob(pattern)):
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing matched {pattern} in {path}")


def test_every_path_takes_the_limit_and_refuses_a_byte_more(
    isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    settings = isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        max_document_bytes=LIMIT,
        smtp_enabled=True,
        smtp_port=free_port(),
        smtp_allowed_recipients=["triage@example.org"],
        drop_dir=tmp_path / "drop",
        drop_poll_seconds=0.2,
    )
    outside = tmp_path / "outside"
    outside.mkdir()
    with TestClient(create_app(settings)) as client:
        key = new_api_key(settings.database_url, "portal")

        def upload(data: bytes, headers: dict[str, str]) -> int:
            files = {"files": ("a.txt", data, "text/plain")}
            return client.post("/v1/documents", files=files, headers=headers).status_code

        # Upload: the limit is taken, a byte more is 413; without a key, 401 either way.
        assert upload(b"a" * LIMIT, {"X-API-Key": key}) == 202
        assert upload(b"b" * (LIMIT + 1), {"X-API-Key": key}) == 413
        assert upload(b"c" * (LIMIT + 1), {}) == 401

        # SMTP: the same.
        with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=10) as smtp:
            assert smtp.sendmail("dana@example.com", ["triage@example.org"], _mail(LIMIT)) == {}
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                smtp.sendmail("dana@example.com", ["triage@example.org"], _mail(LIMIT + 1))
            assert refused.value.smtp_code == 552

        # Drop folder: the same (files renamed in, so taken on the next pass).
        for name, size in (("fits.txt", LIMIT), ("over.txt", LIMIT + 1)):
            (outside / name).write_bytes(b"d" * size)
            (outside / name).rename(settings.drop_dir / "inbox" / name)  # type: ignore[operator]
        _wait_for(settings.drop_dir / "done", "*fits.txt")  # type: ignore[operator]
        _wait_for(settings.drop_dir / "failed", "*over.txt")  # type: ignore[operator]
        [letter] = _letters(isolated, 1)
    assert letter["value"]["error_class"] == "oversize"
    assert f"over the {LIMIT}-byte limit" in letter["value"]["reason"]
    sizes = sql_rows(
        settings.database_url, "SELECT source_kind, size_bytes FROM document ORDER BY source_kind"
    )
    # The upload and the dropped file at the limit; the mail's body (its raw is the limit).
    assert [kind for kind, _ in sizes] == ["folder", "smtp", "upload"]
    assert sizes[0][1] == sizes[2][1] == LIMIT
