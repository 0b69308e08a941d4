"""The upload API's edge on a real HTTP server: stalled and unauthenticated clients.

A real uvicorn server (not the in-process TestClient), because only a real server has
sockets that a client can stall and bodies that arrive over time.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.helpers import free_port, isolated_ingest_settings, new_api_key
from tests.stack import Stack
from triage_ingest.app import create_app
from triage_ingest.settings import Settings
from triage_runtime.serve import server_config

BOUNDARY = "edge-boundary"


@pytest.fixture
def settings(isolated: Stack, clean_db: str, tmp_path: Path) -> Settings:
    return isolated_ingest_settings(
        isolated,
        clean_db,
        tmp_path,
        max_document_bytes=64 * 1024 * 1024,
        max_files_per_request=2,
        max_concurrent_uploads=3,
        max_concurrent_uploads_per_key=1,
        body_idle_timeout_seconds=2.0,
        header_timeout_seconds=1.5,
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    """The ingest app served on a free port as ``triage-ingest`` serves it; yields its URL."""
    port = free_port()
    config = server_config(create_app(settings), settings, service="ingest", port=port)
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


def _sending(base: str, *, key: str | None, body: bytes, declared: int) -> socket.socket:
    """A socket that sent an upload's headers, declaring a ``declared``-byte multipart body,
    and then ``body`` (the start of it), and sends nothing more."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = (
        f"POST /v1/documents HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {declared}\r\n"
    )
    if key is not None:
        head += f"X-API-Key: {key}\r\n"
    sock.sendall(head.encode() + b"\r\n" + body)
    return sock


def _part(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"\r\nContent-Type: text/plain'
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content


def _stalled(base: str, *, key: str | None, declared: int, sent: int) -> socket.socket:
    """A socket that sent an upload's headers and ``sent`` bytes of a ``declared`` body, then
    stopped sending."""
    start = _part("files", b"x" * sent, "big.txt")[:sent]
    return _sending(base, key=key, body=start, declared=declared)


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


def _metric(base: str, sample: str) -> float:
    """The value of one sample (``name{labels}``) on the service's /metrics (0 if absent)."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _outcome(base: str, outcome: str) -> float:
    return _metric(base, f'triage_ingest_uploads_total{{outcome="{outcome}"}}')


HEADER_TIMEOUTS = 'triage_http_header_timeouts_total{service="ingest"}'


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


def _connect(base: str, sent: bytes) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if sent:
        sock.sendall(sent)
    return sock


def _closed_within(sock: socket.socket, within: float) -> bytes:
    """Everything the server sent on ``sock`` until it closed it, within ``within`` s."""
    sock.settimeout(within)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"still open after {within} s (got {data[:80]!r})")
    except ConnectionResetError:
        pass
    return data


def test_headers_that_stall_or_trickle_are_cut_off_at_the_header_deadline(
    server: str, settings: Settings
) -> None:
    deadline = settings.header_timeout_seconds
    before = _metric(server, HEADER_TIMEOUTS)
    started = time.monotonic()
    # No key is known yet to any of them: their headers never end.
    stalled = _connect(server, b"POST /v1/documents HTTP/1.1\r\nHost: x\r\nX-API-")
    silent = _connect(server, b"")
    trickling = _connect(server, b"POST /v1/documents HTTP/1.1\r\n")
    try:
        # A byte every 0.3 s does not move the deadline: the server answers mid-trickle.
        cut_after = None
        for byte in b"Host: 127.0.0.1\r\nX-Slow: " + b"y" * 30:
            if select.select([trickling], [], [], 0.3)[0]:
                cut_after = time.monotonic() - started
                break
            trickling.sendall(bytes([byte]))
        answers = [_closed_within(sock, deadline + 5) for sock in (stalled, trickling, silent)]
        waited = time.monotonic() - started
    finally:
        for sock in (stalled, silent, trickling):
            sock.close()
    assert cut_after is not None and deadline <= cut_after < deadline + 1.5, cut_after
    assert waited < deadline + 3
    # Those that sent part of a request are told why; the silent one is just closed.
    assert [answer.split(b"\r\n", 1)[0] for answer in answers] == [
        b"HTTP/1.1 408 Request Timeout",
        b"HTTP/1.1 408 Request Timeout",
        b"",
    ]
    assert _metric(server, HEADER_TIMEOUTS) == before + 3
    # Headers over h11's 16 KiB are refused at once.
    huge = _connect(server, b"POST /v1/documents HTTP/1.1\r\nX-Big: " + b"h" * 20_000)
    try:
        assert _closed_within(huge, 5).startswith(b"HTTP/1.1 400"), "no 400 for 20 KB headers"
    finally:
        huge.close()
    # A client that sends its headers in time, after an idle pause, is served.
    key = new_api_key(settings.database_url, "portal")
    assert _upload(server, key, "in-time.txt").status_code == 202


def test_a_keep_alive_connection_gets_the_header_deadline_again_for_its_next_request(
    server: str, settings: Settings
) -> None:
    sock = _connect(server, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        sock.settimeout(10)
        first = b""
        while b"\r\n\r\n" not in first or not first.endswith(b"}"):  # the whole JSON answer
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200"), first[:80]
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # the next request, never finished
        answer = _closed_within(sock, settings.header_timeout_seconds + 5)
        waited = time.monotonic() - started
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert waited < settings.header_timeout_seconds + 2


SMALL_FILE_LIMIT = 256 * 1024


def _over_a_size_limit(settings: Settings) -> dict[str, tuple[bytes, int, str]]:
    """Upload bodies that each break one size limit as they stream, with the Content-Length
    they declare (more than is sent: the rest never comes) and the 413 a keyed caller gets.
    For ``settings`` with the per-file limit lowered to SMALL_FILE_LIMIT."""
    more = 64 * 1024  # declared but never sent
    big_file = _part("files", b"x" * (SMALL_FILE_LIMIT + 1), "big.txt")
    files = b"".join(_part("files", b"x", f"{i}.txt") + b"\r\n" for i in range(3))
    form = _part("metadata", b"m" * (1024**2 + 1))
    return {
        "a file over the per-file limit": (
            big_file,
            len(big_file) + more,
            f"big.txt is larger than the {SMALL_FILE_LIMIT}-byte limit",
        ),
        "one file too many": (
            files,
            len(files) + more,
            f"at most {settings.max_files_per_request} files per request",
        ),
        "the form around the files": (
            form,
            len(form) + more,
            "the form around the files is larger than 1048576 bytes",
        ),
        "a declared length over the request limit": (
            b"",
            settings.max_request_bytes + 1,
            f"request body is larger than the {settings.max_request_bytes}-byte limit",
        ),
    }


def test_a_keyed_upload_is_refused_the_moment_it_passes_a_size_limit(
    server: str, settings: Settings
) -> None:
    settings.max_document_bytes = SMALL_FILE_LIMIT  # read at each request: the request limit too
    before = _outcome(server, "too_large")
    keys = []
    for i, (case, (body, declared, detail)) in enumerate(_over_a_size_limit(settings).items()):
        key = new_api_key(settings.database_url, f"sized-{i}")
        keys.append(key)
        sock = _sending(server, key=key, body=body, declared=declared)
        try:
            # Answered while the rest of the body is still owed (before the idle timeout).
            status, answer = _answer(sock, within=settings.body_idle_timeout_seconds)
        finally:
            sock.close()
        assert (status, json.loads(answer)["detail"]) == (413, detail), case
    # The three found while streaming are counted (the declared length is refused earlier).
    assert _outcome(server, "too_large") == before + 3
    # Each refusal gave its key's one upload slot back.
    assert [_upload(server, key, "fits.txt").status_code for key in keys] == [202] * len(keys)


def test_a_client_still_sending_a_file_far_over_the_limit_reads_the_413(
    server: str, settings: Settings
) -> None:
    # The 413 comes when 256 KiB of a 20 MiB file are in, and the connection is closed with
    # the rest unread: an HTTP client (httpx, as `triage upload` uses) still gets the answer,
    # not a connection error it would retry.
    settings.max_document_bytes = SMALL_FILE_LIMIT
    settings.max_files_per_request = 100  # so the request limit (26 MiB) is not what refuses
    key = new_api_key(settings.database_url, "eager")
    response = httpx.post(
        f"{server}/v1/documents",
        headers={"X-API-Key": key},
        files={"files": ("huge.txt", b"x" * 20 * 1024**2, "text/plain")},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["detail"] == f"huge.txt is larger than the {SMALL_FILE_LIMIT}-byte limit"


def test_a_keyed_upload_that_trickles_under_the_minimum_rate_is_cut_off(
    server: str, settings: Settings
) -> None:
    key = new_api_key(settings.database_url, "trickle")
    before = _outcome(server, "body_too_slow")
    started = time.monotonic()
    sock = _stalled(server, key=key, declared=1024**2, sent=200)
    try:
        # A byte every 0.5 s: no gap reaches the idle timeout, but the body falls behind
        # the minimum rate's allowance (idle timeout + 1 s per min_body_bytes_per_second).
        cut_after = None
        for _ in range(20):
            if select.select([sock], [], [], 0.5)[0]:
                cut_after = time.monotonic() - started
                break
            sock.sendall(b"x")
        status, answer = _answer(sock, within=5)
    finally:
        sock.close()
    idle = settings.body_idle_timeout_seconds
    assert cut_after is not None and idle <= cut_after < idle + 2.5, cut_after
    assert status == 408
    assert json.loads(answer)["detail"] == (
        f"the request body arrived slower than {settings.min_body_bytes_per_second:g} bytes/s"
    )
    assert _outcome(server, "body_too_slow") == before + 1
    # Its slot is free again.
    assert _upload(server, key, "after.txt").status_code == 202


def test_every_limit_answers_a_caller_without_a_valid_key_401_from_its_headers(
    server: str, settings: Settings
) -> None:
    settings.max_document_bytes = SMALL_FILE_LIMIT
    start = _part("files", b"x" * 100, "slow.txt")
    # The bodies that break each size limit, one that stalls, one that trickles: a keyed
    # caller gets 413 or 408 for them (the tests above); no key, or a wrong one, gets 401
    # from its headers, having sent at most 4 KiB of its body.
    bodies = {
        **{
            case: (body, declared)
            for case, (body, declared, _) in _over_a_size_limit(settings).items()
        },
        "a stalled body": (start, 1024**2),
        "a trickled body": (start[:1], 1024**2),
    }
    before = _outcome(server, "unauthorized")
    for case, (body, declared) in bodies.items():
        for key in (None, "tri_not_a_live_key"):
            sock = _sending(server, key=key, body=body[:4096], declared=declared)
            try:
                status, answer = _answer(sock, within=1.5)
            finally:
                sock.close()
            assert status == 401, (case, key, answer)
    # More requests than any key's burst: each is 401, never 429, and counts against no key.
    with httpx.Client(base_url=server, timeout=30) as client:
        rushed = {
            client.post("/v1/documents", headers=headers, content=b"x").status_code
            for _ in range(settings.upload_burst_per_key + 1)
            for headers in ({}, {"X-API-Key": "tri_not_a_live_key"})
        }
    assert rushed == {401}
    assert _outcome(server, "unauthorized") == (
        before + 2 * len(bodies) + 2 * (settings.upload_burst_per_key + 1)
    )
    key = new_api_key(settings.database_url, "after-the-rush")
    assert _upload(server, key, "fine.txt").status_code == 202
