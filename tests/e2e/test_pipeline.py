"""Documents travel the whole path: upload, classify, route or review, and the UI shows them."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time

import httpx
from sqlalchemy import create_engine, text

from scripts.pdfgen import make_pdf
from tests.e2e.conftest import REVIEWER_PASSWORD, SMTP_RECIPIENT, Pipeline
from tests.helpers import REPO_ROOT, review_sign_in
from tests.kafkatools import collect
from triage_contracts import topics

CONFIDENT_TEXT = (REPO_ROOT / "data" / "sample" / "train" / "billing").glob("*.txt")
SECRET = "Zebulon-Quartz-4417"


def _upload(pipeline: Pipeline, name: str, data: bytes, media_type: str) -> str:
    response = httpx.post(
        pipeline.urls["ingest"] + "/v1/documents",
        files={"files": (name, data, media_type)},
        headers={"X-API-Key": pipeline.api_key},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["documents"][0]["document_id"])


def _outcomes(pipeline: Pipeline, ids: set[str], timeout: float = 90) -> dict[str, str]:
    engine = create_engine(pipeline.stack.database_url)
    deadline = time.monotonic() + timeout
    found: dict[str, str] = {}
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                routed = conn.execute(
                    text(
                        "SELECT r.document_id, 'routed:' || r.queue FROM routing_decision r"
                        " JOIN outbox o USING (event_id)"
                        " WHERE o.published_at IS NOT NULL AND r.document_id = ANY(:ids)"
                    ),
                    {"ids": list(ids)},
                ).all()
                reviewed = conn.execute(
                    text(
                        "SELECT document_id, 'review:' || reason FROM review_item "
                        "WHERE document_id = ANY(:ids)"
                    ),
                    {"ids": list(ids)},
                ).all()
            found = {r[0]: r[1] for r in [*routed, *reviewed]}
            if set(found) == ids:
                return found
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise AssertionError(f"outcomes after {timeout}s: {found}")


def test_pdf_and_text_documents_reach_a_queue_or_review(pipeline: Pipeline) -> None:
    billing_text = next(iter(CONFIDENT_TEXT)).read_text() + f"\nReference {SECRET}\n"
    text_id = _upload(pipeline, "invoice.txt", billing_text.encode(), "text/plain")
    pdf_id = _upload(
        pipeline,
        "contract-question.pdf",
        make_pdf(
            "Dear legal team, please review the attached NDA and the liability clause "
            "of our supplier contract before we sign. Our counsel has questions about "
            f"termination and GDPR data processing terms. Ref {SECRET}."
        ),
        "application/pdf",
    )
    broken_id = _upload(pipeline, "scan.pdf", b"%PDF-1.7\n%%EOF\n", "application/pdf")

    outcomes = _outcomes(pipeline, {text_id, pdf_id, broken_id})
    status = httpx.get(
        f"{pipeline.urls['ingest']}/v1/documents/{text_id}",
        headers={"X-API-Key": pipeline.api_key},
        timeout=10,
    ).json()
    assert (status["status"], status["queue"]) == ("routed", "billing")
    assert status["model_version"] == pipeline.model_version
    broken = httpx.get(
        f"{pipeline.urls['ingest']}/v1/documents/{broken_id}",
        headers={"X-API-Key": pipeline.api_key},
        timeout=10,
    ).json()
    assert broken["status"] == "in_review"
    assert broken["review"]["reason"] == "extraction_failed"
    assert outcomes[text_id] == "routed:billing"
    assert outcomes[pdf_id] in {"routed:legal", "review:low_confidence"}
    assert outcomes[broken_id] == "review:extraction_failed"

    prefix = pipeline.env["TRIAGE_TOPIC_PREFIX"]
    ids = {text_id, pdf_id, broken_id}
    events = asyncio.run(
        collect(
            pipeline.stack.kafka_bootstrap,
            pattern=re.escape(prefix) + r"triage\.(documents|classified|routed\..+)\.v1",
            until=lambda ms: (
                sum(1 for m in ms if m["key"] in ids and ".classified." in m["topic"]) == 3
                and any(m["key"] == text_id and ".routed." in m["topic"] for m in ms)
            ),
        )
    )
    mine = [m for m in events if m["key"] in ids]
    # Every event that a model was involved in carries the model version, in body and headers.
    for message in mine:
        if message["value"]["schema_name"] in {"DocumentClassified", "DocumentRouted"}:
            assert message["value"]["model"]["version"] == pipeline.model_version
            assert message["headers"]["triage-model-version"] == pipeline.model_version
    # One trace id follows each document from ingest to routing.
    for doc_id in ids:
        traces = {m["value"]["trace_id"] for m in mine if m["key"] == doc_id}
        assert len(traces) == 1, traces
    routed = [m for m in mine if ".routed." in m["topic"] and m["key"] == text_id]
    assert len(routed) == 1
    assert routed[0]["topic"] == f"{prefix}{topics.routed_topic('billing')}"

    with httpx.Client(base_url=pipeline.urls["review-ui"], timeout=10) as ui:
        signed_in = review_sign_in(ui, "e2e-reviewer", REVIEWER_PASSWORD)
        assert signed_in.status_code == 200
        page = ui.get("/")
        queue = ui.get("/api/v1/review-items").json()
    assert page.status_code == 200
    assert broken_id in page.text and "extraction failed" in page.text
    assert broken_id in {item["document_id"] for item in queue["items"]}

    # No document text in any log line.
    assert SECRET not in pipeline.log_text()


MAIL_SENDER = "Quentin Maplethorpe <quentin.maplethorpe@example.org>"
MAIL_SUBJECT = "Overdue invoice Yarrow-Basilisk-2291"
MAIL_SECRET = "Tamarind-Obelisk-8830"


def test_mail_travels_to_review_without_personal_data_in_logs_or_metrics(
    pipeline: Pipeline,
) -> None:
    import smtplib
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = MAIL_SENDER
    message["To"] = SMTP_RECIPIENT
    message["Subject"] = MAIL_SUBJECT
    message["Message-ID"] = "<e2e-pii-check@example.org>"
    message.set_content(f"Hello, please call me about {MAIL_SECRET}. Any news?")
    message.add_attachment(
        make_pdf(f"statement {MAIL_SECRET} for quentin.maplethorpe@example.org"),
        maintype="application",
        subtype="pdf",
        filename="statement.pdf",
    )
    with smtplib.SMTP("127.0.0.1", pipeline.smtp_port, timeout=30) as smtp:
        smtp.send_message(message)

    engine = create_engine(pipeline.stack.database_url)
    deadline = time.monotonic() + 60
    ids: set[str] = set()
    while time.monotonic() < deadline and len(ids) < 2:
        with engine.connect() as conn:
            ids = {
                r[0]
                for r in conn.execute(
                    text("SELECT document_id FROM document WHERE source_kind = 'smtp'")
                )
            }
        time.sleep(0.3)
    engine.dispose()
    assert len(ids) == 2, ids  # the body and the attachment
    outcomes = _outcomes(pipeline, ids)
    assert set(outcomes) == ids

    # A reviewer sees the sender and subject (they need them) on the item page.
    with httpx.Client(base_url=pipeline.urls["review-ui"], timeout=10) as ui:
        review_sign_in(ui, "e2e-reviewer", REVIEWER_PASSWORD)
        items = ui.get("/api/v1/review-items").json()["items"]
        mine = [item for item in items if item["document_id"] in ids]
        assert mine, f"the vague mail body should be in review: {outcomes}"
        page = ui.get(f"/items/{mine[0]['id']}")
        assert page.status_code == 200
        assert "quentin.maplethorpe@example.org" in page.text

    # ...but no log line and no metric carries them, or the mail's text.
    logs = pipeline.log_text()
    metrics = "\n".join(
        httpx.get(url + "/metrics", timeout=10).text for url in pipeline.urls.values()
    )
    for planted in ("quentin.maplethorpe", "Maplethorpe", "Yarrow-Basilisk", MAIL_SECRET):
        assert planted not in logs, f"{planted!r} appears in a log line"
        assert planted not in metrics, f"{planted!r} appears in a metric"


def test_uploading_the_same_file_again_is_the_same_document(pipeline: Pipeline) -> None:
    data = b"Please find attached the overdue invoice 5521 for payment."
    first = _upload(pipeline, "again.txt", data, "text/plain")
    second = _upload(pipeline, "again.txt", data, "text/plain")
    assert first == second
    _outcomes(pipeline, {first})
    engine = create_engine(pipeline.stack.database_url)
    with engine.connect() as conn:
        count = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM routing_decision WHERE document_id = :d)"
                " + (SELECT count(*) FROM review_item WHERE document_id = :d)"
            ),
            {"d": first},
        ).scalar()
    engine.dispose()
    assert count == 1


def test_every_service_answers_health_and_metrics(pipeline: Pipeline) -> None:
    for name, url in pipeline.urls.items():
        assert httpx.get(url + "/healthz", timeout=5).json()["status"] == "ok", name
        ready = httpx.get(url + "/readyz", timeout=5)
        assert ready.status_code == 200, (name, ready.text)
        metrics = httpx.get(url + "/metrics", timeout=5)
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "python_info" in metrics.text
    classifier_metrics = httpx.get(pipeline.urls["classifier"] + "/metrics", timeout=5).text
    assert (
        'triage_classifier_model_info{model_role="champion",'
        f'model_version="{pipeline.model_version}"}} 1.0' in classifier_metrics
    )


def test_every_services_metrics_pass_promtool(pipeline: Pipeline) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (apt-get install prometheus)"
    for name, url in pipeline.urls.items():
        exposition = httpx.get(url + "/metrics", timeout=5).text
        checked = subprocess.run(
            [promtool, "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, (name, checked.stdout, checked.stderr)
        assert checked.stdout.strip() == "" and checked.stderr.strip() == "", (name, checked)


def test_services_stop_cleanly_on_sigterm(pipeline: Pipeline) -> None:
    # Runs last in this module: it stops the processes the other tests used.
    for name, process in pipeline.processes.items():
        process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: -SIGTERM is the clean exit.
        assert process.wait(timeout=30) in {0, -signal.SIGTERM}, name
        assert '"msg": "stopped cleanly"' in pipeline.logs[name].read_text(), name
    # Everything each process wrote, stdout and stderr, from start to stop, is JSON lines.
    for name, log in pipeline.logs.items():
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            assert isinstance(entry, dict) and "msg" in entry, f"{name} wrote: {line[:300]}"
