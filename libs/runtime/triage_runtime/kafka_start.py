"""Connecting a service to Kafka without stopping it when Kafka refuses or does not answer.

A service's lifespan enters ``KafkaStart.running``: it waits a few seconds for a first
attempt (so a healthy cluster is connected before the service serves, as before), then lets
the service serve either way while a task retries with capped backoff. Each distinct reason
is logged once, as one line naming the settings to check; ``/readyz`` fails, with that
reason, until the broker and what needs it (``then``: outbox relays, the lag monitor) run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports the filter without loading the Kafka clients
    from faststream.kafka import KafkaBroker

    from triage_runtime.kafka_connection import KafkaConnection

log = logging.getLogger(__name__)

FIRST_ATTEMPT_SECONDS = 10.0
"""How long a lifespan waits for the first attempt before serving without Kafka."""
RETRY_SECONDS = (1.0, 30.0)
"""The first wait between attempts, doubled after each failure up to the second."""


class BootstrapFailures(logging.Filter):
    """Drops aiokafka's line for each server it could not connect to, keeping its reason.

    aiokafka logs why (refused, a wrong login, an untrusted certificate) and then raises only
    "Unable to bootstrap"; the reason is said once, by whoever installed the filter.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last: str | None = None
        self.users = 0
        """How many ``bootstrap_failures`` blocks share this filter now."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every other record."""
        if not str(record.msg).startswith('Unable connect to "'):
            return True
        if isinstance(record.args, tuple) and record.args:
            self.last = str(record.args[-1])
        return False


@contextmanager
def bootstrap_failures() -> Iterator[BootstrapFailures]:
    """Keep aiokafka's bootstrap failures (their reason) out of the log while the block runs.

    A block inside another (a CLI sub-group, a second service in one process) shares the
    outer filter, which only the outermost block removes.
    """
    aiokafka_log = logging.getLogger("aiokafka")
    found = next((f for f in aiokafka_log.filters if isinstance(f, BootstrapFailures)), None)
    failures = found or BootstrapFailures()
    if found is None:
        aiokafka_log.addFilter(failures)
    failures.users += 1
    try:
        yield failures
    finally:
        failures.users -= 1
        if found is None:
            aiokafka_log.removeFilter(failures)


class MissingTopicsError(Exception):
    """Kafka answers, but topics the service reads are not on the cluster."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def missing_topics(names: list[str]) -> str:
    """The reason given when Kafka answers but topics the service reads do not exist."""
    return (
        f"topic(s) {', '.join(names)} do not exist on the Kafka cluster, which does not "
        "create topics on first use: run `triage topics apply` (see `triage topics plan`)"
    )


def cannot_reach(kafka: KafkaConnection, why: str | None, *, with_reason: bool = False) -> str:
    """The line for a Kafka that could not be connected to; ``why`` is aiokafka's reason.

    A refused login or an untrusted certificate says which settings to check; any other
    reason is added only ``with_reason`` (the CLI's line for a closed port is shorter).
    """
    line = f"cannot reach Kafka at {kafka.kafka_bootstrap} (TRIAGE_KAFKA_BOOTSTRAP)"
    refused = kafka.login_refused(why) if why else None
    if refused is not None:
        return f"{line}: {refused}"
    return f"{line}: {why}" if with_reason and why else line


class KafkaStart:
    """Starts a service's broker in the background, retrying until it connects."""

    def __init__(
        self,
        broker: KafkaBroker,
        kafka: KafkaConnection,
        *,
        then: Callable[[AsyncExitStack], Awaitable[None]] | None = None,
        retry_seconds: tuple[float, float] = RETRY_SECONDS,
    ) -> None:
        self._broker = broker
        self._kafka = kafka
        self._then = then
        self._retry = retry_seconds
        self._stack = AsyncExitStack()
        self._broker_started = False
        self._attempted = asyncio.Event()
        self.started = False
        """True once the broker, its subscribers and ``then`` run."""
        self.attempts = 0
        """Connection attempts so far, in this run."""
        self.reason: str | None = "connecting to Kafka"
        """Why the service is not connected (None once it is)."""

    async def ready(self) -> bool:
        """The readiness check: started, and the cluster answers now."""
        return self.started and await self._broker.ping(timeout=2.0)

    def why_not_ready(self) -> str | None:
        """The reason ``/readyz`` shows while Kafka is not connected."""
        return self.reason

    @asynccontextmanager
    async def running(
        self, *, first_attempt_seconds: float = FIRST_ATTEMPT_SECONDS
    ) -> AsyncIterator[KafkaStart]:
        """Connect in the background while the block runs; stop all of it after."""
        self._stack, self._attempted = AsyncExitStack(), asyncio.Event()
        self.started, self.attempts, self.reason = False, 0, "connecting to Kafka"
        task = asyncio.create_task(self._connect(), name="kafka-start")
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._attempted.wait(), first_attempt_seconds)
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._stack.aclose()  # what needs Kafka stops before the broker
            if self._broker_started:
                await self._broker.stop()

    async def _connect(self) -> None:
        delay, cap = self._retry
        said: set[str] = set()
        try:
            with bootstrap_failures() as failures:
                while True:
                    self.attempts += 1
                    failures.last = None
                    try:
                        await self._probe()
                        self._broker_started = True
                        await self._broker.start()
                        break
                    except Exception as exc:  # noqa: BLE001 - every failure is retried
                        await self._after_failure()
                        line = (
                            missing_topics(exc.names)
                            if isinstance(exc, MissingTopicsError)
                            else cannot_reach(
                                self._kafka,
                                failures.last or str(exc) or type(exc).__name__,
                                with_reason=True,
                            )
                        )
                    self.reason = line
                    if line not in said:
                        said.add(line)
                        log.warning(
                            "%s; retrying until it answers (not ready meanwhile)",
                            line,
                            extra={"attempts": self.attempts},
                        )
                    self._attempted.set()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, cap)
            if self._then is not None:
                try:
                    await self._then(self._stack)
                except Exception as exc:
                    # Not a connection problem: retrying would not help; stay not ready, say why.
                    self.reason = f"connected to Kafka, but what needs it did not start: {exc!r}"
                    log.exception("connected to Kafka, but what needs it did not start")
                    return
            self.reason = None
            self.started = True
            if said:
                log.info("connected to Kafka", extra={"attempts": self.attempts})
        finally:
            self._attempted.set()

    async def _probe(self) -> None:
        """Bootstrap a bare client first: a failed ``broker.start`` leaves clients unclosed.
        Then check that the topics the subscribers read exist: their consumers would wait
        the client's request timeout (40 s) and then give no topic's name."""
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(**self._kafka.aiokafka_kwargs())
        try:
            await client.bootstrap()
            wanted = {
                str(topic.name)
                for sub in self._broker.subscribers
                for topic in getattr(sub, "topics", ())  # a Kafka subscriber's topics
            }
            if wanted:
                present = (await client.fetch_all_metadata()).topics()
                if missing := sorted(wanted - present):
                    raise MissingTopicsError(missing)
        finally:
            await client.close()

    async def _after_failure(self) -> None:
        if self._broker_started:
            self._broker_started = False
            with contextlib.suppress(Exception):
                await self._broker.stop()
