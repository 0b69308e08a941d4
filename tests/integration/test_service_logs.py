"""Every line a service process writes is a JSON object: its own logs, uvicorn's, and those
of the libraries it runs (FastStream, aiokafka, Python's warnings), from start to stop.

The services run as real processes (``triage-<service>``) against real Kafka and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, new_api_key
from tests.stack import Stack


def _start(service: str, env: dict[str, str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    command = shutil.which(f"triage-{service}", path=str(Path(sys.executable).parent))
    assert command, f"triage-{service} is not installed in this environment"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        return subprocess.Popen([command], env=env, stdout=stdout, stderr=stderr)


def _wait_ready(
    process: subprocess.Popen[bytes], base: str, err: Path, *, path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{err.read_text()[-3000:]}"
        try:
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"not ready in 60 s:\n{err.read_text()[-3000:]}")


def _not_http(base: str) -> None:
    """Bytes that are not HTTP: uvicorn itself logs that it could not parse them."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        sock.recv(1024)


def _exercise_ingest(base: str, database_url: str) -> None:
    key = new_api_key(database_url, "logs")
    files = {"files": ("a.txt", b"a line to log", "text/plain")}
    with httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/v1/documents", files=files, headers={"X-API-Key": key}).is_success
        assert client.post("/v1/documents", files=files).status_code == 401
        assert client.get("/no/such/page").status_code == 404


def _wait_for_partitions(err: Path) -> None:
    """Until the service's consumer has logged the partitions it was given (FastStream's line)."""
    deadline = time.monotonic() + 60
    while "assigned to partitions" not in err.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"no partitions assigned in 60 s:\n{err.read_text()[-3000:]}")
        time.sleep(0.3)


@pytest.mark.parametrize("service", ["ingest", "router", "classifier"])
def test_every_line_a_service_writes_is_json(
    service: str, isolated: Stack, clean_db: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": isolated.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": clean_db,
        "TRIAGE_TOPIC_PREFIX": isolated.topic_prefix,
        "TRIAGE_BLOB_DIR": str(tmp_path / "blobs"),
        "TRIAGE_ROUTER_GROUP_ID": f"logs-{isolated.topic_prefix}",
        "TRIAGE_CLASSIFIER_GROUP_ID": f"logs-{isolated.topic_prefix}",
        # No trained model: the classifier serves the rules (live, not ready).
        "TRIAGE_CLASSIFIER_MODEL_PATH": str(tmp_path / "no-model"),
        # Every library's debug output too, and Python's warnings as they would be shown.
        "TRIAGE_LOG_LEVEL": "DEBUG",
        "PYTHONWARNINGS": "default",
        f"TRIAGE_{service.upper()}_PORT": str(port),
    }
    base = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    process = _start(service, env, out, err)
    try:
        if service == "classifier":
            _wait_ready(process, base, err, path="/healthz")
        else:
            _wait_ready(process, base, err)
        if service != "ingest":
            _wait_for_partitions(err)
        if service == "ingest":
            _exercise_ingest(base, clean_db)
        _not_http(base)
        assert httpx.get(base + "/metrics", timeout=5).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    lines = [line for path in (out, err) for line in path.read_text().splitlines()]
    not_json = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        if not isinstance(entry, dict) or not {"ts", "level", "logger", "msg"} <= entry.keys():
            not_json.append(line)
    assert not not_json, f"{len(not_json)} of {len(lines)} lines are not JSON log entries:\n" + (
        "\n".join(not_json[:20])
    )
    # No terminal colour codes either, in any field (uvicorn adds a coloured copy of some
    # messages as an extra): a log store shows them as noise.
    coloured = [line for line in lines if "\\u001b" in line or "\x1b" in line]
    assert not coloured, "lines with terminal colour codes:\n" + "\n".join(coloured[:5])
    loggers = {json.loads(line)["logger"] for line in lines}
    # uvicorn's own lines (startup, the unparsable request, shutdown) are among them, and
    # the router's FastStream consumers' (partitions assigned), coloured text before.
    expected = {"uvicorn.error"} | ({"faststream.kafka"} if service != "ingest" else set())
    assert expected <= loggers, loggers
    assert any(json.loads(line)["msg"] == "stopped cleanly" for line in lines)
