"""The model registry: immutable artifacts in a store, aliases and their history in PostgreSQL.

An artifact is a directory ``<version>/`` holding ``model.joblib`` and ``metadata.json``
(written by ``triage_ml.model.save``). The artifact store keeps artifacts and never changes
one once published; the database records which versions are registered and which version
each alias (``champion``, ``canary``, ``shadow``) points at, with every move in the
append-only ``model_alias_history``. Promotion and rollback move an alias, never a file.

Artifact stores are chosen by URL (``artifact_store_from_url``): ``file:///abs/path`` or a
plain path for a local directory, ``s3://bucket/prefix`` for S3 (objects under
``<prefix>models/<version>/<file>``). The CLI reads the URL from ``TRIAGE_MODEL_STORE_URL``
(default ``.stack/model-store``) and S3 settings from the ``TRIAGE_S3_*`` variables.

Artifact stores make blocking calls; ``ModelRegistry`` runs them in a worker thread.
Nothing here unpickles a model: integrity is checked by hashing the files.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, Unpack

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_runtime.db.models import ModelAlias, ModelAliasHistory, ModelVersion
from triage_runtime.policy_store import PolicyChange, change_in
from triage_runtime.s3blobs import S3BlobStore, S3Options, parse_store_url

MODEL_FILE: Final = "model.joblib"
METADATA_FILE: Final = "metadata.json"
ALIASES: Final = ("champion", "canary", "shadow")
ACTIONS: Final = ("promote", "rollback", "clear")
MODEL_STORE_URL_ENV: Final = "TRIAGE_MODEL_STORE_URL"
DEFAULT_MODEL_STORE_URL: Final = ".stack/model-store"
CHUNK_BYTES: Final = 1024 * 1024
MAX_ACTOR_CHARS: Final = 80

# A version or file name is one path segment: no separators, no dot-files, fits the columns.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_REQUIRED_METADATA: Final = (
    "version",
    "kind",
    "labels",
    "metrics",
    "training_data_sha256",
    "model_sha256",
)
_SHA256_METADATA_KEY: Final = "sha256"
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class RegistryError(RuntimeError):
    """Base class of the model registry's errors."""


class UnknownVersionError(RegistryError, LookupError):
    """No model version of that name is registered (or stored)."""


class UnknownAliasError(RegistryError, ValueError):
    """The alias is not one of champion, canary, shadow."""


class NoPreviousVersionError(RegistryError):
    """A rollback has no earlier version to go back to."""


class ArtifactError(RegistryError):
    """An artifact directory cannot be published or fetched."""


class ArtifactIntegrityError(ArtifactError):
    """An artifact is malformed, misnamed, or its files do not match their recorded hashes."""


class ArtifactConflictError(ArtifactError):
    """A different artifact is already stored or registered under the same version."""


class ArtifactNotFoundError(ArtifactError, LookupError):
    """The artifact store holds no artifact of that version."""


# ---------------------------------------------------------------------------
# Artifact directories
# ---------------------------------------------------------------------------


def check_version_name(version: str) -> str:
    """Return ``version`` if it is a safe version name, else raise ArtifactIntegrityError."""
    if not isinstance(version, str) or not _NAME_RE.fullmatch(version):
        raise ArtifactIntegrityError(f"{version!r} is not a valid model version name")
    return version


def file_sha256(path: Path) -> str:
    """Return the SHA-256 of a file in hex, reading it in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_files(artifact_dir: Path) -> list[Path]:
    """Return the files of an artifact directory; refuse nested directories and odd names."""
    try:
        entries = sorted(artifact_dir.iterdir())
    except OSError as exc:
        raise ArtifactIntegrityError(f"cannot read artifact {artifact_dir}: {exc}") from exc
    files: list[Path] = []
    for entry in entries:
        if not entry.is_file():
            raise ArtifactIntegrityError(f"{entry} is not a regular file; artifacts are flat")
        if not _NAME_RE.fullmatch(entry.name):
            raise ArtifactIntegrityError(f"{entry} has a name artifacts may not contain")
        files.append(entry)
    return files


def read_artifact(artifact_dir: Path, *, version: str | None = None) -> dict[str, Any]:
    """Return an artifact's metadata after checking its version name and model file hash."""
    # The expected version defaults to the directory's name, symbolic links resolved.
    expected = version if version is not None else artifact_dir.resolve().name
    try:
        meta = json.loads((artifact_dir / METADATA_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactIntegrityError(f"cannot read {artifact_dir / METADATA_FILE}: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactIntegrityError(f"{METADATA_FILE} in {artifact_dir} is not a JSON object")
    missing = [key for key in _REQUIRED_METADATA if key not in meta]
    if missing:
        raise ArtifactIntegrityError(f"{METADATA_FILE} in {artifact_dir} lacks {missing}")
    check_version_name(meta["version"])
    if meta["version"] != expected:
        raise ArtifactIntegrityError(
            f"artifact {artifact_dir} says it is version {meta['version']!r}, not {expected!r}"
        )
    recorded = meta["model_sha256"]
    if not isinstance(recorded, str) or not _SHA256_RE.fullmatch(recorded):
        raise ArtifactIntegrityError(f"{METADATA_FILE} in {artifact_dir} has no valid model_sha256")
    if not isinstance(meta["labels"], list) or not isinstance(meta["metrics"], dict):
        raise ArtifactIntegrityError(f"{METADATA_FILE} in {artifact_dir} has malformed labels")
    try:
        actual = file_sha256(artifact_dir / MODEL_FILE)
    except OSError as exc:
        raise ArtifactIntegrityError(f"cannot read {MODEL_FILE} in {artifact_dir}: {exc}") from exc
    if actual != recorded:
        raise ArtifactIntegrityError(
            f"{MODEL_FILE} in {artifact_dir} does not match its recorded SHA-256"
        )
    return meta


def _copy_artifact(artifact_dir: Path, dst: Path, meta: Mapping[str, Any]) -> None:
    """Copy an artifact's files into ``dst`` and check the copy is the artifact ``meta`` names."""
    for src in artifact_files(artifact_dir):
        _copy_file(src, dst / src.name)
    copied = read_artifact(dst, version=meta["version"])
    if copied["model_sha256"] != meta["model_sha256"]:
        raise ArtifactIntegrityError(f"{artifact_dir} changed while it was being copied")


def _copy_file(src: Path, dst: Path) -> None:
    """Copy a file and flush it to disk."""
    with src.open("rb") as source, dst.open("xb") as target:
        shutil.copyfileobj(source, target, CHUNK_BYTES)
        target.flush()
        os.fsync(target.fileno())


# ---------------------------------------------------------------------------
# Artifact stores
# ---------------------------------------------------------------------------


class ArtifactStore(Protocol):
    """Where immutable model artifacts are kept, one directory per version."""

    def publish(self, artifact_dir: Path) -> str:
        """Store a verified artifact directory and return its version; idempotent."""
        ...

    def fetch(self, version: str, *, cache_dir: Path) -> Path:
        """Return a verified local directory holding ``version``, downloading into cache_dir."""
        ...

    def versions(self) -> list[str]:
        """Return the stored versions, sorted by name."""
        ...


class LocalArtifactStore:
    """An artifact store in a local directory; each artifact is copied in with one rename."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def __repr__(self) -> str:
        """Show where artifacts go."""
        return f"LocalArtifactStore({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The directory holding ``<version>/`` artifacts."""
        return self._root

    def publish(self, artifact_dir: Path) -> str:
        """Store a verified artifact directory and return its version; idempotent."""
        meta = read_artifact(artifact_dir)
        version: str = meta["version"]
        target = self._root / version
        if target.exists():
            return self._same_as_stored(target, meta)
        self._root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self._root, prefix=".part-"))
        try:
            _copy_artifact(artifact_dir, tmp, meta)
            try:
                tmp.rename(target)
            except OSError:
                if not target.exists():
                    raise
                # Another publisher renamed the same version in first.
                shutil.rmtree(tmp, ignore_errors=True)
                return self._same_as_stored(target, meta)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def _same_as_stored(self, target: Path, meta: dict[str, Any]) -> str:
        stored = read_artifact(target, version=meta["version"])
        if stored["model_sha256"] != meta["model_sha256"]:
            raise ArtifactConflictError(
                f"version {meta['version']} is already stored with a different model file"
            )
        return str(meta["version"])

    def fetch(self, version: str, *, cache_dir: Path) -> Path:  # noqa: ARG002
        """Return the verified artifact in place (a local store needs no cache)."""
        target = self._root / check_version_name(version)
        if not (target / METADATA_FILE).is_file():
            raise ArtifactNotFoundError(f"no artifact {version} in {self._root}")
        read_artifact(target, version=version)
        return target

    def versions(self) -> list[str]:
        """Return the stored versions, sorted by name."""
        if not self._root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self._root.iterdir()
            if _NAME_RE.fullmatch(entry.name) and (entry / METADATA_FILE).is_file()
        )


def _error_code(exc: Exception) -> str:
    response: Any = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    if code:
        return str(code)
    return str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class S3ArtifactStore:
    """An artifact store in an S3 bucket: ``<prefix>models/<version>/<file>``."""

    # metadata.json is uploaded last, so a version is listed only once it is complete.
    # Every object carries its SHA-256 as metadata; fetch checks each file and the model hash.

    def __init__(self, *, bucket: str, prefix: str = "", **options: Unpack[S3Options]) -> None:
        """Connect to ``bucket``; options are those of ``S3BlobStore`` (endpoint, keys, ...)."""
        # S3BlobStore builds the client the project's S3 settings call for (path-style
        # addressing for custom endpoints, only the checksums S3 requires, retries).
        self._s3 = S3BlobStore(bucket=bucket, prefix=prefix, **options)
        self._client: Any = self._s3.client
        self._client_error: type[Exception] = self._client.exceptions.ClientError
        self._bucket = bucket
        self._models = f"{self._s3.prefix}models/"

    def __repr__(self) -> str:
        """Show where artifacts go, never the credentials."""
        return f"S3ArtifactStore(bucket={self._bucket!r}, prefix={self._s3.prefix!r})"

    @property
    def bucket(self) -> str:
        """The bucket holding the artifacts."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix, empty or ending with a slash (artifacts are under ``models/``)."""
        return self._s3.prefix

    @property
    def client(self) -> Any:
        """The underlying boto3 S3 client, for administration and tests."""
        return self._client

    def key(self, version: str, name: str) -> str:
        """Return the object key of one file of an artifact."""
        return f"{self._models}{check_version_name(version)}/{name}"

    def _stored_metadata(self, version: str) -> dict[str, Any] | None:
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self.key(version, METADATA_FILE)
            )
        except self._client_error as exc:
            if _error_code(exc) in _NOT_FOUND_CODES:
                return None
            raise
        body = response["Body"]
        try:
            raw: bytes = body.read()
        finally:
            body.close()
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            raise ArtifactIntegrityError(f"stored metadata of {version} is not JSON") from exc
        if not isinstance(meta, dict):
            raise ArtifactIntegrityError(f"stored metadata of {version} is not a JSON object")
        return meta

    def publish(self, artifact_dir: Path) -> str:
        """Upload a verified artifact directory and return its version; idempotent."""
        meta = read_artifact(artifact_dir)
        version: str = meta["version"]
        stored = self._stored_metadata(version)
        if stored is not None:
            if stored.get("model_sha256") != meta["model_sha256"]:
                raise ArtifactConflictError(
                    f"version {version} is already stored with a different model file"
                )
            return version
        files = artifact_files(artifact_dir)
        # metadata.json last: its presence marks a complete artifact.
        for path in sorted(files, key=lambda p: (p.name == METADATA_FILE, p.name)):
            digest = file_sha256(path)
            if path.name == MODEL_FILE and digest != meta["model_sha256"]:
                raise ArtifactIntegrityError(f"{path} changed while it was being published")
            self._client.upload_file(
                os.fspath(path),
                self._bucket,
                self.key(version, path.name),
                ExtraArgs={
                    "ContentType": "application/octet-stream",
                    "Metadata": {_SHA256_METADATA_KEY: digest},
                },
            )
        return version

    def _object_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
            keys.extend(str(obj["Key"]) for obj in page.get("Contents", []))
        return keys

    def _download(self, key: str, dst: Path) -> None:
        """Stream one object to ``dst`` and check it against its recorded SHA-256."""
        response = self._client.get_object(Bucket=self._bucket, Key=key)
        body = response["Body"]
        digest = hashlib.sha256()
        try:
            with dst.open("xb") as out:
                while chunk := body.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        finally:
            body.close()
        recorded = response.get("Metadata", {}).get(_SHA256_METADATA_KEY)
        if recorded is not None and recorded != digest.hexdigest():
            raise ArtifactIntegrityError(
                f"s3://{self._bucket}/{key} does not match its recorded SHA-256"
            )

    def fetch(self, version: str, *, cache_dir: Path) -> Path:
        """Download ``version`` into ``cache_dir/<version>`` (once) and return it, verified."""
        target = cache_dir / check_version_name(version)
        if target.is_dir():
            try:
                read_artifact(target, version=version)
            except ArtifactIntegrityError:
                shutil.rmtree(target)  # a damaged cached copy is downloaded again
            else:
                return target
        base = f"{self._models}{version}/"
        keys = self._object_keys(base)
        if base + METADATA_FILE not in keys:
            raise ArtifactNotFoundError(f"no artifact {version} in s3://{self._bucket}/{base}")
        for key in keys:
            if not _NAME_RE.fullmatch(key[len(base) :]):
                raise ArtifactIntegrityError(f"unexpected object s3://{self._bucket}/{key}")
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".part-"))
        try:
            for key in keys:
                self._download(key, tmp / key[len(base) :])
            read_artifact(tmp, version=version)
            try:
                tmp.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
                # A concurrent fetch got there first; use its (verified) copy.
                shutil.rmtree(tmp, ignore_errors=True)
                read_artifact(target, version=version)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    def versions(self) -> list[str]:
        """Return the versions whose metadata.json is stored, sorted by name."""
        found: set[str] = set()
        for key in self._object_keys(self._models):
            version, _, name = key[len(self._models) :].partition("/")
            if name == METADATA_FILE and _NAME_RE.fullmatch(version):
                found.add(version)
        return sorted(found)


def artifact_store_from_url(url: str, **s3_options: Unpack[S3Options]) -> ArtifactStore:
    """Return the artifact store ``url`` names: ``file:///abs/path``, a path, or ``s3://b/p``."""
    location = parse_store_url(url)
    if location.path is not None:
        return LocalArtifactStore(location.path)
    assert location.bucket is not None
    return S3ArtifactStore(bucket=location.bucket, prefix=location.prefix, **s3_options)


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """A registered model version, with the aliases that point at it now."""

    version: str
    kind: str
    labels: tuple[str, ...]
    metrics: dict[str, Any]
    eval: dict[str, Any] | None
    training_data_sha256: str
    model_sha256: str
    metadata: dict[str, Any]
    created_at: datetime
    registered_by: str
    aliases: tuple[str, ...]

    @property
    def eval_macro_f1(self) -> float | None:
        """The macro-F1 of the latest evaluation (``macro_f1`` at its top or in ``metrics``)."""
        return eval_macro_f1(self.eval)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One recorded move of an alias."""

    id: int
    alias: str
    from_version: str | None
    to_version: str | None
    action: str
    actor: str
    reason: str | None
    forced: bool
    gate_report: dict[str, Any] | None
    at: datetime


@dataclass(frozen=True, slots=True)
class AliasMove:
    """What a move did: from where to where, and its history row (None if nothing changed)."""

    alias: str
    from_version: str | None
    to_version: str | None
    action: str
    history_id: int | None

    @property
    def changed(self) -> bool:
        """Whether the alias moved (moving to where it already points records nothing)."""
        return self.history_id is not None


def eval_macro_f1(report: Mapping[str, Any] | None) -> float | None:
    """Return ``macro_f1`` from an evaluation report (top level or under ``metrics``)."""
    if not report:
        return None
    value = report.get("macro_f1")
    if value is None and isinstance(report.get("metrics"), Mapping):
        value = report["metrics"].get("macro_f1")
    return float(value) if isinstance(value, int | float) else None


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is champion, canary or shadow, else raise UnknownAliasError."""
    if alias not in ALIASES:
        raise UnknownAliasError(f"unknown alias {alias!r}; aliases are {', '.join(ALIASES)}")
    return alias


def _check_actor(actor: str) -> str:
    if not actor or len(actor) > MAX_ACTOR_CHARS:
        raise ValueError(f"actor must be 1 to {MAX_ACTOR_CHARS} characters")
    return actor


def _history_entry(row: ModelAliasHistory) -> HistoryEntry:
    return HistoryEntry(
        id=row.id,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        action=row.action,
        actor=row.actor,
        reason=row.reason,
        forced=row.forced,
        gate_report=row.gate_report,
        at=row.at,
    )


def _version_info(row: ModelVersion, aliases: tuple[str, ...]) -> VersionInfo:
    return VersionInfo(
        version=row.version,
        kind=row.kind,
        labels=tuple(row.labels),
        metrics=dict(row.metrics),
        eval=row.eval,
        training_data_sha256=row.training_data_sha256,
        model_sha256=row.model_sha256,
        metadata=dict(row.artifact_metadata),
        created_at=row.created_at,
        registered_by=row.registered_by,
        aliases=aliases,
    )


class ModelRegistry:
    """Registered model versions and the aliases that point at them, in PostgreSQL."""

    def __init__(self, engine: AsyncEngine, store: ArtifactStore) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._store = store

    @property
    def store(self) -> ArtifactStore:
        """The artifact store holding the registered versions' files."""
        return self._store

    async def register(self, artifact_dir: Path, *, actor: str) -> str:
        """Publish an artifact directory and record its version; idempotent."""
        _check_actor(actor)
        meta = await asyncio.to_thread(read_artifact, artifact_dir)
        version = await asyncio.to_thread(self._store.publish, artifact_dir)
        async with self._sessions.begin() as session:
            await session.execute(
                insert(ModelVersion)
                .values(
                    version=version,
                    kind=str(meta["kind"]),
                    labels=list(meta["labels"]),
                    metrics=dict(meta["metrics"]),
                    training_data_sha256=str(meta["training_data_sha256"]),
                    model_sha256=str(meta["model_sha256"]),
                    artifact_metadata=meta,
                    registered_by=actor,
                )
                .on_conflict_do_nothing(index_elements=["version"])
            )
            stored = await session.scalar(
                select(ModelVersion.model_sha256).where(ModelVersion.version == version)
            )
        if stored != meta["model_sha256"]:
            raise ArtifactConflictError(
                f"version {version} is already registered with a different model file"
            )
        return version

    async def set_eval(self, version: str, report: Mapping[str, Any]) -> None:
        """Record ``report`` as the latest golden-set evaluation of ``version``."""
        async with self._sessions.begin() as session:
            updated = await session.scalar(
                update(ModelVersion)
                .where(ModelVersion.version == version)
                .values(eval=dict(report))
                .returning(ModelVersion.version)
            )
        if updated is None:
            raise UnknownVersionError(f"no registered model version {version!r}")

    async def _aliases_by_version(self, session: AsyncSession) -> dict[str, tuple[str, ...]]:
        rows = (
            await session.execute(
                select(ModelAlias.alias, ModelAlias.version).where(ModelAlias.version.is_not(None))
            )
        ).all()
        pointed = {alias: version for alias, version in rows if version is not None}
        out: dict[str, tuple[str, ...]] = {}
        for alias in ALIASES:
            if alias in pointed:
                out[pointed[alias]] = (*out.get(pointed[alias], ()), alias)
        return out

    async def versions(self) -> list[VersionInfo]:
        """Return every registered version, oldest registration first."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(
                    select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.version)
                )
            ).all()
            aliases = await self._aliases_by_version(session)
        return [_version_info(row, aliases.get(row.version, ())) for row in rows]

    async def get(self, version: str) -> VersionInfo:
        """Return one registered version or raise UnknownVersionError."""
        async with self._sessions() as session:
            row = await session.get(ModelVersion, version)
            if row is None:
                raise UnknownVersionError(f"no registered model version {version!r}")
            aliases = await self._aliases_by_version(session)
        return _version_info(row, aliases.get(version, ()))

    async def aliases(self) -> dict[str, str]:
        """Return the aliases that point at a version, in champion, canary, shadow order."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(ModelAlias.alias, ModelAlias.version).where(
                        ModelAlias.version.is_not(None)
                    )
                )
            ).all()
        found = {alias: version for alias, version in rows if version is not None}
        return {alias: found[alias] for alias in ALIASES if alias in found}

    async def resolve(self, alias: str) -> str | None:
        """Return the version ``alias`` points at, or None if it is not set."""
        check_alias(alias)
        async with self._sessions() as session:
            version: str | None = await session.scalar(
                select(ModelAlias.version).where(ModelAlias.alias == alias)
            )
        return version

    async def fetch(self, version: str, *, cache_dir: Path) -> Path:
        """Return a local, verified copy of a registered version's artifact."""
        info = await self.get(version)
        path = await asyncio.to_thread(self._store.fetch, version, cache_dir=cache_dir)
        meta = await asyncio.to_thread(read_artifact, path, version=version)
        if meta["model_sha256"] != info.model_sha256:
            raise ArtifactIntegrityError(
                f"stored artifact {version} is not the model file that was registered"
            )
        return path

    async def _lock_alias(self, session: AsyncSession, alias: str, actor: str) -> str | None:
        """Lock the alias row for this transaction (creating it unset) and return its version."""
        # The row must exist for FOR UPDATE to lock it; a concurrent insert of the same alias
        # waits on the first one's commit, so either way both movers then queue on the row.
        await session.execute(
            insert(ModelAlias)
            .values(alias=alias, version=None, updated_by=actor)
            .on_conflict_do_nothing(index_elements=["alias"])
        )
        current: str | None = (
            await session.execute(
                select(ModelAlias.version).where(ModelAlias.alias == alias).with_for_update()
            )
        ).scalar_one()
        return current

    async def _apply(
        self,
        session: AsyncSession,
        *,
        alias: str,
        current: str | None,
        version: str | None,
        actor: str,
        action: str,
        reason: str | None,
        forced: bool,
        gate_report: Mapping[str, Any] | None,
    ) -> AliasMove:
        if version is not None:
            found = await session.scalar(
                select(ModelVersion.version).where(ModelVersion.version == version)
            )
            if found is None:
                raise UnknownVersionError(f"no registered model version {version!r}")
        if current == version:
            return AliasMove(alias, current, version, action, None)
        await session.execute(
            update(ModelAlias)
            .where(ModelAlias.alias == alias)
            .values(version=version, updated_at=func.clock_timestamp(), updated_by=actor)
        )
        history_id = await session.scalar(
            insert(ModelAliasHistory)
            .values(
                alias=alias,
                from_version=current,
                to_version=version,
                action=action,
                actor=actor,
                reason=reason,
                forced=forced,
                gate_report=dict(gate_report) if gate_report is not None else None,
            )
            .returning(ModelAliasHistory.id)
        )
        return AliasMove(alias, current, version, action, history_id)

    async def move_alias(
        self,
        alias: str,
        version: str | None,
        *,
        actor: str,
        action: str,
        reason: str | None = None,
        forced: bool = False,
        gate_report: Mapping[str, Any] | None = None,
        policy: PolicyChange | None = None,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (None to clear) and append the move to its history;
        with ``policy``, change the routing policy in the same transaction (the canary's
        partitions with its promotion, say)."""
        # The alias row is locked for the transaction, so concurrent moves queue and each
        # history entry starts where the previous one ended. Moving an alias to the version it
        # already points at changes and records nothing. Gates are the caller's business:
        # ``forced`` and ``gate_report`` are recorded as given.
        check_alias(alias)
        _check_actor(actor)
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
        if (action == "clear") != (version is None):
            raise ValueError("a clear moves an alias to no version; other actions need one")
        async with self._sessions.begin() as session:
            current = await self._lock_alias(session, alias, actor)
            move = await self._apply(
                session,
                alias=alias,
                current=current,
                version=version,
                actor=actor,
                action=action,
                reason=reason,
                forced=forced,
                gate_report=gate_report,
            )
            if policy is not None:
                why = reason or f"{action} {version or '(none)'} to {alias}"
                await change_in(session, policy, actor=actor, reason=why)
            return move

    async def rollback(self, alias: str, *, actor: str, reason: str) -> str:
        """Move ``alias`` back to where it pointed before its latest promotion; return that."""
        # The target is the from_version of the latest 'promote' entry that moved the alias
        # to its current version, so repeated rollbacks walk back through promotions.
        check_alias(alias)
        _check_actor(actor)
        async with self._sessions.begin() as session:
            current = await self._lock_alias(session, alias, actor)
            if current is None:
                raise NoPreviousVersionError(f"{alias} points at no version: nothing to roll back")
            previous = (
                await session.execute(
                    select(ModelAliasHistory.from_version)
                    .where(
                        ModelAliasHistory.alias == alias,
                        ModelAliasHistory.to_version == current,
                        ModelAliasHistory.action == "promote",
                    )
                    .order_by(ModelAliasHistory.id.desc())
                    .limit(1)
                )
            ).first()
            if previous is None or previous[0] is None:
                raise NoPreviousVersionError(
                    f"{alias} has no version to roll back to: nothing was promoted before {current}"
                )
            target: str = previous[0]
            await self._apply(
                session,
                alias=alias,
                current=current,
                version=target,
                actor=actor,
                action="rollback",
                reason=reason,
                forced=False,
                gate_report=None,
            )
        return target

    async def clear(self, alias: str, *, actor: str, reason: str) -> AliasMove:
        """Point ``alias`` at no version, recording why."""
        return await self.move_alias(alias, None, actor=actor, action="clear", reason=reason)

    async def history(self, alias: str | None = None, limit: int = 50) -> list[HistoryEntry]:
        """Return the latest alias moves, newest first (of one alias, or of all)."""
        statement = select(ModelAliasHistory).order_by(ModelAliasHistory.id.desc()).limit(limit)
        if alias is not None:
            statement = statement.where(ModelAliasHistory.alias == check_alias(alias))
        async with self._sessions() as session:
            rows = (await session.scalars(statement)).all()
        return [_history_entry(row) for row in rows]
