"""The declared topic list and the plan that compares it with a cluster (pure)."""

from __future__ import annotations

import pytest

from triage_contracts import topics
from triage_contracts.topics import TopicSpec, declared_topics
from triage_runtime.topic_admin import (
    ActualTopic,
    AddPartitions,
    AlterConfig,
    CannotApply,
    Create,
    plan,
)


def _as_declared(spec: TopicSpec) -> ActualTopic:
    return ActualTopic(
        partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        configs={**spec.configs(), "segment.ms": "604800000"},  # undeclared configs are ignored
    )


def test_the_declared_list_holds_every_fixed_topic_and_one_routed_topic_per_queue() -> None:
    declared = declared_topics(["legal", "billing", "legal"], replication_factor=1)
    names = [spec.name for spec in declared]
    assert set(topics.ALL_FIXED) <= set(names)
    assert names[-2:] == [topics.routed_topic("billing"), topics.routed_topic("legal")]
    assert len(names) == len(set(names))
    assert all(s.replication_factor == 1 and s.min_insync_replicas == 1 for s in declared)


def test_min_insync_replicas_is_one_fewer_than_the_replication_factor() -> None:
    assert {s.min_insync_replicas for s in declared_topics([], replication_factor=3)} == {2}


def test_a_queue_no_topic_can_carry_and_a_zero_replication_factor_are_refused() -> None:
    with pytest.raises(ValueError, match="queue name"):
        declared_topics(["Not A Queue"])
    with pytest.raises(ValueError, match="replication factor"):
        declared_topics([], replication_factor=0)


def test_an_empty_cluster_needs_every_topic_created() -> None:
    declared = declared_topics(["billing"], replication_factor=1)
    assert plan(declared, {}) == [Create(spec) for spec in declared]


def test_a_cluster_that_matches_needs_nothing() -> None:
    declared = declared_topics(["billing"], replication_factor=3)
    assert plan(declared, {s.name: _as_declared(s) for s in declared}) == []


def test_topics_not_declared_are_left_alone() -> None:
    declared = declared_topics([], replication_factor=1)
    actual = {s.name: _as_declared(s) for s in declared}
    actual["someone.elses.topic"] = ActualTopic(partitions=1, replication_factor=1, configs={})
    assert plan(declared, actual) == []


def test_a_changed_retention_is_altered_back_to_the_declared_value() -> None:
    spec = declared_topics([], replication_factor=1)[0]
    actual = _as_declared(spec)
    changed = ActualTopic(
        partitions=actual.partitions,
        replication_factor=actual.replication_factor,
        configs={**actual.configs, "retention.ms": "1000"},
    )
    assert plan([spec], {spec.name: changed}) == [
        AlterConfig(spec.name, "retention.ms", "1000", str(spec.retention_ms))
    ]


def test_a_missing_config_is_set() -> None:
    spec = declared_topics([], replication_factor=1)[0]
    bare = ActualTopic(partitions=spec.partitions, replication_factor=1, configs={})
    assert {c.key for c in plan([spec], {spec.name: bare}) if isinstance(c, AlterConfig)} == {
        "retention.ms",
        "cleanup.policy",
        "min.insync.replicas",
    }


def test_too_few_partitions_are_added_but_too_many_or_another_replication_need_an_operator() -> (
    None
):
    spec = declared_topics([], replication_factor=3)[0]
    fewer = ActualTopic(partitions=1, replication_factor=3, configs=spec.configs())
    assert plan([spec], {spec.name: fewer}) == [AddPartitions(spec.name, 1, spec.partitions)]

    more = ActualTopic(partitions=spec.partitions + 1, replication_factor=1, configs=spec.configs())
    changes = plan([spec], {spec.name: more})
    assert all(isinstance(c, CannotApply) for c in changes)
    assert ["cannot remove partitions" in c.describe() for c in changes] == [True, False]
    assert "replication factor 1, 3 declared" in changes[1].describe()
