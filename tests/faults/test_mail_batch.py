"""A mixed batch of real-looking mails through IMAP, SMTP and the drop folder, with ingest
killed (kill -9) in the middle: every mail is accounted for, nothing lost or duplicated.

The mails (``tests/mailbatch.py``) are Outlook HTML with inline images, other charsets,
PDFs (one typed octet-stream), spam with a zip and an exe, bounces, malformed headers, bare
LF, no Message-ID, three sent twice. What clients were told (SMTP answers) and the topics
read to their end are the judge; the outcome table is written to
``test-artifacts/reliability/faults-mail-batch.json``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from tests.faults.conftest import MakeRun
from tests.faults.harness import ARTIFACTS, SUMMARIES, free_port
from tests.mailbatch import (
    CONNECTORS,
    RECIPIENT,
    ImapBox,
    Mail,
    Sent,
    drop_file,
    format_table,
    imap_append,
    mixed_batch,
    send_all,
    smtp_send,
    table_rows,
    tally,
    wait_drained,
)
from tests.stack import Stack, require_imap
from triage_runtime.blobstore import LocalBlobStore
from triage_text.email.parse import parse_email

SEND_PAUSE = 0.25
"""Between two mails of one connector: the batch takes about 8 s to hand in, so the kill
lands while mails are still arriving."""
SEND_TIMEOUT = 120.0
DRAIN_TIMEOUT = 150.0
PDF = "application/pdf"


@pytest.fixture
def imap_box(stack: Stack) -> Iterator[ImapBox]:
    """A fresh mailbox on the stack's Dovecot, deleted afterwards."""
    imap = require_imap(stack)
    box = ImapBox(
        host=imap.host,
        port=imap.imaps_port,
        ca_file=imap.ca_file,
        user=imap.user,
        password=imap.password,
        mailbox=f"mail-batch-{secrets.token_hex(4)}",
    )
    with box.client() as client:
        client.create_folder(box.mailbox)
    yield box
    with box.client() as client:
        client.delete_folder(box.mailbox)


@pytest.mark.timeout(600)  # the first fault test of a session also trains the model
async def test_mixed_mail_batch_through_every_connector_with_ingest_killed(
    make_run: MakeRun, imap_box: ImapBox, tmp_path: Path
) -> None:
    """kill -9 of ingest while a mixed batch arrives by IMAP, SMTP and drop folder at once."""
    run = await make_run("mail-batch", documents=0)
    batches = {kind: mixed_batch(run.faults.seed, kind) for kind in CONNECTORS}
    batch = batches["imap"]
    drop = tmp_path / "drop"
    smtp_port = free_port()
    run.services.env.update(
        {
            "TRIAGE_INGEST_SMTP_ENABLED": "true",
            "TRIAGE_INGEST_SMTP_PORT": str(smtp_port),
            "TRIAGE_INGEST_SMTP_ALLOWED_RECIPIENTS": json.dumps([RECIPIENT]),
            "TRIAGE_INGEST_IMAP_ACCOUNTS": imap_box.account_json("mailbatch"),
            "TRIAGE_INGEST_DROP_DIR": str(drop),
            "TRIAGE_INGEST_DROP_POLL_SECONDS": "0.5",
            "TRIAGE_INGEST_DROP_SETTLE_SECONDS": "1",
        }
    )
    await run.start("ingest", "classifier", "router")
    sent = {kind: Sent(kind) for kind in CONNECTORS}
    handed: list[int] = []
    deadline = time.monotonic() + SEND_TIMEOUT
    senders: dict[str, Callable[[Mail], None]] = {
        "imap": lambda mail: imap_append(imap_box, mail, sent["imap"]),
        "smtp": lambda mail: smtp_send(smtp_port, mail, sent["smtp"], deadline=deadline),
        "folder": lambda mail: drop_file(drop / "inbox", mail, sent["folder"]),
    }
    total = sum(len(b) for b in batches.values())
    share = run.rng.uniform(0.3, 0.6)
    killed_at: dict[str, float] = {}

    async def kill_in_the_middle() -> None:
        await run.busy("ingest")
        # The sender threads append to it: polling is the simple, honest wait.
        while len(handed) < share * total:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        killed_at["handed"] = len(handed)
        run.services.kill("ingest")
        run.faults.note(run.ledger, "kill -9", service="ingest", mails_handed_in=len(handed))
        run.services.start("ingest")
        await run.services.wait_ready("ingest")
        run.faults.note(run.ledger, "restarted and ready", service="ingest")

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(CONNECTORS)) as pool:
        sending = [
            loop.run_in_executor(
                pool, partial(send_all, batches[kind], senders[kind], handed, pause=SEND_PAUSE)
            )
            for kind in CONNECTORS
        ]
        await asyncio.gather(kill_in_the_middle(), *sending)
    assert killed_at["handed"] < total, "ingest was killed after every mail was handed in"

    await asyncio.to_thread(
        lambda: wait_drained(
            database_url=run.database_url,
            bootstrap=run.bootstrap,
            prefix=run.prefix,
            box=imap_box,
            drop=drop,
            timeout=DRAIN_TIMEOUT,
        )
    )
    blobs = LocalBlobStore(run.blob_dir)
    tallies = await asyncio.to_thread(
        lambda: tally(
            list(sent.values()),
            database_url=run.database_url,
            bootstrap=run.bootstrap,
            prefix=run.prefix,
            read_blob=blobs.get,
        )
    )
    rows = table_rows(tallies)
    print(f"\n{format_table(rows)}")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    report = {
        "seed": run.faults.seed,
        "fault_steps": run.faults.steps,
        "table": rows,
        "refused": {kind: s.refused for kind, s in sent.items()},
        "lost": {kind: t.lost for kind, t in tallies.items()},
        "duplicated": {kind: t.duplicated for kind, t in tallies.items()},
        "documents_per_mail": {kind: t.documents_per_mail for kind, t in tallies.items()},
    }
    (ARTIFACTS / "faults-mail-batch.json").write_text(json.dumps(report, indent=2) + "\n")
    SUMMARIES.append(
        f"{'mail-batch':<22} "
        + "  ".join(
            f"{t.connector}: {t.mails_sent} mails, {t.documents} documents, lost {len(t.lost)},"
            f" duplicated {len(t.duplicated)}"
            for t in tallies.values()
        )
    )

    for kind, column in tallies.items():
        assert column.lost == [], f"{kind}: lost {column.lost}"
        assert column.duplicated == [], f"{kind}: duplicated {column.duplicated}"
        assert column.mails_sent == len(batch)
        assert column.distinct_mails == len({mail.index for mail in batch})
    # Only SMTP can say no to a mail (a permanent 5xx its sender was told); the mailbox and
    # the folder take what they are given.
    assert not sent["imap"].refused and not sent["folder"].refused
    assert all(answer.startswith("5") for answer in sent["smtp"].refused.values())
    # A mail makes its body and every PDF the parser finds in it, and never more documents
    # than the parser finds parts; SMTP and the drop folder (no mailbox of their own, so no
    # per-mailbox rules) make the same documents of the same mail.
    for mail in {mail.index: mail for mail in batch}.values():
        parsed = parse_email(mail.raw).parts
        pdfs = sum(1 for part in parsed if part.media_type == PDF)
        made = {
            kind: column.parts_made[mail.index]
            for kind, column in tallies.items()
            if mail.index not in sent[kind].refused and column.parts_made[mail.index]
        }
        for kind, parts in made.items():
            where = f"{kind} [mb {mail.index:02d}] ({mail.kind})"
            assert ("body", "text/plain") in parts, f"{where}: no body document: {parts}"
            assert sum(1 for _, media in parts if media == PDF) == pdfs, f"{where}: {parts}"
            assert len(parts) <= len(parsed), f"{where}: more documents than parts: {parts}"
        if "smtp" in made and "folder" in made:
            assert made["smtp"] == made["folder"], f"[mb {mail.index:02d}] differs: {made}"
