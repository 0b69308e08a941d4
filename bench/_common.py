"""Helpers the benchmark scripts share: the stack's addresses and a throwaway database."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]


def stack_env() -> dict[str, str]:
    """Addresses of Kafka and PostgreSQL: from the environment, else the local stack's."""
    if os.environ.get("TRIAGE_KAFKA_BOOTSTRAP") and os.environ.get("TRIAGE_DATABASE_URL"):
        return {k: os.environ[k] for k in ("TRIAGE_KAFKA_BOOTSTRAP", "TRIAGE_DATABASE_URL")}
    script = ROOT / "deploy" / "local" / "stack.sh"
    subprocess.run([str(script), "start"], check=True, capture_output=True)
    printed = subprocess.run([str(script), "env"], check=True, capture_output=True, text=True)
    return dict(re.findall(r"^export (\w+)=(\S*)$", printed.stdout, re.MULTILINE))


IMAP_VARIABLES = (
    "TRIAGE_IMAP_HOST",
    "TRIAGE_IMAPS_PORT",
    "TRIAGE_IMAP_CA_FILE",
    "TRIAGE_IMAP_USER",
    "TRIAGE_IMAP_PASSWORD",
)


def imap_env() -> dict[str, str]:
    """The IMAP server's address and login: from the environment, else the local stack's."""
    if all(os.environ.get(name) for name in IMAP_VARIABLES):
        return {name: os.environ[name] for name in IMAP_VARIABLES}
    script = ROOT / "deploy" / "local" / "stack.sh"
    printed = subprocess.run([str(script), "env"], check=True, capture_output=True, text=True)
    found = dict(re.findall(r"^export (\w+)=(\S*)$", printed.stdout, re.MULTILINE))
    return {name: found[name] for name in IMAP_VARIABLES}


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """A new database next to ``url`` for one benchmark run, dropped afterwards."""
    name = f"triage_bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(urls: list[str], *, seconds: float = 120.0) -> None:
    """Wait until every service answers /readyz with 200 (or give up after ``seconds``)."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    for url in urls:
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
