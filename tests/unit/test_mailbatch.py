"""The mixed mail batch the fault test and bench/mail_batch.py send (seeded, tagged, each
kind what it says as the intake's parser reads it), and the judge that tallies it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.mailbatch import (
    Sent,
    columns,
    documents_by_mail,
    mixed_batch,
    raw_dead_letters,
    tag_of,
)
from tests.outcomes import Fate
from triage_text.email.parse import parse_email


def test_the_batch_is_the_same_for_a_seed_and_another_for_another_seed() -> None:
    assert [m.raw for m in mixed_batch(5)] == [m.raw for m in mixed_batch(5)]
    assert [m.raw for m in mixed_batch(5)] != [m.raw for m in mixed_batch(6)]


def test_two_of_each_kind_and_three_sent_twice_every_one_tagged() -> None:
    batch = mixed_batch(5)
    distinct = {mail.index: mail for mail in batch}
    assert len(distinct) == 28
    assert set(Counter(mail.kind for mail in distinct.values()).values()) == {2}
    copies = [index for index, n in Counter(mail.index for mail in batch).items() if n > 1]
    assert len(copies) == 3 and len(batch) == 31
    for mail in batch:
        assert mail.raw == distinct[mail.index].raw
        assert tag_of(parse_email(mail.raw).subject) == mail.index, mail.kind
        assert tag_of(mail.raw) == mail.index


def test_a_route_changes_only_the_message_ids() -> None:
    imap, smtp = mixed_batch(5, "imap"), mixed_batch(5, "smtp")
    assert [m.index for m in imap] == [m.index for m in smtp]
    for a, b in zip(imap, smtp, strict=True):
        ours, theirs = parse_email(a.raw), parse_email(b.raw)
        assert [p.data for p in ours.parts] == [p.data for p in theirs.parts]
        if ours.message_id is not None:
            assert ours.message_id != theirs.message_id, a.kind
            assert "imap" in ours.message_id


def test_each_kind_is_what_it_says() -> None:
    kinds = {mail.kind: mail for mail in mixed_batch(5)}
    parsed = {kind: parse_email(mail.raw) for kind, mail in kinds.items()}

    def types(kind: str) -> list[str]:
        return [part.media_type for part in parsed[kind].parts if part.role == "attachment"]

    assert types("pdf as octet-stream") == ["application/pdf"]
    assert b"application/octet-stream" in kinds["pdf as octet-stream"].raw
    assert types("pdf attachment") == ["application/pdf"]
    assert types("windows-1251 + text attachment") == ["text/plain; charset=windows-1251"]
    assert "Счёт" not in kinds["windows-1251 + text attachment"].raw.decode("latin-1")
    assert "счёт №" in parsed["windows-1251 + text attachment"].parts[0].data.decode()
    assert "Żółta" in parsed["iso-8859-2 quoted-printable"].parts[0].data.decode()
    assert "請求書番号" in parsed["shift_jis base64"].parts[0].data.decode()
    assert types("outlook related html + inline image") == ["image/png"]
    assert types("spam with zip and exe") == ["application/zip", "application/x-msdownload"]
    assert "message/delivery-status" in types("delivery status report")
    assert b"multipart/report" in kinds["delivery status report"].raw
    assert len([p for p in parsed["forwarded message"].parts if p.role == "body"]) == 2
    assert parsed["malformed headers"].defects
    assert b"\r\n" not in kinds["bare LF"].raw and len(kinds["bare LF"].raw) > 1001
    assert parsed["no Message-ID"].message_id is None
    assert all(parsed[k].message_id for k in kinds if k not in {"no Message-ID"})


def _fate(outcome: str | None, *, received: int = 1, reviews: int = 0) -> Fate:
    routings = 1 if outcome == "routed" else 0
    return Fate(received, received, 1, outcome, routings, reviews)


def _record(kind: str, document_id: str, subject: str | None) -> dict[str, Any]:
    email = {"subject": subject, "part": "body"} if subject is not None else None
    blob = {"sha256": "ab" * 32, "size_bytes": 1, "media_type": "text/plain"}
    document = {"source": {"kind": kind, "name": "x"}, "email": email, "blob": blob}
    value = {"schema_name": "DocumentReceived", "document_id": document_id, "document": document}
    return {"key": document_id, "value": value}


def test_the_judge_finds_lost_and_duplicated_mails_and_documents() -> None:
    mails = {mail.index: mail for mail in mixed_batch(5)}
    one_part = next(m for m in mails.values() if m.parts == 1)
    two_parts = next(m for m in mails.values() if m.parts == 2)
    bounced = next(m for m in mails.values() if m.index not in {one_part.index, two_parts.index})
    refused = next(m for m in mails.values() if m.kind == "bare LF")
    silent = next(m for m in mails.values() if m.kind == "no Message-ID")
    sent = Sent("smtp", [one_part, one_part, two_parts, bounced, refused, silent])
    sent.refused[refused.index] = "500 Line too long"
    received = [
        _record("smtp", "doc_a", f"Hi [mb {one_part.index:02d}]"),
        _record("smtp", "doc_b", f"Hi [mb {one_part.index:02d}]"),  # the copy made a new one
        _record("smtp", "doc_c", f"Re: x [mb {two_parts.index:02d}]"),
        _record("smtp", "doc_d", f"Re: x [mb {two_parts.index:02d}]"),
        _record("imap", "doc_e", f"Re: x [mb {silent.index:02d}]"),  # another connector's
    ]
    documents = documents_by_mail(received)
    raw = bounced.raw
    dead: list[dict[str, Any]] = [
        {
            "key": None,
            "value": {
                "stage": "ingest.smtp",
                "error_class": "oversize",
                "raw_blob": {"sha256": "s1"},
            },
        },
        {
            "key": "doc_x",
            "value": {"stage": "classifier", "document_id": "doc_x", "raw_blob": None},
        },
    ]
    letters = raw_dead_letters(dead, {"s1": raw}.__getitem__)
    assert letters == {("smtp", bounced.index): ["ingest.smtp: oversize"]}
    fates = {
        "doc_a": _fate("routed"),
        "doc_b": _fate("review", reviews=1),
        "doc_c": _fate(None),  # published, never decided
        "doc_d": _fate("review", received=2, reviews=1),  # published twice
        "doc_e": _fate("routed"),
    }
    [column] = columns(
        [sent],
        documents=documents,
        raw_dead=letters,
        fates=fates,
        review_reasons={"doc_b": "low_confidence", "doc_d": "extraction_failed"},
        dead_reasons={},
    ).values()
    assert column.mails_sent == 6 and column.distinct_mails == 5
    assert column.refused == {"500": 1}
    assert column.documents == 4 and column.routed == 1
    assert column.review == {"low_confidence": 1, "extraction_failed": 1}
    assert column.dead_letters == {"ingest.smtp: oversize": 1}
    assert sorted(column.lost) == ["doc_c", f"mail [mb {silent.index:02d}]"]
    assert sorted(column.duplicated) == ["doc_d", f"mail [mb {one_part.index:02d}]"]


def test_a_document_of_no_mail_in_the_batch_is_refused_by_the_judge() -> None:
    with pytest.raises(AssertionError, match="belong to no mail"):
        documents_by_mail([_record("smtp", "doc_z", "no tag here")])
