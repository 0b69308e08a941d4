"""``triage dlq``: inspect the dead-letter topic and re-drive messages after a fix."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from triage_cli.console import console, stdout
from triage_contracts.headers import RETRY_ONLY

if TYPE_CHECKING:
    from triage_runtime.kafka_connection import KafkaConnection

READ_TIMEOUT_SECONDS = 30.0
"""How long reading the topic to its end may take before the CLI gives up."""

dlq_app = typer.Typer(help="Inspect and re-drive dead letters.", no_args_is_help=True)


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic."""

    partition: int
    offset: int
    value: dict[str, Any]

    @property
    def ref(self) -> str:
        """How commands name it: PARTITION:OFFSET."""
        return f"{self.partition}:{self.offset}"


def _settings() -> Any:
    from triage_runtime.settings import CommonSettings

    return CommonSettings()


async def read_letters(kafka: KafkaConnection, topic: str) -> list[Letter]:
    """Every record on the dead-letter topic, from the beginning to the current end."""
    from aiokafka import AIOKafkaConsumer

    probe = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    try:
        await probe.start()
        exists = topic in await probe.topics()
    finally:
        await probe.stop()
    if not exists:
        return []
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.aiokafka_kwargs(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT_SECONDS
        # Partitions are assigned shortly after start; polling is the consumer's own API here.
        while not consumer.assignment() and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assigned = list(consumer.assignment())
        ends = await consumer.end_offsets(assigned)
        letters: list[Letter] = []
        remaining = {tp for tp in assigned if ends[tp] > 0}
        while remaining and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    letters.append(
                        Letter(record.partition, record.offset, json.loads(record.value or b"{}"))
                    )
                    if record.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
        return sorted(letters, key=lambda x: (x.partition, x.offset))
    finally:
        await consumer.stop()


def _letters() -> list[Letter]:
    from triage_contracts import topics

    settings = _settings()
    return asyncio.run(read_letters(settings, settings.topic(topics.DEADLETTER)))


@dlq_app.command("list")
def dlq_list(
    error_class: Annotated[str | None, typer.Option(help="Only this error class.")] = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest last.")] = 50,
) -> None:
    """List dead letters: where they came from (a topic, or a connector and its mailbox),
    the error class, the reason and the input's file name."""
    letters = [
        x for x in _letters() if error_class is None or x.value.get("error_class") == error_class
    ]
    shown = letters[-limit:]
    # A connector's letters name no document, a consumer's no input: no empty columns.
    documents = any(x.value.get("document_id") for x in shown)
    inputs = any(not x.value.get("source_topic") for x in shown)
    table = Table()
    # Names are folded, never cut short; the reason (in full in `dlq show`) gives way first.
    for name in ("ref", "when"):
        table.add_column(name, no_wrap=True)
    table.add_column("stage", overflow="fold")
    table.add_column("error class", overflow="fold")
    table.add_column("reason", ratio=1, min_width=12)
    if documents:
        table.add_column("document", overflow="fold")
    table.add_column("from", overflow="fold")
    if inputs:
        table.add_column("input", overflow="fold")
    for letter in shown:
        value = letter.value
        row = [
            letter.ref,
            str(value.get("occurred_at", ""))[:16].replace("T", " "),
            str(value.get("stage", "")),
            str(value.get("error_class", "")),
            str(value.get("reason", ""))[:60],
        ]
        if documents:
            row.append(str(value.get("document_id") or ""))
        row.append(_origin(value))
        if inputs:
            row.append(_input(value))
        table.add_row(*row)
    stdout.print(table)
    console.print(f"{len(letters)} dead letter(s)")


def _origin(value: dict[str, Any]) -> str:
    """Where a letter came from: a Kafka record, or a connector (and its mailbox)."""
    if value.get("source_topic"):
        return f"{value['source_topic']}[{value['source_partition']}]@{value['source_offset']}"
    source = value.get("source") or {}
    origin = f"{source.get('kind', '?')}:{source.get('name', '?')}"
    mailbox = value.get("mailbox")
    return f"{origin} ({mailbox})" if mailbox else origin


def _input(value: dict[str, Any]) -> str:
    """What a connector's letter kept: the input's file name, or its raw blob's hash."""
    if value.get("source_topic"):
        return ""
    if value.get("raw_name"):
        return str(value["raw_name"])
    return f"raw blob {str((value.get('raw_blob') or {}).get('sha256', ''))[:12]}"


def _find(ref: str) -> Letter:
    for letter in _letters():
        if letter.ref == ref:
            return letter
    console.print(f"[red]no dead letter {ref} (use PARTITION:OFFSET from `triage dlq list`)[/red]")
    raise typer.Exit(1)


@dlq_app.command("show")
def dlq_show(ref: Annotated[str, typer.Argument(help="PARTITION:OFFSET from `dlq list`.")]) -> None:
    """Print one dead letter in full, with its original message decoded when it is text."""
    letter = _find(ref)
    value = dict(letter.value)
    original = value.get("original_value_b64")
    if original:
        raw = base64.b64decode(original)
        try:
            value["original_value"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            value["original_value"] = f"<{len(raw)} bytes, not UTF-8>"
    stdout.print_json(json.dumps(value))


@dlq_app.command("redrive")
def dlq_redrive(
    refs: Annotated[
        list[str] | None, typer.Argument(help="PARTITION:OFFSET of each letter.")
    ] = None,
    error_class: Annotated[
        str | None, typer.Option(help="Re-drive every letter of this error class.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only say what would be re-driven.")] = False,
) -> None:
    """Publish dead-lettered messages again to the topic they came from, after a fix.

    Consumers are idempotent per document, so re-driving a message that was already handled
    changes nothing. Connector inputs (a raw blob, not a Kafka record) are not re-driven here:
    send the kept raw file in again through its connector.
    """
    if not refs and not error_class:
        console.print("[red]name letters (PARTITION:OFFSET) or --error-class[/red]")
        raise typer.Exit(2)
    letters = [
        x
        for x in _letters()
        if (refs and x.ref in refs) or (error_class and x.value.get("error_class") == error_class)
    ]
    kafka = [
        x for x in letters if x.value.get("source_topic") and x.value.get("original_value_b64")
    ]
    for letter in letters:
        if letter not in kafka:
            console.print(f"{letter.ref}: from a connector; re-ingest its raw blob instead")
    if dry_run or not kafka:
        for letter in kafka:
            console.print(f"{letter.ref}: would re-drive to {letter.value['source_topic']}")
        return
    asyncio.run(_republish(kafka))
    stdout.print(f"re-drove {len(kafka)} message(s)")


async def _republish(letters: list[Letter]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **_settings().aiokafka_kwargs(), acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for letter in letters:
            value = letter.value
            key = value.get("original_key")
            headers = [
                (k, str(v).encode())
                for k, v in (value.get("original_headers") or {}).items()
                if k not in RETRY_ONLY  # a re-driven message starts its retries afresh
            ]
            headers.append(("triage-redriven-from", f"deadletter:{letter.ref}".encode()))
            await producer.send_and_wait(
                value["source_topic"],
                base64.b64decode(value["original_value_b64"]),
                key=key.encode() if key else None,
                headers=headers,
            )
            console.print(f"{letter.ref}: re-driven to {value['source_topic']}")
    finally:
        await producer.stop()
