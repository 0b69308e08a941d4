"""The routing policy in PostgreSQL: the ``routing_policy`` table's one owner.

Every change appends a whole new version (the table refuses updates and deletes), with who
made it and why, and an ``audit_log`` row in the same transaction.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_runtime import audit
from triage_runtime.db.models import RoutingPolicyRow
from triage_runtime.routing import DEFAULT_POLICY, RoutingPolicy

MAX_ACTOR_CHARS = 80
MAX_REVIEW_SLA_HOURS = 24 * 90


class PolicyError(ValueError):
    """A policy change that cannot be applied (bad value, no reason, unknown version)."""


@dataclass(frozen=True, slots=True)
class PolicyChange:
    """What a change sets; None leaves a part as it is.

    ``thresholds`` maps a model version to label thresholds; a threshold of None removes that
    label's override (the model's own threshold applies again).
    """

    thresholds: Mapping[str, Mapping[str, float | None]] | None = None
    canary_partitions: frozenset[int] | None = None
    shadow_sample: float | None = None
    review_sla_hours: float | None = None
    quality_sample: float | None = None
    target_precision: float | None = None

    def applied_to(self, policy: RoutingPolicy) -> RoutingPolicy:
        """``policy`` with this change made (its version unchanged)."""
        thresholds = {model: dict(labels) for model, labels in policy.thresholds.items()}
        for model, labels in (self.thresholds or {}).items():
            merged = thresholds.setdefault(model, {})
            for label, value in labels.items():
                if value is None:
                    merged.pop(label, None)
                else:
                    merged[label] = _checked_threshold(label, value)
            if not merged:
                del thresholds[model]
        partitions = policy.canary_partitions
        if self.canary_partitions is not None:
            if any(p < 0 for p in self.canary_partitions):
                raise PolicyError("partition numbers start at 0")
            partitions = frozenset(self.canary_partitions)
        sla = policy.review_sla_hours
        if self.review_sla_hours is not None:
            if not 0 < self.review_sla_hours <= MAX_REVIEW_SLA_HOURS:
                raise PolicyError(f"the review SLA is over 0 and at most {MAX_REVIEW_SLA_HOURS} h")
            sla = self.review_sla_hours
        target = policy.target_precision
        if self.target_precision is not None:
            if not 0.0 < self.target_precision <= 1.0 or math.isnan(self.target_precision):
                raise PolicyError("the target precision is over 0 and at most 1")
            target = self.target_precision
        return RoutingPolicy(
            version=policy.version,
            thresholds=thresholds,
            canary_partitions=partitions,
            shadow_sample=_share("the shadow sample", self.shadow_sample, policy.shadow_sample),
            review_sla_hours=sla,
            quality_sample=_share("the quality sample", self.quality_sample, policy.quality_sample),
            target_precision=target,
        )


def _share(what: str, value: float | None, current: float) -> float:
    """A share from 0 to 1 that a change sets (``current`` when it does not)."""
    if value is None:
        return current
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise PolicyError(f"{what} is a share from 0 to 1")
    return float(value)


def _checked_threshold(label: str, value: float) -> float:
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise PolicyError(f"the threshold of {label!r} must be from 0 to 1, not {value}")
    return float(value)


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A stored policy version with who made it, why and when."""

    policy: RoutingPolicy
    actor: str
    reason: str
    at: datetime


def _policy(row: RoutingPolicyRow) -> RoutingPolicy:
    return RoutingPolicy(
        version=row.version,
        thresholds={model: dict(labels) for model, labels in row.thresholds.items()},
        canary_partitions=frozenset(row.canary_partitions),
        shadow_sample=row.shadow_sample,
        review_sla_hours=row.review_sla_hours,
        quality_sample=row.quality_sample,
        target_precision=row.target_precision,
    )


class PolicyStore:
    """Reads the policy in force (or any version) and appends changes."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def current(self) -> RoutingPolicy:
        """The policy in force: the newest version, or the default when none is stored."""
        async with self._sessions() as session:
            return await current_in(session)

    async def get(self, version: int) -> RoutingPolicy:
        """One stored version; PolicyError if there is none."""
        found = await self.get_many({version})
        if version not in found:
            raise PolicyError(f"no routing policy version {version}")
        return found[version]

    async def get_many(self, versions: Collection[int]) -> dict[int, RoutingPolicy]:
        """The stored versions among ``versions`` (unknown ones are left out)."""
        if not versions:
            return {}
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RoutingPolicyRow).where(RoutingPolicyRow.version.in_(list(versions)))
            )
            return {row.version: _policy(row) for row in rows}

    async def history(self, limit: int = 20) -> list[PolicyRecord]:
        """The newest versions first."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(RoutingPolicyRow).order_by(RoutingPolicyRow.version.desc()).limit(limit)
            )
            return [PolicyRecord(_policy(r), r.actor, r.reason, r.at) for r in rows]

    async def change(self, change: PolicyChange, *, actor: str, reason: str) -> RoutingPolicy:
        """Append the policy in force with ``change`` made; return the new version."""
        async with self._sessions.begin() as session:
            return await change_in(session, change, actor=actor, reason=reason)


async def current_in(session: AsyncSession) -> RoutingPolicy:
    """``PolicyStore.current`` inside the caller's session."""
    row = await session.scalar(
        select(RoutingPolicyRow).order_by(RoutingPolicyRow.version.desc()).limit(1)
    )
    return DEFAULT_POLICY if row is None else _policy(row)


async def change_in(
    session: AsyncSession, change: PolicyChange, *, actor: str, reason: str
) -> RoutingPolicy:
    """``PolicyStore.change`` inside the caller's transaction (an alias move's, say)."""
    if not actor or len(actor) > MAX_ACTOR_CHARS:
        raise PolicyError(f"the actor is 1 to {MAX_ACTOR_CHARS} characters")
    if not reason.strip():
        raise PolicyError("a policy change needs a reason")
    # Concurrent changes queue here, so each starts from the version the previous one made;
    # readers are not blocked.
    await session.execute(text("LOCK TABLE routing_policy IN SHARE ROW EXCLUSIVE MODE"))
    policy = change.applied_to(await current_in(session))
    row = RoutingPolicyRow(
        thresholds={model: dict(labels) for model, labels in policy.thresholds.items()},
        canary_partitions=sorted(policy.canary_partitions),
        shadow_sample=policy.shadow_sample,
        review_sla_hours=policy.review_sla_hours,
        quality_sample=policy.quality_sample,
        target_precision=policy.target_precision,
        actor=actor,
        reason=reason,
    )
    session.add(row)
    await session.flush()
    await audit.record(
        session,
        actor=actor,
        action="routing_policy",
        detail={
            "version": row.version,
            "reason": reason,
            "thresholds": row.thresholds,
            "canary_partitions": row.canary_partitions,
            "shadow_sample": row.shadow_sample,
            "review_sla_hours": row.review_sla_hours,
            "quality_sample": row.quality_sample,
            "target_precision": row.target_precision,
        },
    )
    return _policy(row)


class PolicyCache:
    """Policy versions as events name them, read once each (a stored version never changes)."""

    def __init__(self, store: PolicyStore) -> None:
        self._store = store
        self._known: dict[int, RoutingPolicy] = {}

    async def named(self, versions: Collection[int | None]) -> dict[int | None, RoutingPolicy]:
        """The policy of each version named (None: the default); unknown versions are left out."""
        wanted = {v for v in versions if v is not None and v not in self._known}
        self._known |= await self._store.get_many(wanted)
        found: dict[int | None, RoutingPolicy] = {
            v: self._known[v] for v in versions if v is not None and v in self._known
        }
        if None in versions:
            found[None] = DEFAULT_POLICY
        return found
