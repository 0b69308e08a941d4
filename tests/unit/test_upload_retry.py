"""``triage upload`` against a tiny real HTTP server that answers 503, 429 and 409 with Retry-After:
the CLI waits what it is told, keeps one Idempotency-Key per file, and gives up when told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from triage_cli.exit_codes import SKIPPED, UNREACHABLE
from triage_cli.main import app


class Script:
    """What the server answers, request by request, and what it was sent."""

    def __init__(self, answers: list[tuple[int, dict[str, str]]], *, then: int = 202) -> None:
        self.answers = answers
        self.then = then
        self.seen: list[tuple[float, str | None, str]] = []  # (time, Idempotency-Key, name)


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            name = body.split(b'filename="', 1)[1].split(b'"', 1)[0].decode()
            script.seen.append((time.monotonic(), self.headers.get("Idempotency-Key"), name))
            status, headers = script.answers.pop(0) if script.answers else (script.then, {})
            payload: dict[str, object] = (
                {"documents": [{"document_id": f"doc-{len(script.seen)}"}]}
                if status == 202
                else {"detail": "busy"}
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            for key, value in {**headers, "Content-Type": "application/json"}.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # every document ends dead-lettered
            data = json.dumps(
                {
                    "status": "dead_lettered",
                    "queue": None,
                    "model_version": None,
                    "dead_letter": {
                        "stage": "classifier",
                        "error_class": "undecodable",
                        "reason": "not JSON",
                    },
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("please pay invoice 7")
    return path


def test_503_429_and_409_are_retried_after_their_retry_after_with_one_idempotency_key(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    script.answers = [
        (503, {"Retry-After": "1"}),
        (429, {"Retry-After": "2"}),
        (409, {"Retry-After": "1"}),
    ]
    result = CliRunner().invoke(
        app, ["upload", str(_file(tmp_path, "a.txt")), "--url", url, "--api-key", "k"]
    )
    assert result.exit_code == 0, result.output
    assert len(script.seen) == 4
    (t1, key1, _), (t2, key2, _), (t3, key3, _), (t4, key4, _) = script.seen
    assert key1 is not None and key1 == key2 == key3 == key4  # never a second document
    assert t2 - t1 >= 0.95 and t3 - t2 >= 1.95 and t4 - t3 >= 0.95  # each Retry-After
    assert "doc-4" in result.output  # the fourth request's answer


def test_attempts_are_bounded_and_the_batch_goes_on(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = server
    script.answers = [(503, {"Retry-After": "0"})] * 3 + [(400, {})]
    files = [str(_file(tmp_path, n)) for n in ("busy.txt", "refused.txt", "fine.txt")]
    result = CliRunner().invoke(app, ["upload", *files, "--url", url, "--attempts", "3"])
    assert result.exit_code == SKIPPED, result.output
    names = [name for _, _, name in script.seen]
    # busy.txt three times (bounded), refused.txt once (400 is final), fine.txt after them.
    assert names == ["busy.txt"] * 3 + ["refused.txt", "fine.txt"]
    assert len({key for _, key, _ in script.seen}) == 3  # one key per file
    assert "after 3 attempt(s)" in result.output
    assert "400 busy" in result.output and "doc-5" in result.output
    assert "uploaded 1 of 3 file(s)" in result.output


def test_a_service_nobody_answers_is_unreachable(tmp_path: Path) -> None:
    from tests.helpers import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        app, ["upload", str(_file(tmp_path, "a.txt")), "--url", url, "--attempts", "1"]
    )
    assert result.exit_code == UNREACHABLE, result.output
    assert "could not connect" in result.output


def test_a_bad_type_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["upload", str(_file(tmp_path, "a")), "--type", "pdf"])
    assert result.exit_code == 2
    assert "not a media type" in result.output


def test_retry_delay_honours_retry_after_else_backs_off_exponentially() -> None:
    from triage_cli.upload_cli import MAX_DELAY, retry_delay

    now = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    assert retry_delay("3", 1, base=1.0) == 3.0
    assert retry_delay("Sun, 06 Dec 2026 12:00:07 GMT", 1, base=1.0, now=now) == 7.0
    assert retry_delay("Sun, 06 Dec 2026 11:00:00 GMT", 1, base=1.0, now=now) == 0.0
    assert [retry_delay(None, a, base=1.0) for a in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert retry_delay("soon", 2, base=0.5) == 1.0  # unusable: the backoff
    assert retry_delay("3600", 1, base=1.0) == MAX_DELAY
    assert retry_delay(None, 30, base=1.0) == MAX_DELAY


def test_wait_shows_a_dead_lettered_document_with_its_reason(
    server: tuple[str, Script], tmp_path: Path
) -> None:
    url, _ = server
    started = time.monotonic()
    result = CliRunner().invoke(
        app, ["upload", str(_file(tmp_path, "a.txt")), "--url", url, "--wait", "20"]
    )
    assert result.exit_code == 0, result.output
    assert "dead-lettered: not JSON" in result.output
    assert time.monotonic() - started < 10  # a terminal state: no waiting for --wait to end
