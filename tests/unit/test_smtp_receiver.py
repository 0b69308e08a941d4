"""The SMTP receiver's pure pieces: refusal outcomes, bare-LF dot-stuffing, mail metadata."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from triage_ingest.settings import Settings
from triage_ingest.smtp import mail_metadata, refusal_outcome, unstuff_bare_lf_lines


def test_refusals_are_counted_by_what_they_refuse() -> None:
    assert refusal_outcome("250 OK") is None
    assert refusal_outcome("354 End data with <CR><LF>.<CR><LF>") is None
    assert refusal_outcome("550 5.1.1 Recipient not accepted here") == "recipient_refused"
    assert refusal_outcome("552 Error: Too much mail data") == "too_large"
    assert refusal_outcome("451 4.3.0 Temporary failure") == "deferred"
    assert refusal_outcome("421 closing") == "deferred"
    assert refusal_outcome("503 Error: need RCPT command") == "protocol_error"
    assert refusal_outcome("535 5.7.8 Authentication credentials invalid") == "auth_failed"
    assert refusal_outcome("554 Command refused due to lack of security") == "refused"


def test_dots_stuffed_after_a_bare_lf_are_taken_off_and_only_those() -> None:
    assert unstuff_bare_lf_lines(b"a\n..b\r\n.c\n.\n") == b"a\n.b\r\n.c\n\n"


def test_the_top_most_authentication_results_is_kept_or_the_one_of_our_server() -> None:
    raw = (
        b"Authentication-Results: relay.example.net; spf=fail\n"
        b"Authentication-Results: mx.example.org;\n  dkim=pass\n"
        b"Subject: x\n\nbody\n"
    )
    assert mail_metadata(["a@example.org"], raw) == {
        "envelope_to": "a@example.org",
        "authentication_results": "relay.example.net; spf=fail",
    }
    ours = mail_metadata(["a@example.org"], raw, authserv_id="MX.example.org")
    assert ours["authentication_results"] == "mx.example.org; dkim=pass"
    assert "authentication_results" not in mail_metadata([], raw, authserv_id="other.example")


def test_many_recipients_fit_the_metadata_value_limit() -> None:
    recipients = [f"queue-{i}@queues.example.org" for i in range(40)]
    value = mail_metadata(recipients, b"Subject: x\n\nx")["envelope_to"]
    assert len(value) == 500 and value.endswith("…")


def test_auth_needs_tls_unless_plaintext_is_allowed() -> None:
    auth = {"smtp_auth_username": "relay", "smtp_auth_password": SecretStr("pw")}
    with pytest.raises(ValidationError, match="password in clear"):
        Settings(**auth)  # type: ignore[arg-type]
    assert Settings(**auth, smtp_auth_allow_plaintext=True).smtp_auth_username == "relay"  # type: ignore[arg-type]


@pytest.mark.parametrize("retired", ["max_upload_bytes", "smtp_max_message_bytes"])
def test_a_retired_size_setting_stops_the_service_with_its_new_name(
    retired: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"TRIAGE_INGEST_{retired.upper()}", "1000")
    with pytest.raises(ValidationError, match="replaced by TRIAGE_INGEST_MAX_DOCUMENT_BYTES"):
        Settings()
