"""Topics as code: compare the declared topics with a cluster, then create or alter them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from triage_contracts.topics import TopicSpec
from triage_runtime.kafka_connection import KafkaConnection


@dataclass(frozen=True)
class ActualTopic:
    """What a cluster says about one topic."""

    partitions: int
    replication_factor: int
    configs: Mapping[str, str]
    """Every effective topic config (defaults included)."""
    overrides: Mapping[str, str] = field(default_factory=dict)
    """Only the configs set on the topic itself."""


@dataclass(frozen=True)
class Create:
    """The topic is missing: create it."""

    spec: TopicSpec

    def describe(self) -> str:
        """One line for the plan."""
        s = self.spec
        settings = ", ".join(f"{k}={v}" for k, v in s.configs().items())
        return (
            f"+ create {s.name}: partitions={s.partitions}, "
            f"replication={s.replication_factor}, {settings}"
        )


@dataclass(frozen=True)
class AlterConfig:
    """A topic config differs from the declared value: set it."""

    name: str
    key: str
    current: str | None
    wanted: str

    def describe(self) -> str:
        """One line for the plan."""
        return f"~ alter {self.name}: {self.key} {self.current} -> {self.wanted}"


@dataclass(frozen=True)
class AddPartitions:
    """The topic has fewer partitions than declared: add some (keys move to new partitions)."""

    name: str
    current: int
    wanted: int

    def describe(self) -> str:
        """One line for the plan."""
        return f"~ partitions {self.name}: {self.current} -> {self.wanted}"


@dataclass(frozen=True)
class CannotApply:
    """A difference apply does not make (fewer partitions, another replication factor)."""

    name: str
    reason: str

    def describe(self) -> str:
        """One line for the plan."""
        return f"! {self.name}: {self.reason} (not changed by apply; see docs/deploy.md)"


Change = Create | AlterConfig | AddPartitions | CannotApply


def plan(declared: Iterable[TopicSpec], actual: Mapping[str, ActualTopic]) -> list[Change]:
    """The changes that would make ``actual`` match ``declared`` (pure; topics not declared
    are left alone)."""
    changes: list[Change] = []
    for spec in declared:
        found = actual.get(spec.name)
        if found is None:
            changes.append(Create(spec))
            continue
        if found.partitions < spec.partitions:
            changes.append(AddPartitions(spec.name, found.partitions, spec.partitions))
        elif found.partitions > spec.partitions:
            changes.append(
                CannotApply(
                    spec.name,
                    f"has {found.partitions} partitions, {spec.partitions} declared; "
                    "Kafka cannot remove partitions",
                )
            )
        if found.replication_factor != spec.replication_factor:
            changes.append(
                CannotApply(
                    spec.name,
                    f"replication factor {found.replication_factor}, "
                    f"{spec.replication_factor} declared; reassign partitions to change it",
                )
            )
        for key, wanted in spec.configs().items():
            current = found.configs.get(key)
            if current != wanted:
                changes.append(AlterConfig(spec.name, key, current, wanted))
    return changes


LISTED_TIMEOUT = 30.0
"""Seconds ``apply`` waits for the broker's metadata to list the topics it created."""

_TOPIC_OVERRIDE = 1
"""DescribeConfigs' config_source for a config set on the topic itself."""


class TopicAdminError(RuntimeError):
    """The cluster refused a topic request; the message says which topic and why."""


def _raise_for(topic: str, error_code: int, message: str | None) -> None:
    if error_code:
        error = for_code(error_code)
        raise TopicAdminError(f"{topic}: {message or error.__name__}")


class TopicAdmin:
    """Reads and changes topics through Kafka's admin API."""

    def __init__(self, kafka: KafkaConnection, *, prefix: str = "") -> None:
        self._client = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
        self._prefix = prefix

    async def __aenter__(self) -> TopicAdmin:
        await self._client.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def _all_topics(self) -> list[dict[str, Any]]:
        # All topics at once: a metadata request that names a missing topic makes a broker
        # with auto-create on create it, with its default settings.
        described: list[dict[str, Any]] = await self._client.describe_topics()
        return described

    async def partitions(self, name: str) -> list[int] | None:
        """The partition numbers of topic ``name`` (unprefixed), in order; None if it does
        not exist. Never creates it, whatever the broker's auto-create setting."""
        for topic in await self._all_topics():
            if topic["topic"] == self._prefix + name:
                _raise_for(topic["topic"], topic["error_code"], None)
                return sorted(p["partition"] for p in topic["partitions"])
        return None

    async def describe(self, names: Sequence[str]) -> dict[str, ActualTopic]:
        """The named topics that exist (by their unprefixed names), with their settings."""
        everything = await self._all_topics()
        full = {self._prefix + n for n in names}
        described = [t for t in everything if t["topic"] in full]
        wanted = [t["topic"].removeprefix(self._prefix) for t in described]
        if not wanted:
            return {}
        responses = await self._client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, self._prefix + n) for n in wanted]
        )
        configs: dict[str, dict[str, str]] = {}
        overrides: dict[str, dict[str, str]] = {}
        for response in responses:
            for error_code, message, _type, resource, entries in response.resources:
                _raise_for(resource, error_code, message)
                configs[resource] = {entry[0]: entry[1] for entry in entries}
                overrides[resource] = {
                    entry[0]: entry[1] for entry in entries if entry[3] == _TOPIC_OVERRIDE
                }
        result: dict[str, ActualTopic] = {}
        for topic in described:
            _raise_for(topic["topic"], topic["error_code"], None)
            partitions = topic["partitions"]
            result[topic["topic"].removeprefix(self._prefix)] = ActualTopic(
                partitions=len(partitions),
                replication_factor=min((len(p["replicas"]) for p in partitions), default=0),
                configs=configs.get(topic["topic"], {}),
                overrides=overrides.get(topic["topic"], {}),
            )
        return result

    async def apply(self, changes: Iterable[Change]) -> None:
        """Make the changes (creations, partitions, configs); ``CannotApply`` is skipped."""
        changes = list(changes)
        creates = [c.spec for c in changes if isinstance(c, Create)]
        if creates:
            response = await self._client.create_topics(
                [
                    NewTopic(
                        self._prefix + s.name,
                        s.partitions,
                        s.replication_factor,
                        topic_configs=s.configs(),
                    )
                    for s in creates
                ]
            )
            for topic, error_code, message in response.topic_errors:
                # Another apply made it meanwhile, from the same list; a later plan says
                # whether it matches.
                if error_code != TopicAlreadyExistsError.errno:
                    _raise_for(topic, error_code, message)
            await self._until_listed({self._prefix + s.name for s in creates})
        grow = {
            self._prefix + c.name: NewPartitions(c.wanted)
            for c in changes
            if isinstance(c, AddPartitions)
        }
        if grow:
            response = await self._client.create_partitions(grow)
            for topic, error_code, message in response.topic_errors:
                _raise_for(topic, error_code, message)
        await self._alter_configs({c.name for c in changes if isinstance(c, AlterConfig)}, changes)

    async def _until_listed(self, topics: set[str]) -> None:
        """Wait until the broker's metadata lists ``topics``. CreateTopics answers once the
        controller has them; the metadata a client (a service starting, the next command)
        reads can lag a moment behind, and then the topics would look missing."""
        deadline = time.monotonic() + LISTED_TIMEOUT
        while missing := topics - {t["topic"] for t in await self._all_topics()}:
            if time.monotonic() > deadline:
                raise TopicAdminError(
                    f"{', '.join(sorted(missing))}: created, but the broker does not list "
                    f"them after {LISTED_TIMEOUT:.0f} s"
                )
            await asyncio.sleep(0.1)

    async def _alter_configs(self, names: set[str], changes: list[Change]) -> None:
        if not names:
            return
        # The legacy AlterConfigs request replaces a topic's whole config, so each topic gets
        # every config it already overrides plus the changed ones, never only the changed one.
        current = await self.describe(sorted(names))
        resources = []
        for name in sorted(names):
            merged = dict(current[name].overrides) if name in current else {}
            merged.update(
                {c.key: c.wanted for c in changes if isinstance(c, AlterConfig) and c.name == name}
            )
            resources.append(ConfigResource(ConfigResourceType.TOPIC, self._prefix + name, merged))
        for response in await self._client.alter_configs(resources):
            for error_code, message, _type, resource in response.resources:
                _raise_for(resource, error_code, message)
