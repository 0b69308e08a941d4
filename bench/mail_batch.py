"""A mixed batch of real-looking mails through IMAP, SMTP and the drop folder, and the table
of what became of them, per connector.

Against the running local stack (Kafka, PostgreSQL, Dovecot): a scratch database and topics
of its own, a model trained on the shipped sample set (or --model), and ingest, classifier
and router started as processes. The batch (tests/mailbatch.py, the one the fault test
sends) is 28 mails, two of each kind: Outlook HTML with an inline image, alternative,
quoted-printable and base64 bodies, windows-1251, iso-8859-2 and shift_jis, a PDF, a PDF
sent as octet-stream, spam with a zip and an exe, a bounce (multipart/report), a forward,
malformed headers, bare LF, no Message-ID; three of them are sent twice. Ingest is killed
with kill -9 once the --kill-at share of the mails is handed in (0: no kill) and restarted.

Rows: mails sent, refused by the connector (SMTP answers), documents, routed, review by
reason, dead letters by reason, lost, duplicated.

    uv run python -m bench.mail_batch [--seed N] [--kill-at 0.5] [--model DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from bench._common import ROOT, free_port, imap_env, scratch_database, stack_env
from tests.faults.harness import Services, create_topics
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
from triage_cli.console import progress_bar
from triage_contracts import topics
from triage_runtime.blobstore import LocalBlobStore

PIPELINE = ("ingest", "classifier", "router")


def _train(triage: str, env: dict[str, str], out: Path) -> Path:
    trained = subprocess.run(
        [triage, "model", "train", "--data", str(ROOT / "data/sample/train"), "--out", str(out)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(trained.stdout.strip().splitlines()[-1])


async def _run(
    services: Services,
    batches: dict[str, list[Mail]],
    senders: dict[str, partial[None]],
    *,
    kill_at: float,
    pause: float,
) -> int | None:
    """Start the pipeline, hand in every batch, kill -9 ingest on the way; return how many
    mails were handed in at the kill (None: no kill)."""
    for kind in PIPELINE:
        services.start(kind)
    for kind in PIPELINE:
        await services.wait_ready(kind)
    handed: list[int] = []
    total = sum(len(batch) for batch in batches.values())
    killed: list[int] = []

    async def watch() -> None:
        with progress_bar() as bar:
            task = bar.add_task("mails handed in", total=total)
            while len(handed) < total:  # the sender threads append to it
                if kill_at and not killed and len(handed) >= kill_at * total:
                    killed.append(len(handed))
                    services.kill("ingest")
                    bar.console.print(f"kill -9 ingest after {len(handed)} of {total} mails")
                    services.start("ingest")
                    await services.wait_ready("ingest")
                    bar.console.print("ingest restarted and ready")
                bar.update(task, completed=len(handed))
                await asyncio.sleep(0.1)
            bar.update(task, completed=total)

    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=len(batches)) as pool:
        await asyncio.gather(
            watch(),
            *(
                loop.run_in_executor(
                    pool, partial(send_all, batches[kind], senders[kind], handed, pause=pause)
                )
                for kind in batches
            ),
        )
    return killed[0] if killed else None


def main() -> None:
    """Send the batch, wait until every document has an outcome, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=20, help="makes the batch (default 20)")
    parser.add_argument(
        "--kill-at",
        type=float,
        default=0.5,
        help="kill -9 ingest when this share of the mails is handed in (0: never)",
    )
    parser.add_argument("--pause", type=float, default=0.25, help="seconds between two mails")
    parser.add_argument("--model", type=Path, help="a model artifact (default: train one)")
    parser.add_argument("--json", type=Path, help="also write the table here as JSON")
    args = parser.parse_args()
    if not 0 <= args.kill_at < 1:
        parser.error("--kill-at must be in [0, 1)")

    stack = stack_env()
    imap = imap_env()
    triage = shutil.which("triage", path=str(Path(sys.executable).parent)) or "triage"
    work = Path(tempfile.mkdtemp(prefix="triage-mail-batch-"))
    box = ImapBox(
        host=imap["TRIAGE_IMAP_HOST"],
        port=int(imap["TRIAGE_IMAPS_PORT"]),
        ca_file=imap["TRIAGE_IMAP_CA_FILE"],
        user=imap["TRIAGE_IMAP_USER"],
        password=imap["TRIAGE_IMAP_PASSWORD"],
        mailbox=f"mail-batch-{secrets.token_hex(4)}",
    )
    prefix = f"bench-mail-{secrets.token_hex(3)}."
    smtp_port = free_port()
    with scratch_database(stack["TRIAGE_DATABASE_URL"]) as database_url:
        env = {
            **os.environ,
            **stack,
            "TRIAGE_DATABASE_URL": database_url,
            "TRIAGE_TOPIC_PREFIX": prefix,
            "TRIAGE_BLOB_DIR": str(work / "blobs"),
            "TRIAGE_LOG_LEVEL": "INFO",  # the kill is timed by ingest's "document accepted"
            "TRIAGE_CLASSIFIER_GROUP_ID": f"{prefix}classifier",
            "TRIAGE_ROUTER_GROUP_ID": f"{prefix}router",
            "TRIAGE_INGEST_SMTP_ENABLED": "true",
            "TRIAGE_INGEST_SMTP_PORT": str(smtp_port),
            "TRIAGE_INGEST_SMTP_ALLOWED_RECIPIENTS": json.dumps([RECIPIENT]),
            "TRIAGE_INGEST_IMAP_ACCOUNTS": box.account_json("mailbatch"),
            "TRIAGE_INGEST_DROP_DIR": str(work / "drop"),
            "TRIAGE_INGEST_DROP_POLL_SECONDS": "0.5",
            "TRIAGE_INGEST_DROP_SETTLE_SECONDS": "1",
        }
        env.pop("TRIAGE_BLOB_URL", None)
        env.pop("TRIAGE_CLASSIFIER_MODEL_ALIAS", None)
        services = Services(triage=triage, env=env, work=work)
        with box.client() as client:
            client.create_folder(box.mailbox)
        try:
            subprocess.run([triage, "db", "upgrade"], env=env, check=True, capture_output=True)
            print("training the model on data/sample/train ...", file=sys.stderr)
            model = args.model or _train(triage, env, work / "model")
            env["TRIAGE_CLASSIFIER_MODEL_PATH"] = str(model)
            labels = json.loads((model / "metadata.json").read_text())["labels"]
            asyncio.run(
                create_topics(
                    stack["TRIAGE_KAFKA_BOOTSTRAP"],
                    [
                        prefix + name
                        for name in (
                            topics.DOCUMENTS,
                            topics.DOCUMENTS_RETRY,
                            topics.CLASSIFIED,
                            topics.DEADLETTER,
                            *(topics.routed_topic(label) for label in labels),
                        )
                    ],
                )
            )
            batches = {kind: mixed_batch(args.seed, kind) for kind in CONNECTORS}
            sent = {kind: Sent(kind) for kind in CONNECTORS}
            deadline = time.monotonic() + 300
            senders = {
                "imap": partial(imap_append, box, sent=sent["imap"]),
                "smtp": partial(smtp_send, smtp_port, sent=sent["smtp"], deadline=deadline),
                "folder": partial(drop_file, work / "drop" / "inbox", sent=sent["folder"]),
            }
            started = time.monotonic()
            killed = asyncio.run(
                _run(services, batches, senders, kill_at=args.kill_at, pause=args.pause)
            )
            print("waiting for every document's outcome ...", file=sys.stderr)
            wait_drained(
                database_url=database_url,
                bootstrap=stack["TRIAGE_KAFKA_BOOTSTRAP"],
                prefix=prefix,
                box=box,
                drop=work / "drop",
                timeout=600,
            )
            tallies = tally(
                list(sent.values()),
                database_url=database_url,
                bootstrap=stack["TRIAGE_KAFKA_BOOTSTRAP"],
                prefix=prefix,
                read_blob=LocalBlobStore(work / "blobs").get,
            )
        finally:
            services.stop_all()
            with box.client() as client:
                client.delete_folder(box.mailbox)
            shutil.rmtree(work, ignore_errors=True)

    rows = table_rows(tallies)
    fault = f"ingest kill -9 after {killed} mails handed in" if killed else "no fault"
    print(f"seed {args.seed}, {fault}, {time.monotonic() - started:.0f} s")
    print(format_table(rows))
    for kind, column in tallies.items():
        for what, items in (("lost", column.lost), ("duplicated", column.duplicated)):
            if items:
                print(f"{kind} {what}: {', '.join(items)}")
        for number, answer in sent[kind].refused.items():
            print(f"{kind} refused [mb {number:02d}]: {answer}")
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "fault": fault, "rows": rows}))


if __name__ == "__main__":
    main()
