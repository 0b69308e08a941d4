"""End-to-end tests start the four services as real processes on the real stack."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.e2e.reviewui import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.helpers import REPO_ROOT, free_port
from tests.stack import Stack, empty_database
from triage_ml import model as model_lib
from triage_ml.dataset import iter_folder_dataset, load_examples

SERVICES = ("ingest", "classifier", "router", "review-ui")
REVIEWER_PASSWORD = "e2e reviewer password"
SMTP_RECIPIENT = "triage@example.test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Pipeline:
    """The running services: their URLs, environment and log files."""

    stack: Stack
    env: dict[str, str]
    urls: dict[str, str]
    logs: dict[str, Path]
    model_version: str
    smtp_port: int = 0
    api_key: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def log_text(self) -> str:
        """Everything the services logged so far."""
        return "\n".join(path.read_text(errors="replace") for path in self.logs.values())


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on the shipped (synthetic) starter dataset."""
    examples = [
        ex
        for path, label in iter_folder_dataset(REPO_ROOT / "data" / "sample" / "train")
        for ex in load_examples(path, label)
    ]
    pipeline, metadata, *_ = model_lib.train(examples, seed=0)
    return model_lib.save(pipeline, metadata, out_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def pipeline(
    stack: Stack, sample_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    """All four services running as `triage-<service>` processes against the real stack,
    on an empty database (a routing policy an earlier test stored would change routes)."""
    empty_database(stack.database_url)
    work = tmp_path_factory.mktemp("pipeline")
    triage = shutil.which("triage", path=str(Path(sys.executable).parent))
    assert triage, "the triage console script is not installed in this environment"
    ports = {name: free_port() for name in SERVICES}
    smtp_port = free_port()
    env = {
        **os.environ,
        "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TRIAGE_DATABASE_URL": stack.database_url,
        "TRIAGE_TOPIC_PREFIX": stack.topic_prefix + "e2e.",
        "TRIAGE_BLOB_DIR": str(work / "blobs"),
        "TRIAGE_CLASSIFIER_MODEL_PATH": str(sample_model),
        "TRIAGE_CLASSIFIER_GROUP_ID": "e2e-classifier",
        "TRIAGE_ROUTER_GROUP_ID": "e2e-router",
        "TRIAGE_LOG_LEVEL": "DEBUG",
        "TRIAGE_INGEST_SMTP_ENABLED": "true",
        "TRIAGE_INGEST_SMTP_PORT": str(smtp_port),
        "TRIAGE_INGEST_SMTP_ALLOWED_RECIPIENTS": f'["{SMTP_RECIPIENT}"]',
    }
    for name, port in ports.items():
        env[f"TRIAGE_{name.upper().replace('-', '_')}_PORT"] = str(port)
    running = Pipeline(
        stack=stack,
        env=env,
        urls={n: f"http://127.0.0.1:{p}" for n, p in ports.items()},
        logs={n: work / f"{n}.log" for n in SERVICES},
        model_version=sample_model.name,
        smtp_port=smtp_port,
    )
    running.api_key = subprocess.run(
        [triage, "apikey", "create", "e2e", "--rotate"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # As an operator does before the services start: the broker does not auto-create topics.
    labels = json.loads((sample_model / "metadata.json").read_text())["labels"]
    applied = subprocess.run(
        [triage, "topics", "apply", "--replication-factor", "1", "--no-registry"]
        + [arg for label in labels for arg in ("--queue", label)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    subprocess.run(
        [triage, "user", "add", "e2e-reviewer", "--role", "reviewer", "--password-stdin"],
        env=env,
        check=True,
        capture_output=True,
        input=REVIEWER_PASSWORD,
        text=True,
    )
    for name in SERVICES:
        with running.logs[name].open("wb") as log:
            running.processes[name] = subprocess.Popen(
                [f"{triage}-{name}"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
    try:
        deadline = time.monotonic() + 90
        pending = set(SERVICES)
        while pending and time.monotonic() < deadline:
            for name in list(pending):
                assert running.processes[name].poll() is None, (
                    f"{name} exited early:\n{running.logs[name].read_text()}"
                )
                try:
                    if httpx.get(running.urls[name] + "/readyz", timeout=2).status_code == 200:
                        pending.discard(name)
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        assert not pending, f"not ready in 90 s: {pending}\n{running.log_text()[-3000:]}"
        yield running
    finally:
        for process in running.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in running.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A Debian Chromium driven by Playwright, for one test module. Per module, not per
    session: Playwright's sync API runs an event loop in the test thread while it is open,
    and other modules' tests call ``asyncio.run``."""
    assert CHROMIUM, "Chromium is not installed (apt-get install chromium)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
