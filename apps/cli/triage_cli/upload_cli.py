"""``triage upload``: send files to the ingest service, retrying what it asks to be retried.

Each file is one request with an ``Idempotency-Key`` of its own, kept across that file's
attempts, so a retry never makes a second document. A 429 or 503 (the service is busy, a
key is over its rate, Kafka or PostgreSQL is down), a 409 (an earlier attempt under the key
is still in progress, or died holding it) and a connection that fails are tried
again after the ``Retry-After`` the service sent, or an exponential backoff without one, up
to ``--attempts`` times. Any other refusal is final for that file. The batch goes on past a
file that failed; the table at the end shows every file, every document it became (an
email's body and each attachment), and why a file failed.
"""

from __future__ import annotations

import mimetypes
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from triage_cli.console import console, progress_bar, stdout
from triage_cli.exit_codes import SKIPPED, UNREACHABLE

RETRIED_STATUSES = frozenset({409, 429, 503})
"""What the ingest service answers when a retry later can succeed (docs/ingest.md)."""

MAX_DELAY = 60.0
"""No wait between two attempts is longer, whatever Retry-After says."""

_MEDIA_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


def retry_delay(
    retry_after: str | None, attempt: int, *, base: float, now: datetime | None = None
) -> float:
    """Seconds to wait before attempt ``attempt + 1``: the server's ``Retry-After`` (seconds
    or an HTTP date) when it sent a usable one, else ``base * 2 ** (attempt - 1)``; never
    more than ``MAX_DELAY``."""
    delay = base * 2 ** (attempt - 1)
    if retry_after is not None:
        value = retry_after.strip()
        if value.isdigit():
            delay = float(value)
        else:
            try:
                when = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                pass
            else:
                if when.tzinfo is not None:
                    delay = max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return float(min(delay, MAX_DELAY))


@dataclass
class FileOutcome:
    """What became of one file: the documents it was accepted as, or why it failed."""

    path: Path
    attempts: int = 0
    documents: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    unreachable: bool = False


def _error_text(response: Any) -> str:
    """One line from a refusal: FastAPI's ``detail`` when it has one, else the body."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    text = detail if isinstance(detail, str) else (str(detail) if detail else response.text)
    return f"{response.status_code} {' '.join(text.split())[:200]}"


def send_file(
    client: Any,
    path: Path,
    media_type: str,
    *,
    attempts: int,
    backoff: float,
    sleep: Callable[[float], None] = time.sleep,
) -> FileOutcome:
    """POST one file, retrying 409, 429, 503 and failed connections up to ``attempts`` times."""
    import httpx

    outcome = FileOutcome(path)
    data = path.read_bytes()
    headers = {"Idempotency-Key": f"triage-upload-{uuid.uuid4()}"}
    for attempt in range(1, attempts + 1):
        outcome.attempts = attempt
        retry_after: str | None = None
        try:
            response = client.post(
                "/v1/documents", files={"files": (path.name, data, media_type)}, headers=headers
            )
        except httpx.TransportError as exc:
            outcome.error, outcome.unreachable = f"could not connect: {exc}", True
        else:
            outcome.unreachable = False
            if response.status_code == 202:
                outcome.documents, outcome.error = response.json()["documents"], None
                return outcome
            outcome.error = _error_text(response)
            if response.status_code not in RETRIED_STATUSES:
                return outcome
            retry_after = response.headers.get("Retry-After")
        if attempt < attempts:
            sleep(retry_delay(retry_after, attempt, base=backoff))
    outcome.error = f"{outcome.error} (after {attempts} attempt(s))"
    return outcome


def _wait_for_outcomes(
    client: Any, names: dict[str, str], wait: float
) -> dict[str, tuple[str, str]]:
    """Poll each document's status until it has an outcome or ``wait`` seconds pass."""
    deadline = time.monotonic() + wait
    outcomes: dict[str, tuple[str, str]] = {}
    with progress_bar() as progress:
        task = progress.add_task("waiting for outcomes", total=len(names))
        while time.monotonic() < deadline and len(outcomes) < len(names):
            for doc_id in names.keys() - outcomes.keys():
                found = client.get(f"/v1/documents/{doc_id}").json()
                state = found.get("status")
                if state == "routed":
                    outcomes[doc_id] = (f"queue: {found['queue']}", found["model_version"])
                elif state in {"in_review", "decided"}:
                    outcome = f"review: {found['review']['reason']}"
                    outcomes[doc_id] = (outcome, found["model_version"] or "")
                elif state == "discarded":
                    outcomes[doc_id] = ("discarded by a reviewer", found["model_version"] or "")
                elif state == "dead_lettered":
                    letter = found.get("dead_letter") or {}
                    why = letter.get("reason") or "no reason recorded"
                    outcomes[doc_id] = (f"dead-lettered: {why}", found["model_version"] or "")
            progress.update(task, completed=len(outcomes))
            if len(outcomes) < len(names):
                time.sleep(0.5)
    return outcomes


def _outcome_table(
    results: list[FileOutcome],
    names: dict[str, str],
    outcomes: dict[str, tuple[str, str]] | None,
) -> Table:
    """One row per document (an email's attachments under it), one per failed file."""
    table = Table(title="what became of each file")
    table.add_column("file", no_wrap=True)
    table.add_column("document id", no_wrap=True)
    table.add_column("outcome")
    if outcomes is not None:
        table.add_column("model version", no_wrap=True)
    for result in results:
        if result.error is not None:
            row = [result.path.name, "", f"[red]failed: {result.error}[/red]"]
            table.add_row(*row, *([""] if outcomes is not None else []))
            continue
        for doc in result.documents:
            doc_id = doc["document_id"]
            if outcomes is not None:
                outcome, version = outcomes.get(doc_id, ("[red]no outcome yet[/red]", ""))
                table.add_row(names[doc_id], doc_id, outcome, version)
            else:
                table.add_row(names[doc_id], doc_id, "accepted")
    return table


def upload(
    files: Annotated[list[Path], typer.Argument(help="Documents to send.", exists=True)],
    url: Annotated[str, typer.Option(help="The ingest service.")] = "http://127.0.0.1:8001",
    api_key: Annotated[
        str | None, typer.Option(envvar="TRIAGE_API_KEY", help="API key (or TRIAGE_API_KEY).")
    ] = None,
    media_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            help="Media type of every file, e.g. application/pdf (default: guessed from "
            "each file's name).",
        ),
    ] = None,
    attempts: Annotated[
        int,
        typer.Option(
            min=1,
            max=20,
            help="Tries per file: 409, 429, 503 and failed connections are retried after the "
            "server's Retry-After, or 1 s, 2 s, 4 s... without one (at most 60 s).",
        ),
    ] = 5,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for each document's outcome (0: don't).")
    ] = 0.0,
) -> None:
    """Upload documents to the ingest service; with --wait, show where each one went.

    A file that is refused does not stop the others: the table at the end shows each file
    and the documents it became (an email's body and attachments) or why it failed, and the
    exit status is 4 when any file failed (5 when the service could not be reached at all).
    """
    import httpx

    if media_type is not None and not _MEDIA_TYPE.match(media_type):
        raise typer.BadParameter(f"{media_type!r} is not a media type like application/pdf")
    headers = {"X-API-Key": api_key} if api_key else {}
    results: list[FileOutcome] = []
    with (
        httpx.Client(base_url=url, timeout=30.0, headers=headers) as client,
        progress_bar() as progress,
    ):
        task = progress.add_task("uploading", total=len(files))
        for path in files:
            chosen = media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            results.append(send_file(client, path, chosen, attempts=attempts, backoff=1.0))
            progress.advance(task)

    names: dict[str, str] = {}
    for result in results:
        for i, doc in enumerate(result.documents):
            shown = doc.get("filename") or result.path.name
            names[doc["document_id"]] = result.path.name if i == 0 else f"  └ {shown}"
    outcomes: dict[str, tuple[str, str]] = {}
    if wait > 0 and names:
        with httpx.Client(base_url=url, timeout=10.0, headers=headers) as client:
            outcomes = _wait_for_outcomes(client, names, wait)

    stdout.print(_outcome_table(results, names, outcomes if wait > 0 else None))
    failed = [r for r in results if r.error is not None]
    console.print(
        f"uploaded {len(results) - len(failed)} of {len(results)} file(s) as "
        f"{len(names)} document(s); {len(failed)} failed",
        highlight=False,
    )
    if failed and all(r.unreachable for r in failed) and len(failed) == len(results):
        console.print(f"[red]{url} could not be reached: exit status {UNREACHABLE}[/red]")
        raise typer.Exit(UNREACHABLE)
    if failed:
        console.print(f"[yellow]{len(failed)} file(s) failed: exit status {SKIPPED}[/yellow]")
        raise typer.Exit(SKIPPED)
    if wait > 0 and len(outcomes) != len(names):
        raise typer.Exit(1)
