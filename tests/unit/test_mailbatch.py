"""The mixed mail batch the fault test and bench/mail_batch.py send: seeded, tagged, and each
kind of mail what it says it is (as the intake's own parser reads it)."""

from __future__ import annotations

from collections import Counter

from tests.mailbatch import mixed_batch, tag_of
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
