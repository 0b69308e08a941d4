"""The upload API's edge on a real HTTP server: stalled and unauthenticated clients.

A real uvicorn server (not the in-process TestClient), because only a real server has
sockets that a client can stall and bodies that arrive over time.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.helpers import free_port, new_api_key
from tests.stack import Stack
from triage_ingest.app import create_app
from triage_ingest.settings import Settings

BOUNDARY = "edge-boundary"


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return Settings(
        kafka_bootstrap=isolated.kafka_bootstrap,
        database_url=clean_db,
        blob_dir=tmp_path / "blobs",
        topic_prefix=isolated.topic_prefix,
        max_upload_bytes=64 * 1024 * 1024,
        max_files_per_request=2,
        max_concurrent_uploads=3,
        max_concurrent_uploads_per_key=1,
        body_idle_timeout_seconds=2.0,
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The ingest app served by uvicorn on a free port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline, "ingest did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=30)


def _stalled(base: str, *, key: str | None, declared: int, sent: int) -> socket.socket:
    """A socket that sent an upload's headers and ``sent`` bytes of a ``declared`` body, then
    stopped sending."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1/documents HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n"
    )
    if key is not None:
        head += f"X-API-Key: {key}\r\n"
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    sock.sendall(head.encode() + b"\r\n" + (part + b"x" * sent)[:sent])
    return sock


def _answer(sock: socket.socket, *, within: float) -> tuple[int, bytes]:
    """The status and body of the server's answer on ``sock``, read within ``within`` s
    (each answer here closes the connection, which ends it)."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"no answer within {within} s (got {data[:80]!r})")
    except ConnectionResetError:
        pass  # closed with part of our body unread: the answer before it is what counts
    status_line = data.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), data.split(b"\r\n\r\n", 1)[-1]


def _upload(base: str, key: str, name: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/documents",
        headers={"X-API-Key": key},
        files={"files": (name, f"a note called {name}".encode(), "text/plain")},
        timeout=30,
    )


def _outcome(base: str, outcome: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(
        rf'^triage_ingest_uploads_total\{{outcome="{outcome}"\}} (\S+)$', text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_stalled_clients_without_a_key_take_no_upload_slot(server: str, settings: Settings) -> None:
    key = new_api_key(settings.database_url, "portal")
    # Twice as many stalled sockets as the service has slots, with no key or a wrong one.
    stalled = [
        _stalled(server, key=None if i % 2 else "tri_wrong", declared=60 * 1024**2, sent=4096)
        for i in range(2 * settings.max_concurrent_uploads)
    ]
    try:
        time.sleep(0.3)  # every stalled request has reached the server
        # While they are open, a client with a key is not refused for want of a slot.
        response = _upload(server, key, "wanted.txt")
        assert response.status_code == 202, response.text
        answers = [_answer(sock, within=5) for sock in stalled]
        # Each was answered 401 from its headers, having sent 4 KiB of its 60 MiB body.
        assert [status for status, _ in answers] == [401] * len(stalled)
        assert json.loads(answers[0][1])["detail"] == "a valid X-API-Key header is required"
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_upload_holds_only_its_own_keys_slot_and_is_cut_off(
    server: str, settings: Settings
) -> None:
    slow = new_api_key(settings.database_url, "slow")
    other = new_api_key(settings.database_url, "other")
    timeouts_before = _outcome(server, "body_timeout")
    started = time.monotonic()
    stalled = _stalled(server, key=slow, declared=1024**2, sent=4096)
    try:
        time.sleep(0.3)  # the stalled upload is now in progress
        busy = _upload(server, slow, "second.txt")
        assert busy.status_code == 429, busy.text
        assert busy.headers["retry-after"] == "1"
        # Another key is not held up by it.
        assert _upload(server, other, "fine.txt").status_code == 202
        status, body = _answer(stalled, within=settings.body_idle_timeout_seconds + 5)
        waited = time.monotonic() - started
    finally:
        stalled.close()
    assert status == 408, body
    assert settings.body_idle_timeout_seconds <= waited < settings.body_idle_timeout_seconds + 4
    assert _outcome(server, "body_timeout") == timeouts_before + 1
    # Its slot is free again.
    assert _upload(server, slow, "third.txt").status_code == 202


def test_deeply_nested_metadata_is_422_not_500(server: str, settings: Settings) -> None:
    key = new_api_key(settings.database_url, "portal")
    for metadata in ('{"a": ' + "[" * 50_000 + "]" * 50_000 + "}", json.dumps({"a": "x" * 70_000})):
        response = httpx.post(
            f"{server}/v1/documents",
            headers={"X-API-Key": key},
            files={"files": ("a.txt", b"a note", "text/plain")},
            data={"metadata": metadata},
            timeout=30,
        )
        assert response.status_code == 422, response.text
        assert "metadata" in response.json()["detail"]
