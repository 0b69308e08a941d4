"""Mail rules: which rule a mail matches, which of its parts it takes, what metadata it sets."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from tests import mail_samples
from triage_contracts.events import MAX_METADATA_ITEMS
from triage_ingest.imap import _internal_date
from triage_ingest.mailrules import (
    DEFAULT_RULE,
    MailFacts,
    MailRule,
    PartsChoice,
    PostProcess,
    choose_rule,
    matches,
    rule_metadata,
    select_parts,
)
from triage_ingest.settings import Settings
from triage_text.email.parse import parse_email

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def facts(**overrides: object) -> MailFacts:
    values: dict[str, object] = {
        "sender": "billing@supplier.example.com",
        "recipients": ("ap@example.org",),
        "subject": "Invoice 7 from Supplier",
        "attachment_names": ("invoice-7.pdf",),
        "dated": NOW - timedelta(days=2),
        "mailbox": "INBOX",
        **overrides,
    }
    return MailFacts(**values)  # type: ignore[arg-type]


def rule(**fields: object) -> MailRule:
    return MailRule.model_validate({"name": "r", **fields})


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        ({"from": "*@SUPPLIER.example.com"}, {}, {"sender": "billing@other.example.com"}),
        ({"from": "billing@*"}, {"sender": "Billing Dept <billing@x.com>"}, {"sender": None}),
        ({"to": "ap@*"}, {"recipients": ("x@y.z", "AP@example.org")}, {"recipients": ()}),
        ({"subject": "invoice *"}, {}, {"subject": "Re: Invoice 7"}),
        ({"attachment_name": "*.PDF"}, {}, {"attachment_names": ("photo.jpg",)}),
        ({"mailboxes": ["INBOX", "Billing"]}, {"mailbox": "Billing"}, {"mailbox": "Spam"}),
        ({"min_age_days": 1}, {}, {"dated": NOW - timedelta(hours=23)}),
        ({"max_age_days": 3}, {}, {"dated": NOW - timedelta(days=4)}),
        ({"max_age_days": 3}, {}, {"dated": None}),  # an age condition needs a known age
    ],
)
def test_each_condition_matches_case_insensitively_and_can_fail(
    condition: dict[str, object], matching: dict[str, object], other: dict[str, object]
) -> None:
    assert matches(rule(**condition), facts(**matching), now=NOW)
    assert not matches(rule(**condition), facts(**other), now=NOW)


def test_every_condition_of_a_rule_must_hold() -> None:
    both = rule(**{"from": "*@supplier.example.com", "subject": "*invoice*"})

    assert matches(both, facts(), now=NOW)
    assert not matches(both, facts(subject="Hello"), now=NOW)


def test_the_first_matching_rule_wins_and_the_default_takes_the_rest() -> None:
    rules = [
        rule(name="bounces", subject="undelivered*"),
        rule(name="supplier", **{"from": "*@supplier.example.com"}),
        rule(name="all-invoices", subject="*invoice*"),
    ]

    assert choose_rule(rules, facts(), now=NOW).name == "supplier"
    assert choose_rule(rules, facts(sender="x@y.z"), now=NOW).name == "all-invoices"
    assert choose_rule(rules, facts(sender="x@y.z", subject="Hi"), now=NOW) is DEFAULT_RULE


def test_facts_take_the_arrival_time_over_the_date_header() -> None:
    parsed = parse_email(mail_samples.outlook_inline_image())
    arrived = datetime(2020, 1, 1, tzinfo=UTC)

    assert MailFacts.of(parsed, mailbox="INBOX", arrived=arrived).dated == arrived
    from_header = MailFacts.of(parsed, mailbox="INBOX", arrived=None)
    assert from_header.dated == datetime(2026, 12, 4, 9, 12, tzinfo=UTC)
    assert from_header.attachment_names == ("image001.png", "invoice-1.pdf")
    assert from_header.recipients == ("ap@example.org",)


def _taken(raw: bytes, mail_rule: MailRule) -> list[tuple[str, str]]:
    return [(p.part, p.kind) for p in select_parts(parse_email(raw).parts, mail_rule)]


def test_by_default_only_the_body_and_real_attachments_are_taken() -> None:
    assert _taken(mail_samples.outlook_inline_image(), DEFAULT_RULE) == [
        ("body", "body"),
        ("2", "attachment"),
    ]
    assert _taken(mail_samples.smime_signed(), DEFAULT_RULE) == [("body", "body")]
    assert _taken(mail_samples.delivery_report(), DEFAULT_RULE) == [("body", "body")]


def test_a_rule_chooses_body_attachments_and_the_kinds_it_asks_for() -> None:
    outlook = mail_samples.outlook_inline_image()

    assert _taken(outlook, rule(parts="body")) == [("body", "body")]
    assert _taken(outlook, rule(parts="attachments")) == [("2", "attachment")]
    assert _taken(outlook, rule(include_inline=True)) == [
        ("body", "body"),
        ("1.2", "inline"),
        ("2", "attachment"),
    ]
    assert _taken(mail_samples.smime_signed(), rule(include_signatures=True))[1] == (
        "2",
        "signature",
    )
    assert _taken(mail_samples.delivery_report(), rule(include_delivery_status=True)) == [
        ("body", "body"),
        ("2", "delivery_status"),
        ("3", "delivery_status"),
    ]
    assert _taken(outlook, rule(skip=True)) == []


def test_an_attachment_name_glob_also_chooses_which_attachments_are_taken() -> None:
    taken = _taken(
        mail_samples.outlook_inline_image(), rule(attachment_name="*.png", include_inline=True)
    )

    assert taken == [("body", "body"), ("1.2", "inline")]


def test_a_rule_sets_its_metadata_queue_hint_and_name_the_default_none() -> None:
    finance = rule(name="finance", metadata={"team": "ap"}, queue_hint="invoices")

    assert rule_metadata(finance) == {
        "team": "ap",
        "mail_rule": "finance",
        "queue_hint": "invoices",
    }
    assert rule_metadata(rule(name="plain")) == {"mail_rule": "plain"}
    assert rule_metadata(DEFAULT_RULE) == {}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_ITEMS - 1)}}, "at most 18 keys"),
        ({"metadata": {"queue_hint": "x"}}, "may not set queue_hint"),
        ({"metadata": {"bad key": "x"}}, "String should match pattern"),
        ({"min_age_days": 5, "max_age_days": 1}, "could never match"),
        ({"parts": "everything"}, "'body', 'attachments' or 'both'"),
        ({"form": "typo@example.com"}, "Extra inputs are not permitted"),
    ],
)
def test_a_rule_that_cannot_work_is_refused_at_startup(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        rule(**fields)


def test_rules_come_with_their_account_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accounts = [
        {
            "name": "support",
            "host": "imap.example.com",
            "username": "u",
            "password": "p",
            "rules": [
                {
                    "name": "invoices",
                    "from": "*@supplier.example.com",
                    "parts": "attachments",
                    "post_process": "move",
                    "move_to": "Invoices",
                },
                {"name": "old", "min_age_days": 30, "skip": True, "post_process": "delete"},
            ],
        }
    ]
    monkeypatch.setenv("TRIAGE_INGEST_IMAP_ACCOUNTS", json.dumps(accounts))

    [account] = Settings().imap_accounts

    invoices, old = account.rules
    assert (invoices.from_, invoices.parts, invoices.post_process, invoices.move_to) == (
        "*@supplier.example.com",
        PartsChoice.ATTACHMENTS,
        PostProcess.MOVE,
        "Invoices",
    )
    assert (old.skip, old.post_process) == (True, PostProcess.DELETE)


def test_the_imap_arrival_time_is_read_as_an_aware_time() -> None:
    aware = datetime(2020, 1, 2, 3, 4, tzinfo=UTC)
    # imapclient hands INTERNALDATE over as naive local time.
    naive_local = aware.astimezone().replace(tzinfo=None)

    assert _internal_date(aware) == aware
    assert _internal_date(naive_local) == aware
    assert _internal_date(None) is None
    assert _internal_date(b"02-Jan-2020 03:04:00 +0000") is None
