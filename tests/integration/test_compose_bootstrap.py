"""compose.yaml's bootstrap (deploy/compose/bootstrap.sh) on the real Kafka and PostgreSQL:
after it the topics exist, a champion serves, the admin can sign in and the API key is live;
run again, it changes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
from pathlib import Path

from tests.helpers import REPO_ROOT
from tests.stack import Stack
from triage_runtime.accounts.credentials import Role
from triage_runtime.accounts.store import AuthStore
from triage_runtime.apikeys import ApiKeys
from triage_runtime.db.engine import make_async_engine

BOOTSTRAP = REPO_ROOT / "deploy" / "compose" / "bootstrap.sh"


def _environment(
    stack: Stack, database_url: str, tmp_path: Path, triage_bin: str
) -> dict[str, str]:
    return {
        "PATH": f"{Path(triage_bin).parent}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "TRIAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "TRIAGE_TOPIC_PREFIX": stack.topic_prefix,
        "TRIAGE_TOPICS_REPLICATION_FACTOR": "1",
        "TRIAGE_DATABASE_URL": database_url,
        "TRIAGE_MODEL_STORE_URL": str(tmp_path / "model-store"),
        "TRIAGE_SAMPLE_DIR": str(REPO_ROOT / "data" / "sample"),
        "TRIAGE_MODELS_DIR": str(tmp_path / "models"),
        "TRIAGE_BOOTSTRAP_DIR": str(tmp_path / "bootstrap"),
    }


def _bootstrap(environment: dict[str, str]) -> str:
    result = subprocess.run(
        ["sh", str(BOOTSTRAP)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stderr


def _triage(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["triage", *args], env=environment, capture_output=True, text=True, check=False
    )


def _registration(shown: str) -> tuple[str, list[str], str]:
    """What ``triage model show`` says of a version's registration (its evaluation is
    measured again by each promotion, latencies included)."""
    document = json.loads(shown)
    return document["version"], document["aliases"], document["registered_at"]


async def _key_holder(database_url: str, key: str) -> str | None:
    engine = make_async_engine(database_url)
    try:
        holder = await ApiKeys(engine).holder(key)
    finally:
        await engine.dispose()
    return holder.name if holder else None


async def _signs_in(database_url: str, username: str, password: str) -> bool:
    engine = make_async_engine(database_url)
    try:
        user = await AuthStore(engine).authenticate(username, password, "127.0.0.1")
    finally:
        await engine.dispose()
    return user is not None and user.role is Role.ADMIN


def test_bootstrap_starts_a_working_stack_and_is_safe_to_repeat(
    no_topics: Stack, clean_db: str, tmp_path: Path, triage_bin: str
) -> None:
    environment = _environment(no_topics, clean_db, tmp_path, triage_bin)
    assert _triage(environment, "topics", "plan", "--check").returncode == 1  # none yet

    first = _bootstrap(environment)
    assert "added the admin user admin" in first

    keys = tmp_path / "bootstrap"
    for secret in ("api-key", "admin-password"):
        assert stat.S_IMODE((keys / secret).stat().st_mode) == 0o600, secret
    key = (keys / "api-key").read_text().strip()
    password = (keys / "admin-password").read_text().strip()
    assert asyncio.run(_key_holder(clean_db, key)) == "compose"
    assert asyncio.run(_signs_in(clean_db, "admin", password))

    plan = _triage(environment, "topics", "plan", "--check")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = _triage(environment, "model", "show", "champion")
    assert shown.returncode == 0, shown.stderr
    champion = _registration(shown.stdout)

    second = _bootstrap(environment)
    assert "already trained on exactly this data" in second
    assert "the admin user admin exists; left as it is" in second
    assert "made before" in second
    assert (keys / "api-key").read_text().strip() == key
    assert asyncio.run(_key_holder(clean_db, key)) == "compose"
    assert _registration(_triage(environment, "model", "show", "champion").stdout) == champion
