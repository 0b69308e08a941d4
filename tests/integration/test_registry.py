"""The model registry on real PostgreSQL and a real S3-compatible server, and its CLI.

Artifacts are real (trained on the toy set with three seeds). The S3 server comes from
TRIAGE_TEST_S3_ENDPOINT_URL, TRIAGE_TEST_S3_ACCESS_KEY_ID, TRIAGE_TEST_S3_SECRET_ACCESS_KEY
(and TRIAGE_TEST_S3_REGION), else from the local stack (deploy/local/stack.sh env). Each test
empties the registry tables itself, so the shared clean_db list need not know them.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from tests.helpers import small_examples
from tests.stack import Stack, empty_and_delete_bucket, require_s3
from triage_cli.registry_cli import registry_app
from triage_ml import model as model_lib
from triage_runtime.db.engine import alembic_config, make_async_engine, upgrade
from triage_runtime.registry import (
    ArtifactConflictError,
    ArtifactIntegrityError,
    ArtifactNotFoundError,
    LocalArtifactStore,
    ModelRegistry,
    NoPreviousVersionError,
    S3ArtifactStore,
    UnknownAliasError,
    UnknownVersionError,
    artifact_store_from_url,
)

REGISTRY_TABLES = ("model_version", "model_alias", "model_alias_history")


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three real artifacts with different versions (seeds 0, 1 and 2)."""
    out = tmp_path_factory.mktemp("artifacts")
    paths = []
    for seed in (0, 1, 2):
        result = model_lib.train(small_examples(), seed=seed, changelog=f"seed {seed}")
        paths.append(model_lib.save(result.pipeline, result.metadata, out_dir=out))
    assert len({p.name for p in paths}) == 3
    return paths


@pytest.fixture
def registry_db(stack: Stack) -> str:
    """The session database with the registry tables emptied."""
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(REGISTRY_TABLES)} RESTART IDENTITY"))
    engine.dispose()
    return stack.database_url


@pytest.fixture
async def registry(registry_db: str, tmp_path: Path) -> AsyncIterator[ModelRegistry]:
    """A registry on the emptied tables with a local artifact store of this test's own."""
    engine = make_async_engine(registry_db)
    try:
        yield ModelRegistry(engine, LocalArtifactStore(tmp_path / "store"))
    finally:
        await engine.dispose()


def _copy(artifact: Path, into: Path, name: str | None = None) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(artifact, into / (name or artifact.name)))


def _same_version_other_model(artifact: Path, other: Path, into: Path) -> Path:
    """An intact artifact named like ``artifact`` whose model file is ``other``'s."""
    forged = _copy(artifact, into)
    shutil.copyfile(other / model_lib.MODEL_FILE, forged / model_lib.MODEL_FILE)
    meta = json.loads((forged / model_lib.METADATA_FILE).read_text())
    meta["model_sha256"] = hashlib.sha256((other / model_lib.MODEL_FILE).read_bytes()).hexdigest()
    (forged / model_lib.METADATA_FILE).write_text(json.dumps(meta))
    return forged


# ---------------------------------------------------------------------------
# Migration 0003
# ---------------------------------------------------------------------------


def test_migration_applies_on_0002_downgrades_and_upgrades_again(stack: Stack) -> None:
    name = f"triage_test_mig_{secrets.token_hex(4)}"
    admin = create_engine(stack.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)

    def state() -> tuple[str | None, set[str], bool]:
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            trigger_fn = conn.execute(
                text(
                    "SELECT count(*) FROM pg_proc WHERE proname = 'model_alias_history_append_only'"
                )
            ).scalar()
        return revision, set(inspect(engine).get_table_names()), bool(trigger_fn)

    try:
        upgrade(url, "0002")
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO api_key (name, key_sha256) VALUES ('kept', :h)"), {"h": "a" * 64}
            )
        revision, tables, trigger = state()
        assert revision == "0002" and not set(REGISTRY_TABLES) & tables and not trigger

        upgrade(url, "0003")
        revision, tables, trigger = state()
        assert revision == "0003" and set(REGISTRY_TABLES) <= tables and trigger

        command.downgrade(alembic_config(url), "0002")
        revision, tables, trigger = state()
        assert revision == "0002" and not set(REGISTRY_TABLES) & tables and not trigger

        upgrade(url, "0003")
        revision, tables, trigger = state()
        assert revision == "0003" and set(REGISTRY_TABLES) <= tables and trigger
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM api_key")).scalars().all() == ["kept"]
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# ---------------------------------------------------------------------------
# Registering versions
# ---------------------------------------------------------------------------


async def test_register_is_idempotent(registry: ModelRegistry, artifacts: list[Path]) -> None:
    artifact = artifacts[0]
    meta = json.loads((artifact / model_lib.METADATA_FILE).read_text())
    first = await registry.register(artifact, actor="alice")
    second = await registry.register(artifact, actor="bob")
    assert first == second == artifact.name
    assert registry.store.versions() == [first]

    [info] = await registry.versions()
    assert info.version == first
    assert info.kind == meta["kind"]
    assert list(info.labels) == meta["labels"]
    assert info.metrics == meta["metrics"]
    assert info.training_data_sha256 == meta["training_data_sha256"]
    assert info.model_sha256 == meta["model_sha256"]
    assert info.metadata["changelog"] == "seed 0"
    assert info.registered_by == "alice"  # the second registration changed nothing
    assert info.eval is None and info.aliases == ()
    assert await registry.get(first) == info


async def test_register_through_a_symlink_uses_the_real_name(
    registry: ModelRegistry, artifacts: list[Path], tmp_path: Path
) -> None:
    link = tmp_path / "champion"
    link.symlink_to(artifacts[0])
    assert await registry.register(link, actor="alice") == artifacts[0].name


@pytest.mark.parametrize("tamper", ["model-bytes", "renamed", "no-metadata", "bad-version"])
async def test_a_tampered_artifact_is_refused(
    registry: ModelRegistry, artifacts: list[Path], tmp_path: Path, tamper: str
) -> None:
    artifact = _copy(artifacts[0], tmp_path / "incoming")
    if tamper == "model-bytes":
        with (artifact / model_lib.MODEL_FILE).open("ab") as out:
            out.write(b"\0")
    elif tamper == "renamed":
        artifact = artifact.rename(artifact.with_name("tfidf-lr-000000000000"))
    elif tamper == "no-metadata":
        (artifact / model_lib.METADATA_FILE).unlink()
    else:
        meta = json.loads((artifact / model_lib.METADATA_FILE).read_text())
        meta["version"] = "../escape"
        (artifact / model_lib.METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(ArtifactIntegrityError):
        await registry.register(artifact, actor="mallory")
    assert await registry.versions() == []
    assert registry.store.versions() == []


async def test_another_model_under_a_stored_version_is_refused(
    registry: ModelRegistry, artifacts: list[Path], tmp_path: Path
) -> None:
    version = await registry.register(artifacts[0], actor="alice")
    forged = _same_version_other_model(artifacts[0], artifacts[1], tmp_path / "forged")
    with pytest.raises(ArtifactConflictError):
        await registry.register(forged, actor="mallory")
    assert (await registry.get(version)).model_sha256 == json.loads(
        (artifacts[0] / model_lib.METADATA_FILE).read_text()
    )["model_sha256"]


async def test_set_eval_records_the_latest_report(
    registry: ModelRegistry, artifacts: list[Path]
) -> None:
    version = await registry.register(artifacts[0], actor="alice")
    await registry.set_eval(version, {"macro_f1": 0.5, "n": 10})
    await registry.set_eval(version, {"macro_f1": 0.91, "n": 200, "per_class": []})
    info = await registry.get(version)
    assert info.eval == {"macro_f1": 0.91, "n": 200, "per_class": []}
    assert info.eval_macro_f1 == 0.91
    with pytest.raises(UnknownVersionError):
        await registry.set_eval("tfidf-lr-unknown", {"macro_f1": 1.0})


# ---------------------------------------------------------------------------
# Aliases and their history
# ---------------------------------------------------------------------------


async def test_aliases_move_and_history_records_each_step(
    registry: ModelRegistry, artifacts: list[Path]
) -> None:
    v1 = await registry.register(artifacts[0], actor="ci")
    v2 = await registry.register(artifacts[1], actor="ci")
    gates = {"passed": True, "checks": [{"name": "macro_f1", "ok": True}]}

    first = await registry.move_alias(
        "champion", v1, actor="alice", action="promote", reason="first model", gate_report=gates
    )
    assert (first.from_version, first.to_version, first.changed) == (None, v1, True)
    await registry.move_alias("canary", v2, actor="alice", action="promote", reason="try v2")
    await registry.move_alias(
        "champion", v2, actor="bob", action="promote", reason="gates waived", forced=True
    )
    assert await registry.aliases() == {"champion": v2, "canary": v2}
    assert await registry.resolve("champion") == v2
    assert await registry.resolve("shadow") is None
    assert (await registry.get(v2)).aliases == ("champion", "canary")
    assert (await registry.get(v1)).aliases == ()

    again = await registry.move_alias("champion", v2, actor="bob", action="promote")
    assert not again.changed  # already there: nothing recorded

    newest, oldest = await registry.history("champion")
    assert (oldest.alias, oldest.from_version, oldest.to_version) == ("champion", None, v1)
    assert (oldest.action, oldest.actor, oldest.reason) == ("promote", "alice", "first model")
    assert (oldest.forced, oldest.gate_report) == (False, gates)
    assert (newest.from_version, newest.to_version) == (v1, v2)
    assert (newest.actor, newest.reason, newest.forced, newest.gate_report) == (
        "bob",
        "gates waived",
        True,
        None,
    )
    assert newest.id > oldest.id and newest.at >= oldest.at
    everything = await registry.history()
    assert [(e.alias, e.to_version) for e in everything] == [
        ("champion", v2),
        ("canary", v2),
        ("champion", v1),
    ]
    assert len(await registry.history(limit=1)) == 1

    cleared = await registry.clear("canary", actor="alice", reason="canary over")
    assert (cleared.from_version, cleared.to_version) == (v2, None)
    assert await registry.aliases() == {"champion": v2}
    [entry] = await registry.history("canary", limit=1)
    assert (entry.action, entry.from_version, entry.to_version) == ("clear", v2, None)


async def test_rollback_goes_back_to_the_previous_version(
    registry: ModelRegistry, artifacts: list[Path]
) -> None:
    v1, v2, v3 = [await registry.register(p, actor="ci") for p in artifacts]
    for version in (v1, v2, v3):
        await registry.move_alias("champion", version, actor="alice", action="promote")

    assert await registry.rollback("champion", actor="carol", reason="v3 regressed") == v2
    assert await registry.resolve("champion") == v2
    [entry] = await registry.history("champion", limit=1)
    assert (entry.action, entry.from_version, entry.to_version) == ("rollback", v3, v2)
    assert (entry.actor, entry.reason, entry.forced) == ("carol", "v3 regressed", False)

    # A second rollback walks back through promotions, not back to v3.
    assert await registry.rollback("champion", actor="carol", reason="v2 too") == v1
    assert await registry.resolve("champion") == v1
    with pytest.raises(NoPreviousVersionError, match="no version to roll back to"):
        await registry.rollback("champion", actor="carol", reason="and v1?")
    assert await registry.resolve("champion") == v1
    assert len(await registry.history("champion")) == 5


async def test_rollback_with_no_previous_version_errors(
    registry: ModelRegistry, artifacts: list[Path]
) -> None:
    with pytest.raises(NoPreviousVersionError, match="points at no version"):
        await registry.rollback("shadow", actor="carol", reason="nothing there")
    v1 = await registry.register(artifacts[0], actor="ci")
    await registry.move_alias("shadow", v1, actor="alice", action="promote")
    with pytest.raises(NoPreviousVersionError, match="nothing was promoted before"):
        await registry.rollback("shadow", actor="carol", reason="only one")
    assert await registry.resolve("shadow") == v1
    assert [e.action for e in await registry.history("shadow")] == ["promote"]


async def test_unknown_aliases_versions_and_actions_are_refused(
    registry: ModelRegistry, artifacts: list[Path]
) -> None:
    v1 = await registry.register(artifacts[0], actor="ci")
    with pytest.raises(UnknownAliasError):
        await registry.move_alias("production", v1, actor="alice", action="promote")
    with pytest.raises(UnknownAliasError):
        await registry.resolve("production")
    with pytest.raises(UnknownAliasError):
        await registry.history("production")
    with pytest.raises(UnknownVersionError):
        await registry.move_alias("champion", "tfidf-lr-unknown", actor="alice", action="promote")
    with pytest.raises(UnknownVersionError):
        await registry.get("tfidf-lr-unknown")
    with pytest.raises(ValueError, match="action"):
        await registry.move_alias("champion", v1, actor="alice", action="deploy")
    with pytest.raises(ValueError, match="clear"):
        await registry.move_alias("champion", v1, actor="alice", action="clear")
    with pytest.raises(ValueError, match="actor"):
        await registry.move_alias("champion", v1, actor="", action="promote")
    assert await registry.aliases() == {}
    assert await registry.history() == []


async def test_history_is_append_only(
    registry: ModelRegistry, registry_db: str, artifacts: list[Path]
) -> None:
    v1 = await registry.register(artifacts[0], actor="ci")
    await registry.move_alias("champion", v1, actor="alice", action="promote")
    engine = create_engine(registry_db)
    try:
        for statement in (
            "UPDATE model_alias_history SET actor = 'mallory'",
            "DELETE FROM model_alias_history",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    [entry] = await registry.history()
    assert entry.actor == "alice"


async def test_concurrent_moves_queue_on_the_alias_row(
    registry: ModelRegistry, registry_db: str, artifacts: list[Path]
) -> None:
    v1, v2, v3 = [await registry.register(p, actor="ci") for p in artifacts]
    await registry.move_alias("champion", v1, actor="ci", action="promote")
    engine_a, engine_b, holder = (make_async_engine(registry_db) for _ in range(3))
    alice = ModelRegistry(engine_a, registry.store)
    bob = ModelRegistry(engine_b, registry.store)
    try:
        # Hold the row lock so both moves are certainly in flight at once.
        async with holder.begin() as conn:
            await conn.execute(
                text("SELECT version FROM model_alias WHERE alias = 'champion' FOR UPDATE")
            )
            to_v2 = asyncio.create_task(
                alice.move_alias("champion", v2, actor="alice", action="promote")
            )
            to_v3 = asyncio.create_task(
                bob.move_alias("champion", v3, actor="bob", action="promote")
            )
            await asyncio.sleep(0.5)
            assert not to_v2.done() and not to_v3.done(), "the moves must wait for the lock"
        moves = await asyncio.gather(to_v2, to_v3)

        # Neither alias row exists yet for canary: the first insert must serialise too.
        first_canary = await asyncio.gather(
            alice.move_alias("canary", v2, actor="alice", action="promote"),
            bob.move_alias("canary", v3, actor="bob", action="promote"),
        )
    finally:
        for engine in (engine_a, engine_b, holder):
            await engine.dispose()

    assert all(move.changed for move in (*moves, *first_canary))
    earlier, later = sorted(await registry.history("champion", limit=2), key=lambda e: e.id)
    assert earlier.from_version == v1
    assert later.from_version == earlier.to_version, "a move was lost"
    assert {earlier.to_version, later.to_version} == {v2, v3}
    assert await registry.resolve("champion") == later.to_version
    by_target = {move.to_version: move.from_version for move in moves}
    assert by_target[earlier.to_version] == v1 and by_target[later.to_version] == earlier.to_version

    c_first, c_second = sorted(await registry.history("canary"), key=lambda e: e.id)
    assert c_first.from_version is None
    assert c_second.from_version == c_first.to_version
    assert await registry.resolve("canary") == c_second.to_version


# ---------------------------------------------------------------------------
# The local artifact store
# ---------------------------------------------------------------------------


def test_local_store_publish_and_fetch_round_trip(artifacts: list[Path], tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "store")
    assert store.versions() == []
    version = store.publish(artifacts[0])
    assert version == artifacts[0].name
    stored = store.root / version
    mtime = (stored / model_lib.MODEL_FILE).stat().st_mtime_ns
    assert store.publish(artifacts[0]) == version
    assert (stored / model_lib.MODEL_FILE).stat().st_mtime_ns == mtime  # not copied again
    assert sorted(p.name for p in store.root.iterdir()) == [version]  # no temp dirs left
    assert store.versions() == [version]

    fetched = store.fetch(version, cache_dir=tmp_path / "cache")
    assert fetched == stored
    assert model_lib.load(fetched).version == version
    for original in artifacts[0].iterdir():
        assert (fetched / original.name).read_bytes() == original.read_bytes()

    with pytest.raises(ArtifactNotFoundError):
        store.fetch(artifacts[1].name, cache_dir=tmp_path / "cache")
    forged = _same_version_other_model(artifacts[0], artifacts[1], tmp_path / "forged")
    with pytest.raises(ArtifactConflictError):
        store.publish(forged)
    with (stored / model_lib.MODEL_FILE).open("ab") as out:
        out.write(b"tampered")
    with pytest.raises(ArtifactIntegrityError):
        store.fetch(version, cache_dir=tmp_path / "cache")


async def test_registry_fetch_checks_the_registered_hash(
    registry: ModelRegistry, artifacts: list[Path], tmp_path: Path
) -> None:
    version = await registry.register(artifacts[0], actor="ci")
    path = await registry.fetch(version, cache_dir=tmp_path / "cache")
    assert model_lib.load(path).version == version
    with pytest.raises(UnknownVersionError):
        await registry.fetch(artifacts[1].name, cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------
# The S3 artifact store
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    """Where the S3-compatible server is and how to sign for it."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str

    def store(
        self, bucket: str, prefix: str = "", *, create_bucket: bool = False
    ) -> S3ArtifactStore:
        """Return an S3ArtifactStore on ``bucket`` of this server."""
        return S3ArtifactStore(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=self.endpoint_url,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            create_bucket=create_bucket,
        )


@pytest.fixture(scope="module")
def s3_server(stack: Stack) -> S3Server:
    """The real S3-compatible server of the stack fixture."""
    return S3Server(**asdict(require_s3(stack)))


@pytest.fixture(scope="module")
def s3_bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket for this module, emptied and deleted afterwards."""
    bucket = f"triage-test-models-{secrets.token_hex(5)}"
    client = s3_server.store(bucket, create_bucket=True).client
    try:
        yield bucket
    finally:
        empty_and_delete_bucket(client, bucket)


@pytest.fixture
def s3_store(s3_server: S3Server, s3_bucket: str) -> S3ArtifactStore:
    """An S3 artifact store under a key prefix of this test's own."""
    return s3_server.store(s3_bucket, f"t-{secrets.token_hex(4)}/")


def _keys(store: S3ArtifactStore) -> list[str]:
    listed = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    return sorted(obj["Key"] for obj in listed.get("Contents", []))


def _count_calls(store: S3ArtifactStore, operation: str) -> list[str]:
    calls: list[str] = []

    def record(**_: Any) -> None:
        calls.append(operation)

    store.client.meta.events.register(f"before-call.s3.{operation}", record)
    return calls


def test_s3_publish_lays_out_the_artifact_and_is_idempotent(
    s3_store: S3ArtifactStore, artifacts: list[Path], tmp_path: Path
) -> None:
    artifact = artifacts[0]
    version = artifact.name
    meta = json.loads((artifact / model_lib.METADATA_FILE).read_text())
    puts = _count_calls(s3_store, "PutObject")
    assert s3_store.publish(artifact) == version
    base = f"{s3_store.prefix}models/{version}/"
    assert _keys(s3_store) == [base + model_lib.METADATA_FILE, base + model_lib.MODEL_FILE]
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=base + model_lib.MODEL_FILE)
    assert head["Metadata"] == {"sha256": meta["model_sha256"]}
    uploaded = len(puts)
    assert uploaded == 2
    assert s3_store.publish(artifact) == version
    assert len(puts) == uploaded  # already stored: nothing uploaded again
    assert s3_store.versions() == [version]

    forged = _same_version_other_model(artifact, artifacts[1], tmp_path / "forged")
    with pytest.raises(ArtifactConflictError):
        s3_store.publish(forged)


def test_s3_fetch_downloads_into_the_cache_once_and_verifies(
    s3_store: S3ArtifactStore, artifacts: list[Path], tmp_path: Path
) -> None:
    version = s3_store.publish(artifacts[0])
    cache = tmp_path / "cache"
    fetched = s3_store.fetch(version, cache_dir=cache)
    assert fetched == cache / version
    assert model_lib.load(fetched).version == version
    for original in artifacts[0].iterdir():
        assert (fetched / original.name).read_bytes() == original.read_bytes()
    assert sorted(p.name for p in cache.iterdir()) == [version]  # no temp dirs left

    gets = _count_calls(s3_store, "GetObject")
    assert s3_store.fetch(version, cache_dir=cache) == fetched
    assert gets == []  # served from the verified cache

    # A damaged cached copy is replaced by a fresh download.
    (fetched / model_lib.MODEL_FILE).write_bytes(b"bit rot")
    assert model_lib.load(s3_store.fetch(version, cache_dir=cache)).version == version
    assert len(gets) == 2

    with pytest.raises(ArtifactNotFoundError):
        s3_store.fetch(artifacts[1].name, cache_dir=cache)


@pytest.mark.parametrize("with_object_hash", [True, False])
def test_s3_tampered_objects_are_refused(
    s3_store: S3ArtifactStore, artifacts: list[Path], tmp_path: Path, with_object_hash: bool
) -> None:
    version = s3_store.publish(artifacts[0])
    key = s3_store.key(version, model_lib.MODEL_FILE)
    head = s3_store.client.head_object(Bucket=s3_store.bucket, Key=key)
    extra = {"Metadata": head["Metadata"]} if with_object_hash else {}
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=key, Body=b"evil pickle", **extra)
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactIntegrityError):
        s3_store.fetch(version, cache_dir=cache)
    assert list(cache.iterdir()) == []  # nothing half-downloaded is left behind


async def test_registry_on_s3_registers_and_fetches(
    registry_db: str, s3_store: S3ArtifactStore, artifacts: list[Path], tmp_path: Path
) -> None:
    engine = make_async_engine(registry_db)
    try:
        registry = ModelRegistry(engine, s3_store)
        version = await registry.register(artifacts[1], actor="ci")
        assert s3_store.versions() == [version]
        path = await registry.fetch(version, cache_dir=tmp_path / "cache")
        assert model_lib.load(path).metadata["changelog"] == "seed 1"
    finally:
        await engine.dispose()


def test_artifact_store_from_url(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    from_uri = artifact_store_from_url((tmp_path / "a").as_uri())
    from_path = artifact_store_from_url(str(tmp_path / "b"))
    assert isinstance(from_uri, LocalArtifactStore) and from_uri.root == tmp_path / "a"
    assert isinstance(from_path, LocalArtifactStore) and from_path.root == tmp_path / "b"
    options: dict[str, Any] = {
        "endpoint_url": s3_server.endpoint_url,
        "region": s3_server.region,
        "access_key_id": s3_server.access_key_id,
        "secret_access_key": s3_server.secret_access_key,
    }
    nested = artifact_store_from_url(f"s3://{s3_bucket}/team/x", **options)
    bare = artifact_store_from_url(f"s3://{s3_bucket}", **options)
    assert isinstance(nested, S3ArtifactStore) and nested.prefix == "team/x/"
    assert isinstance(bare, S3ArtifactStore) and bare.prefix == ""
    assert nested.key("v1", "model.joblib") == "team/x/models/v1/model.joblib"
    assert s3_server.secret_access_key not in repr(nested)
    for url in ("", "ftp://host/models", "s3://", "s3://user@bucket/x", "file://host/x"):
        with pytest.raises(ValueError, match="URL"):
            artifact_store_from_url(url)


# ---------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------


def test_cli_register_list_show_history_rollback(
    registry_db: str, artifacts: list[Path], tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"TRIAGE_DATABASE_URL": registry_db, "TRIAGE_MODEL_STORE_URL": str(tmp_path / "store")}

    def cli(*args: str, code: int = 0) -> Any:
        result = runner.invoke(registry_app, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    v1, v2 = artifacts[0].name, artifacts[1].name
    assert cli("register", str(artifacts[0]), "--actor", "alice").stdout.strip() == v1
    again = cli("register", str(artifacts[0]))
    assert again.stdout.strip() == v1 and "already registered" in again.stderr
    assert cli("register", str(artifacts[1])).stdout.strip() == v2
    assert (tmp_path / "store" / v1).is_dir()

    async def record_eval() -> None:
        engine = make_async_engine(registry_db)
        try:
            store = LocalArtifactStore(tmp_path / "store")
            await ModelRegistry(engine, store).set_eval(v2, {"macro_f1": 0.9123, "n": 50})
        finally:
            await engine.dispose()

    asyncio.run(record_eval())

    assert "bypasses gates" in cli("set-alias", "--help").stdout
    first = cli("set-alias", "champion", v1, "--reason", "first", "--actor", "alice")
    assert first.stdout.strip() == f"champion: None → {v1}"
    cli("set-alias", "champion", v2, "--reason", "better", "--actor", "bob")
    cli("set-alias", "production", v2, "--reason", "no such alias", code=2)
    assert (
        "no registered model version"
        in cli("set-alias", "canary", "tfidf-lr-unknown", "--reason", "typo", code=1).stderr
    )

    listing = cli("list").stdout
    [row_v1] = [line for line in listing.splitlines() if v1 in line]
    [row_v2] = [line for line in listing.splitlines() if v2 in line]
    assert "champion" in row_v2 and "0.9123" in row_v2 and getpass.getuser() in row_v2
    assert "champion" not in row_v1 and "alice" in row_v1

    shown = json.loads(cli("show", "champion").stdout)
    assert shown["version"] == v2 and shown["aliases"] == ["champion"]
    assert shown["eval"] == {"macro_f1": 0.9123, "n": 50}
    assert shown["metadata"]["changelog"] == "seed 1"
    assert json.loads(cli("show", v1).stdout)["aliases"] == []
    assert "points at no version" in cli("show", "canary", code=1).stderr
    assert "no registered model version" in cli("show", "tfidf-lr-unknown", code=1).stderr

    history = cli("history", "champion").stdout
    assert v1 in history and v2 in history and "bob" in history and "better" in history

    rolled = cli("rollback", "champion", "--reason", "regression", "--actor", "carol")
    assert rolled.stdout.strip() == f"champion: {v2} → {v1}"
    assert json.loads(cli("show", "champion").stdout)["version"] == v1
    newest = cli("history", "--limit", "1").stdout
    assert "rollback" in newest and "carol" in newest and "regression" in newest
    assert (
        "no version to roll back to"
        in cli("rollback", "champion", "--reason", "again", code=1).stderr
    )
    cli("rollback", "champion", code=2)  # --reason is required

    assert (
        cli("clear", "champion", "--reason", "retired").stdout.strip() == f"champion: {v1} → None"
    )
    assert "champion" not in cli("list").stdout
