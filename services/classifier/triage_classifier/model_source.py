"""Where the classifier's model comes from, and how it changes without a restart.

Two sources:
- a path (``TRIAGE_CLASSIFIER_MODEL_PATH``), often a symlink such as ``models/champion``
  that ``triage model train --link champion`` moves: the link is re-read every refresh;
- a registry alias (``TRIAGE_CLASSIFIER_MODEL_ALIAS=champion``): the alias is resolved in
  PostgreSQL every refresh and a new version is fetched from the artifact store.

Either way a change is picked up within ``model_refresh_seconds`` plus the load time, and
the swap is atomic: a micro-batch is scored by one model from start to end. When no trained
model can be loaded, the rules model serves (degraded mode) until one can.

Beside the champion, the registry aliases ``canary`` and ``shadow`` are followed the same way
while the routing policy gives them traffic (canary partitions, a shadow sample). The policy
itself is read from the registry every refresh too. An alias that points at nothing, or a
version that fails to load, leaves that role empty: the champion scores the canary's
partitions, and nothing is shadow-scored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from triage_classifier.metrics import (
    CANARY_PARTITION,
    MODEL_INFO,
    MODEL_LOAD_SECONDS,
    MODEL_LOADS,
    POLICY_VERSION,
    SHADOW_SAMPLE_RATIO,
)
from triage_classifier.settings import Settings
from triage_contracts import ModelRole
from triage_ml import model as model_lib
from triage_ml.rules import RulesError, load_rules
from triage_runtime.db.engine import make_async_engine
from triage_runtime.policy_store import PolicyStore
from triage_runtime.registry import ModelRegistry, artifact_store_from_url
from triage_runtime.routing import DEFAULT_POLICY, RoutingPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Serving:
    """The model in service and the role it serves in."""

    model: model_lib.LoadedModel
    role: ModelRole

    @property
    def degraded(self) -> bool:
        """True when only the rules fallback is serving."""
        return self.role is ModelRole.RULES


class Models(Protocol):
    """What serves now, as the handlers read it: ``ModelSource``, or a fixed set in tests."""

    @property
    def serving(self) -> Serving | None:
        """The champion (or the rules fallback); None before the first load."""
        ...

    @property
    def canary(self) -> Serving | None:
        """The canary, when it has partitions and a model."""
        ...

    @property
    def shadow(self) -> Serving | None:
        """The shadow, when it has a sample and a model."""
        ...

    @property
    def policy(self) -> RoutingPolicy:
        """The routing policy in force."""
        ...


class AliasClearedError(LookupError):
    """The registry alias the champion follows points at no version."""


class ModelSource:
    """Loads the configured model, keeps it current, and falls back to rules."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._serving: Serving | None = None
        self._loaded_from: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._registry: ModelRegistry | None = None
        self._engine: AsyncEngine | None = None
        self._extra: dict[ModelRole, Serving | None] = {}
        self._extra_versions: dict[ModelRole, str | None] = {}
        self._policy = DEFAULT_POLICY
        self._policies: PolicyStore | None = None
        self._policy_unread = False

    @property
    def serving(self) -> Serving | None:
        """The current model, or None before the first load."""
        return self._serving

    @property
    def canary(self) -> Serving | None:
        """The canary model, when the policy gives it partitions and the alias is set."""
        return self._extra.get(ModelRole.CANARY)

    @property
    def shadow(self) -> Serving | None:
        """The shadow model, when the policy samples for it and the alias is set."""
        return self._extra.get(ModelRole.SHADOW)

    @property
    def policy(self) -> RoutingPolicy:
        """The routing policy in force (the default until one is read)."""
        return self._policy

    def describe(self) -> dict[str, object]:
        """What this instance serves, for /readyz: models by role, the policy's traffic."""
        models = {
            s.role.value: s.model.version
            for s in (self._serving, self.canary, self.shadow)
            if s is not None
        }
        policy = self._policy
        return {
            "models": models,
            "policy_version": policy.version,
            "canary_partitions": sorted(policy.canary_partitions) if self.canary else [],
            "shadow_sample": policy.shadow_sample if self.shadow else 0.0,
        }

    async def start(self) -> None:
        """Load once (falling back to rules if allowed), then keep refreshing."""
        await self.refresh()
        if self._serving is None:
            if not self._settings.fallback_to_rules:
                raise model_lib.ModelLoadError(
                    "no model could be loaded and TRIAGE_CLASSIFIER_FALLBACK_TO_RULES is off"
                )
            await asyncio.to_thread(self._use_rules)
        self._task = asyncio.create_task(self._loop(), name="model-refresh")

    async def stop(self) -> None:
        """Stop refreshing and release the registry connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._engine is not None:
            await self._engine.dispose()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.model_refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                log.exception("model refresh failed; keeping the current model")

    async def _locate(self) -> tuple[str, Path] | None:
        """Return (identity, local artifact directory) of the model that should serve.

        Raises AliasClearedError when the configured alias points at no version.
        """
        settings = self._settings
        if settings.model_alias:
            registry = self._registry_client()
            version = await registry.resolve(settings.model_alias)
            if version is None:
                raise AliasClearedError(settings.model_alias)
            if version == self._loaded_from:
                return version, Path()
            path = await registry.fetch(version, cache_dir=settings.model_cache_dir)
            return version, path
        path = settings.model_path
        if not path.exists():
            return None
        resolved = path.resolve()
        return str(resolved), resolved

    def _registry_client(self) -> ModelRegistry:
        if self._registry is None:
            settings = self._settings
            self._engine = make_async_engine(settings.database_url, pool_size=1)
            store = artifact_store_from_url(
                settings.model_store_url,
                endpoint_url=settings.s3_endpoint_url,
                region=settings.s3_region,
                access_key_id=settings.s3_access_key_id,
                secret_access_key=settings.s3_secret_access_key,
            )
            self._registry = ModelRegistry(self._engine, store)
        return self._registry

    async def refresh(self) -> bool:
        """Load the configured models if they changed; return whether a trained champion serves."""
        try:
            await self._refresh_policy()
            self._policy_unread = False
        except Exception:
            if not self._policy_unread:  # once per outage, not once per refresh
                log.exception("could not read the routing policy; keeping the current one")
            self._policy_unread = True
        for role in self._extra:
            try:
                await self._refresh_extra(role)
            except Exception:
                log.exception("could not refresh a model", extra={"model_role": role.value})
        champion = await self._refresh_champion()
        self._export_traffic()
        return champion

    async def _refresh_policy(self) -> None:
        """Read the policy in force; give the canary and shadow roles traffic as it says."""
        if self._policies is None:
            self._registry_client()
            assert self._engine is not None
            self._policies = PolicyStore(self._engine)
        policy = await self._policies.current()
        wanted = {
            ModelRole.CANARY: bool(policy.canary_partitions),
            ModelRole.SHADOW: policy.shadow_sample > 0,
        }
        for role, on in wanted.items():
            if on:
                self._extra.setdefault(role, None)
            elif role in self._extra:
                self._retire(role)
        if policy != self._policy:
            self._policy = policy
            log.info(
                "routing policy in force",
                extra={
                    "policy_version": policy.version,
                    "canary_partitions": sorted(policy.canary_partitions),
                    "shadow_sample": policy.shadow_sample,
                },
            )

    def _retire(self, role: ModelRole) -> None:
        """Stop serving ``role`` (the policy gives it no traffic)."""
        previous = self._extra.pop(role, None)
        self._extra_versions.pop(role, None)
        if previous is not None:
            MODEL_INFO.labels(previous.model.version, role.value).set(0)
            log.info(
                "model out of service: the policy gives its role no traffic",
                extra={"model_version": previous.model.version, "model_role": role.value},
            )

    def _export_traffic(self) -> None:
        """The policy version and the traffic each extra role takes, as gauges."""
        policy = self._policy
        POLICY_VERSION.set(policy.version or 0)
        CANARY_PARTITION.clear()
        if self.canary is not None:
            for partition in policy.canary_partitions:
                CANARY_PARTITION.labels(str(partition)).set(1)
        SHADOW_SAMPLE_RATIO.set(policy.shadow_sample if self.shadow is not None else 0.0)

    async def _refresh_extra(self, role: ModelRole) -> None:
        """Follow the registry alias named after ``role``; empty the role when it points nowhere."""
        registry = self._registry_client()
        version = await registry.resolve(role.value)
        if version == self._extra_versions.get(role) and (
            version is None or self._extra[role] is not None
        ):
            return
        self._extra_versions[role] = version
        previous = self._extra[role]
        if previous is not None:
            MODEL_INFO.labels(previous.model.version, role.value).set(0)
        self._extra[role] = None
        if version is None:
            log.info("no model in this role", extra={"model_role": role.value})
            return
        started = time.perf_counter()
        try:
            path = await registry.fetch(version, cache_dir=self._settings.model_cache_dir)
            model = await asyncio.to_thread(model_lib.load, path)
        except Exception:
            MODEL_LOADS.labels("failed").inc()
            log.exception(
                "model load failed", extra={"model_version": version, "model_role": role.value}
            )
            return
        MODEL_LOAD_SECONDS.set(time.perf_counter() - started)
        MODEL_LOADS.labels("loaded").inc()
        self._extra[role] = Serving(model, role)
        MODEL_INFO.labels(model.version, role.value).set(1)
        log.info("model in service", extra={"model_version": version, "model_role": role.value})

    async def _refresh_champion(self) -> bool:
        try:
            located = await self._locate()
        except AliasClearedError as cleared:
            # An operator cleared the alias on purpose: serve the rules (degraded mode) until
            # it points at a version again. (A database outage, below, keeps the model.)
            if self._settings.fallback_to_rules and not (
                self._serving is not None and self._serving.degraded
            ):
                log.warning("the %s alias points at no model: switching to rules", cleared)
                await asyncio.to_thread(self._use_rules)
            return False
        except Exception:
            log.exception("could not locate the configured model")
            located = None
        if located is None:
            # Nothing to load: a trained model already in service keeps serving.
            return self._serving is not None and not self._serving.degraded
        identity, path = located
        if identity == self._loaded_from and self._serving and not self._serving.degraded:
            return True
        started = time.perf_counter()
        try:
            model = await asyncio.to_thread(model_lib.load, path)
        except Exception:
            MODEL_LOADS.labels("failed").inc()
            log.exception("model load failed", extra={"model_identity": identity})
            return self._serving is not None and not self._serving.degraded
        self._swap(Serving(model, ModelRole.CHAMPION), identity)
        MODEL_LOAD_SECONDS.set(time.perf_counter() - started)
        MODEL_LOADS.labels("loaded").inc()
        return True

    def _use_rules(self) -> None:
        try:
            rules = load_rules(self._settings.rules_path)
        except RulesError:
            log.exception("the rules fallback could not be loaded either")
            raise
        self._swap(Serving(model_lib.LoadedModel.from_rules(rules), ModelRole.RULES), None)
        log.warning("serving with the rules fallback (degraded mode)")

    def _swap(self, serving: Serving, identity: str | None) -> None:
        previous = self._serving
        if previous is not None:
            MODEL_INFO.labels(previous.model.version, previous.role.value).set(0)
        self._serving = serving
        self._loaded_from = identity
        MODEL_INFO.labels(serving.model.version, serving.role.value).set(1)
        log.info(
            "model in service",
            extra={"model_version": serving.model.version, "model_role": serving.role.value},
        )
