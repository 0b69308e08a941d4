"""Email parsing: real-world-shaped messages in, one body per message plus attachments out."""

from __future__ import annotations

import base64
import io
import random
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime

import pytest

from scripts.pdfgen import make_pdf
from triage_contracts import ExtractionStatus
from triage_text.email.parse import parse_email
from triage_text.email.result import ParsedMessage, ParsedPart
from triage_text.extract import extract_text, normalise

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def raw_mail(*lines: str | bytes, body: bytes | str = b"") -> bytes:
    """Join header lines and a body the way they travel over SMTP (CRLF line ends)."""
    head = b"".join(
        (line.encode("ascii") if isinstance(line, str) else line) + b"\r\n" for line in lines
    )
    data = body.encode("ascii") if isinstance(body, str) else body
    return head + b"\r\n" + data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def b64_lines(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def base_message(subject: str = "Quarterly invoice") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Ada Lovelace <ada@example.com>"
    msg["To"] = "accounts@example.com"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2024, 3, 5, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    msg["Message-ID"] = "<invoice-117@mail.example.com>"
    return msg


def body_of(parsed: ParsedMessage) -> str:
    first = parsed.parts[0]
    assert first.part == "body"
    assert first.role == "body"
    assert first.media_type == "text/plain"
    return first.data.decode("utf-8")


def attachments(parsed: ParsedMessage) -> list[ParsedPart]:
    return [part for part in parsed.parts if part.role == "attachment"]


def make_docx(text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in (
            ("[Content_Types].xml", '<?xml version="1.0"?><Types/>'),
            ("word/document.xml", f"<w:document><w:t>{text}</w:t></w:document>"),
        ):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), content)
    return buffer.getvalue()


# --- everyday messages ----------------------------------------------------------------------


def test_pdf_attachment_round_trips_byte_for_byte() -> None:
    pdf = make_pdf("Invoice 2024-117\nAmount due: 1,250.00 EUR", title="Invoice 2024-117")
    msg = base_message()
    msg.set_content("Hello,\n\nplease find the invoice attached.\n\nAda\n")
    msg.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice-2024-117.pdf")

    parsed = parse_email(msg.as_bytes())

    assert parsed.message_id == "invoice-117@mail.example.com"
    assert parsed.subject == "Quarterly invoice"
    assert parsed.sender == "ada@example.com"
    assert parsed.date == datetime(2024, 3, 5, 8, 30, tzinfo=UTC)
    assert parsed.date is not None
    assert parsed.date.utcoffset() == timedelta(hours=1)
    assert parsed.defects == ()
    assert "please find the invoice attached" in body_of(parsed)
    assert parsed.parts[0].parent is None
    assert parsed.parts[0].defects == ()
    [pdf_part] = attachments(parsed)
    assert pdf_part.part == "2"
    assert pdf_part.parent == "body"
    assert pdf_part.filename == "invoice-2024-117.pdf"
    assert pdf_part.media_type == "application/pdf"
    assert pdf_part.data == pdf
    assert pdf_part.data.startswith(b"%PDF-")
    assert not pdf_part.inline
    assert pdf_part.defects == ()


def test_plain_is_chosen_over_html_and_the_html_alternative_is_no_attachment() -> None:
    msg = base_message()
    msg.set_content("Plain version of the notice.\n")
    msg.add_alternative("<html><body><p>HTML <b>version</b></p></body></html>", subtype="html")

    parsed = parse_email(msg.as_bytes())

    assert body_of(parsed) == "Plain version of the notice.\n"
    assert len(parsed.parts) == 1


def test_plain_wins_even_when_the_html_alternative_comes_first() -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/alternative; boundary=alt",
        body=(
            "--alt\nContent-Type: text/html\n\n<p>HTML first</p>\n"
            "--alt\nContent-Type: text/plain\n\nPlain second\n--alt--\n"
        ),
    )

    parsed = parse_email(raw)

    assert body_of(parsed).strip() == "Plain second"
    assert len(parsed.parts) == 1


def test_html_only_message_becomes_text_without_tags_scripts_or_styles() -> None:
    msg = base_message()
    msg.set_content(
        "<html><head><style>p { color: red }</style></head><body>"
        "<h1>Delivery note</h1><p>Your parcel &amp; documents ship today.</p>"
        "<script>trackVisitor('secret')</script></body></html>",
        subtype="html",
    )

    text = body_of(parse_email(msg.as_bytes()))

    assert "Delivery note" in text
    assert "Your parcel & documents ship today." in text
    assert "<" not in text
    assert "trackVisitor" not in text
    assert "color: red" not in text


def test_html_the_stdlib_parser_rejects_still_yields_text() -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: text/html; charset=utf-8",
        body="<p>Payment reminder</p><![weird marked section <script>x()</script>\n",
    )

    parsed = parse_email(raw)

    text = body_of(parsed)
    assert "Payment reminder" in text
    assert "x()" not in text
    assert "unparsable_html" in parsed.parts[0].defects


def test_inline_image_in_related_html_and_inline_pdf_with_filename() -> None:
    pdf = make_pdf("Floor plan, level 2")
    msg = base_message()
    msg.set_content("See the plan below.\n")
    msg.add_alternative(
        '<p>See the plan below.</p><img src="cid:logo@example.com">', subtype="html"
    )
    html_part = msg.get_body(preferencelist=("html",))
    assert html_part is not None
    html_part.add_related(PNG, "image", "png", cid="<logo@example.com>")
    msg.make_mixed()
    msg.add_attachment(
        pdf, maintype="application", subtype="pdf", filename="plan.pdf", disposition="inline"
    )

    parsed = parse_email(msg.as_bytes())

    assert body_of(parsed) == "See the plan below.\n"
    image, plan = attachments(parsed)
    assert (image.part, image.media_type, image.data, image.inline) == (
        "1.2.2",
        "image/png",
        PNG,
        True,
    )
    assert image.filename is None
    assert (plan.part, plan.filename, plan.media_type, plan.inline) == (
        "2",
        "plan.pdf",
        "application/pdf",
        True,
    )
    assert plan.data == pdf
    assert {part.parent for part in attachments(parsed)} == {"body"}


def test_text_attachment_with_filename_is_an_attachment_not_the_body() -> None:
    msg = base_message()
    msg.set_content("Log attached.\n")
    msg.add_attachment("line 1\nline 2\n", filename="server.log")

    parsed = parse_email(msg.as_bytes())

    assert body_of(parsed) == "Log attached.\n"
    [log] = attachments(parsed)
    assert log.filename == "server.log"
    assert log.media_type == "text/plain"
    assert log.data.replace(b"\r\n", b"\n") == b"line 1\nline 2\n"


def test_a_pdf_sent_as_octet_stream_is_typed_by_its_content_and_read() -> None:
    pdf = make_pdf("Scan 0042\nInvoice 2024-118", title="Scan 0042")
    msg = base_message()
    msg.set_content("Scanned on the office copier.\n")
    # As copiers and some webmail send it: no PDF type, and a name without an extension.
    msg.add_attachment(pdf, maintype="application", subtype="octet-stream", filename="scan0042")
    msg.add_attachment(b"\x00\x01opaque", maintype="application", subtype="octet-stream")

    scan, opaque = attachments(parse_email(msg.as_bytes()))

    assert scan.media_type == "application/pdf"
    assert scan.data == pdf
    extracted = extract_text(scan.data, scan.media_type)
    assert extracted.status is ExtractionStatus.OK
    assert "Invoice 2024-118" in extracted.text
    # Bytes that say nothing stay untyped.
    assert opaque.media_type == "application/octet-stream"


def test_a_text_attachment_keeps_its_declared_charset_for_extraction() -> None:
    invoice = "Счёт № 1234\n5 000,00\n"
    msg = base_message()
    msg.set_content("Счёт во вложении.\n")
    msg.add_attachment(
        invoice.encode("windows-1251"),
        maintype="text",
        subtype="plain",
        filename="schet.txt",
        params={"charset": "windows-1251"},
    )

    [part] = attachments(parse_email(msg.as_bytes()))

    assert part.media_type == "text/plain; charset=windows-1251"
    assert part.data.replace(b"\r\n", b"\n") == invoice.encode("windows-1251")  # bytes kept
    extracted = extract_text(part.data, part.media_type)
    assert extracted.status is ExtractionStatus.OK
    # What the model sees: the words as written (NFKC makes "№" "No"), not mojibake.
    assert extracted.text.splitlines()[0] == normalise("Счёт № 1234") == "Счёт No 1234"


def test_a_later_footer_does_not_replace_an_html_body() -> None:
    # Mailing-list software appends its footer as a separate text/plain part.
    raw = raw_mail(
        "From: list@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/html\n\n<p>Agenda for Monday</p>\n"
            "--mix\nContent-Type: text/plain\n\n--\nUnsubscribe: list@example.com\n--mix--\n"
        ),
    )

    parsed = parse_email(raw)

    assert "Agenda for Monday" in body_of(parsed)
    [footer] = attachments(parsed)
    assert footer.media_type == "text/plain"
    assert b"Unsubscribe" in footer.data


def test_office_document_and_zip_are_opaque_bytes() -> None:
    docx = make_docx("Contract draft")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(zipfile.ZipInfo("scan-001.tif", date_time=(2024, 1, 1, 0, 0, 0)), b"II*\0")
    msg = base_message()
    msg.set_content("Contract and scans attached.\n")
    msg.add_attachment(
        docx, maintype="application", subtype=DOCX_TYPE.split("/")[1], filename="contract.docx"
    )
    msg.add_attachment(
        b"\xd0\xcf\x11\xe0legacy", maintype="application", subtype="msword", filename="old.doc"
    )
    msg.add_attachment(
        archive.getvalue(), maintype="application", subtype="zip", filename="scans.zip"
    )

    parsed = parse_email(msg.as_bytes())

    found = {part.filename: part for part in attachments(parsed)}
    assert found["contract.docx"].media_type == DOCX_TYPE
    assert found["contract.docx"].data == docx
    assert found["old.doc"].media_type == "application/msword"
    assert found["old.doc"].data == b"\xd0\xcf\x11\xe0legacy"
    assert found["scans.zip"].media_type == "application/zip"
    assert found["scans.zip"].data == archive.getvalue()
    assert [part.part for part in parsed.parts] == ["body", "2", "3", "4"]


def test_delivery_report_keeps_status_and_parses_the_returned_message() -> None:
    raw = raw_mail(
        "From: MAILER-DAEMON@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/report; report-type=delivery-status; boundary=rep",
        body=(
            "--rep\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
            "--rep\nContent-Type: message/delivery-status\n\n"
            "Reporting-MTA: dns; mx.example.com\n\n"
            "Final-Recipient: rfc822; nobody@example.com\nStatus: 5.1.1\n"
            "--rep\nContent-Type: message/rfc822\n\n"
            "From: ada@example.com\nDate: Tue, 5 Mar 2024 09:00:00 +0100\nSubject: Hello\n\n"
            "Original text\n--rep--\n"
        ),
    )

    parsed = parse_email(raw)

    assert "could not be delivered" in body_of(parsed)
    status = parsed.parts[1]
    assert (status.part, status.media_type) == ("2", "message/delivery-status")
    assert b"Status: 5.1.1" in status.data
    returned = parsed.parts[2]
    assert (returned.part, returned.role, returned.parent) == ("3/body", "body", "body")
    assert returned.data.strip() == b"Original text"


# --- nested messages ------------------------------------------------------------------------


def forwarded(inner: EmailMessage, text: str, subject: str) -> EmailMessage:
    outer = base_message(subject)
    outer.set_content(text)
    outer.add_attachment(inner)
    return outer


def test_nested_message_with_its_own_attachment_gets_ids_and_parents() -> None:
    pdf = make_pdf("Purchase order 88")
    inner = base_message("Purchase order 88")
    inner.replace_header("Message-ID", "<po-88@example.com>")
    inner.set_content("Order attached.\n")
    inner.add_attachment(pdf, maintype="application", subtype="pdf", filename="po-88.pdf")
    outer = forwarded(inner, "FYI, see the forwarded order.\n", "Fwd: Purchase order 88")

    parsed = parse_email(outer.as_bytes())

    assert parsed.subject == "Fwd: Purchase order 88"
    assert parsed.message_id == "invoice-117@mail.example.com"
    layout = [(part.part, part.role, part.parent) for part in parsed.parts]
    assert layout == [
        ("body", "body", None),
        ("2/body", "body", "body"),
        ("2/2", "attachment", "2/body"),
    ]
    assert parsed.parts[1].data == b"Order attached.\n"
    assert parsed.parts[1].media_type == "text/plain"
    assert parsed.parts[2].data == pdf
    assert parsed.parts[2].filename == "po-88.pdf"


def test_forward_of_a_forward_nests_and_max_depth_keeps_the_rest_opaque() -> None:
    original = base_message("Site visit")
    original.set_content("The site visit is on Friday.\n")
    once = forwarded(original, "Forwarding once.\n", "Fwd: Site visit")
    twice = forwarded(once, "Forwarding twice.\n", "Fwd: Fwd: Site visit")
    raw = twice.as_bytes()

    deep = parse_email(raw)
    assert [(p.part, p.parent) for p in deep.parts] == [
        ("body", None),
        ("2/body", "body"),
        ("2/2/body", "2/body"),
    ]
    assert deep.parts[2].data == b"The site visit is on Friday.\n"
    assert "max_depth_exceeded" not in deep.defects

    shallow = parse_email(raw, max_depth=1)
    assert [p.part for p in shallow.parts] == ["body", "2/body", "2/2"]
    opaque = shallow.parts[2]
    assert (opaque.role, opaque.media_type, opaque.parent) == (
        "attachment",
        "message/rfc822",
        "2/body",
    )
    assert "max_depth_exceeded" in opaque.defects
    assert "max_depth_exceeded" in shallow.defects
    # The opaque bytes are still a whole message: a caller can parse it later.
    assert body_of(parse_email(opaque.data)) == "The site visit is on Friday.\n"

    flat = parse_email(raw, max_depth=0)
    assert [p.part for p in flat.parts] == ["body", "2"]
    assert flat.parts[1].media_type == "message/rfc822"


def test_base64_encoded_message_rfc822_is_decoded_before_parsing() -> None:
    inner = b"From: bob@example.com\r\nSubject: Inner\r\n\r\nInner body text\r\n"
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nOuter\n"
            "--mix\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
            f"{b64_lines(inner)}--mix--\n"
        ),
    )

    parsed = parse_email(raw)

    assert parsed.parts[1].part == "2/body"
    assert parsed.parts[1].data.strip() == b"Inner body text"


# --- charsets -------------------------------------------------------------------------------

CHARSET_TEXTS = [
    ("utf-8", "Grüße aus Köln — 東京 ✓"),
    ("iso-8859-1", "Café crème, naïve façade"),
    ("windows-1252", "\u201cSmart quotes\u201d cost 20 \u20ac \u2013 ok"),
    ("windows-1251", "Счёт на оплату № 42"),
    ("koi8-r", "Привет, отчёт готов"),
    ("iso-2022-jp", "請求書を添付します"),
    ("shift_jis", "お世話になっております"),
    ("euc-jp", "会議の議事録です"),
    ("gb2312", "发票已附上"),
    ("gbk", "朱镕基的发票"),
    ("gb18030", "发票 📎 已附上"),
    ("big5", "請查收附件發票"),
]


@pytest.mark.parametrize(("charset", "text"), CHARSET_TEXTS, ids=[c for c, _ in CHARSET_TEXTS])
@pytest.mark.parametrize("transfer", ["8bit", "base64"])
def test_body_and_encoded_subject_in_each_charset(charset: str, text: str, transfer: str) -> None:
    encoded = text.encode(charset)
    word = base64.b64encode(encoded).decode("ascii")
    payload = encoded + b"\n" if transfer == "8bit" else b64_lines(encoded).encode("ascii")
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        f"Subject: =?{charset}?B?{word}?=",
        f"Content-Type: text/plain; charset={charset}",
        f"Content-Transfer-Encoding: {transfer}",
        body=payload,
    )

    parsed = parse_email(raw)

    assert parsed.subject == text
    assert body_of(parsed).rstrip("\n") == text
    assert parsed.defects == ()
    assert parsed.parts[0].defects == ()


def test_quoted_printable_subject_and_body() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Subject: =?iso-8859-1?Q?R=E9sum=E9_f=FCr?= =?iso-8859-1?Q?_M=FCller?=",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        body="Sch=F6ne Gr=FC=DFe, a long line that was soft=\nwrapped.\n",
    )

    parsed = parse_email(raw)

    assert parsed.subject == "Résumé für Müller"
    assert body_of(parsed) == "Schöne Grüße, a long line that was softwrapped.\n"


def test_multibyte_character_split_across_encoded_words_survives() -> None:
    data = "日本語の件名".encode()
    first, second = base64.b64encode(data[:4]).decode(), base64.b64encode(data[4:]).decode()
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        f"Subject: Re: =?UTF-8?B?{first}?=",
        f" =?UTF-8?B?{second}?= (2)",
        body="x\n",
    )

    assert parse_email(raw).subject == "Re: 日本語の件名 (2)"


def test_latin1_label_on_windows_1252_text_reads_smart_quotes() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: 8bit",
        body=b"\x93Quoted\x94 \x96 50\x80\n",
    )

    assert body_of(parse_email(raw)) == "\u201cQuoted\u201d \u2013 50\u20ac\n"


def test_gb2312_label_with_gbk_characters_and_big5_with_hkscs_characters() -> None:
    gbk_text, hk_text = "朱镕基的发票", "呢個係香港嘅發票"
    for label, data, expected in (
        ("gb2312", gbk_text.encode("gbk"), gbk_text),
        ("big5", hk_text.encode("big5hkscs"), hk_text),
    ):
        raw = raw_mail(
            "From: sender@example.com",
            "Date: Tue, 5 Mar 2024 09:30:00 +0100",
            f"Subject: =?{label}?B?{base64.b64encode(data).decode()}?=",
            f"Content-Type: text/plain; charset={label}",
            "Content-Transfer-Encoding: 8bit",
            body=data,
        )
        parsed = parse_email(raw)
        assert parsed.subject == expected
        assert body_of(parsed) == expected
        assert parsed.parts[0].defects == ()


def test_unknown_charset_is_decoded_best_effort_with_a_defect() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Subject: =?x-foo?Q?Caf=C3=A9?=",
        'Content-Type: text/plain; charset="x-foo"',
        "Content-Transfer-Encoding: 8bit",
        body="Grüße, café\n".encode(),
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Grüße, café\n"
    assert "unknown_charset:x-foo" in parsed.parts[0].defects
    assert parsed.subject == "Café"
    assert "subject:unknown_charset:x-foo" in parsed.defects


def test_unknown_charset_on_windows_1252_bytes_falls_back_to_windows_1252() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: text/plain; charset=x-user-defined-42",
        body=b"Caf\xe9 \x80 5\n",
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Café € 5\n"
    assert "unknown_charset:x-user-defined-42" in parsed.parts[0].defects


def test_text_that_fits_no_charset_is_replaced_and_flagged() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        body=b"Price: 5\xff\xfe EUR\n",
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Price: 5\ufffd\ufffd EUR\n"
    assert "undecodable_text" in parsed.parts[0].defects


def test_undeclared_8bit_utf8_is_read_as_utf8() -> None:
    raw = raw_mail(
        "From: sender@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        body="Übersicht\n".encode(),
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Übersicht\n"
    assert "charset_mismatch:us-ascii" in parsed.parts[0].defects


# --- missing bodies and broken structure ----------------------------------------------------


def test_scanner_mail_with_only_an_attachment_has_an_empty_body_with_no_body() -> None:
    pdf = make_pdf("Scanned page 1")
    raw = raw_mail(
        "From: scanner@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Subject: Scan from MFP-3",
        "Content-Type: multipart/mixed; boundary=scan",
        body=(
            "--scan\nContent-Type: application/pdf\n"
            'Content-Disposition: attachment; filename="scan0001.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{b64_lines(pdf)}--scan--\n"
        ),
    )

    parsed = parse_email(raw)

    body = parsed.parts[0]
    assert (body.part, body.role, body.data) == ("body", "body", b"")
    assert "no_body" in body.defects
    assert "no_body" in parsed.defects
    [scan] = attachments(parsed)
    assert (scan.part, scan.filename, scan.data) == ("1", "scan0001.pdf", pdf)


def test_single_part_pdf_message_is_an_attachment_at_section_1() -> None:
    pdf = make_pdf("Scanned page 1")
    raw = raw_mail(
        "From: scanner@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: application/pdf; name=scan.pdf",
        "Content-Transfer-Encoding: base64",
        body=b64_lines(pdf),
    )

    parsed = parse_email(raw)

    assert [(p.part, p.role, p.parent) for p in parsed.parts] == [
        ("body", "body", None),
        ("1", "attachment", "body"),
    ]
    assert "no_body" in parsed.parts[0].defects
    assert (parsed.parts[1].filename, parsed.parts[1].data) == ("scan.pdf", pdf)


def test_headers_only_message_has_no_body() -> None:
    parsed = parse_email(b"From: ada@example.com\r\nDate: Tue, 5 Mar 2024 09:30:00 +0100\r\n")

    assert parsed.sender == "ada@example.com"
    assert parsed.parts[0].data == b""
    assert "no_body" in parsed.parts[0].defects


def test_missing_header_body_separator_keeps_the_text() -> None:
    raw = (
        raw_mail(
            "From: ada@example.com",
            "Date: Tue, 5 Mar 2024 09:30:00 +0100",
            "Subject: Minutes",
            "this line is no header and there was no blank line",
        ).replace(b"\r\n\r\n", b"\r\n")
        + b"second line of the body\r\n"
    )

    parsed = parse_email(raw)

    assert parsed.subject == "Minutes"
    assert "missing_header_body_separator" in parsed.defects
    assert body_of(parsed) == (
        "this line is no header and there was no blank line\nsecond line of the body\n"
    )


def test_broken_headers_become_defects_not_errors() -> None:
    raw = raw_mail(
        "From: Accounts Department",
        "Date: the day after tomorrow",
        "Message-ID: <first@example.com>",
        "Message-ID: <second@example.com>",
        b"Subject: B\xc3\xbcro supplies",
        body="Body\n",
    )

    parsed = parse_email(raw)

    assert parsed.sender is None
    assert parsed.date is None
    assert parsed.message_id == "first@example.com"
    assert parsed.subject == "Büro supplies"
    for defect in (
        "from_without_address",
        "invalid_date",
        "duplicate_header:message-id",
        "non_ascii_header:subject",
    ):
        assert defect in parsed.defects
    assert body_of(parsed) == "Body\n"


def test_windows_1252_raw_subject_and_odd_message_id() -> None:
    raw = raw_mail(
        "From: =?utf-8?q?J=C3=B6rg?= <joerg@example.com>",
        b"Subject: Caf\xe9 order",
        "Message-ID: no-angle-brackets@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00",
        body="Body\n",
    )

    parsed = parse_email(raw)

    assert parsed.subject == "Café order"
    assert parsed.sender == "joerg@example.com"
    assert parsed.message_id == "no-angle-brackets@example.com"
    assert "invalid_message_id" in parsed.defects
    assert parsed.date == datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
    assert "date_without_timezone" in parsed.defects


@pytest.mark.parametrize(
    ("value", "expected", "defect"),
    [
        ("Tue, 5 Mar 2024 09:30:00 +0000", datetime(2024, 3, 5, 9, 30, tzinfo=UTC), None),
        ("Tue, 5 Mar 2024 09:30:00 -0000", datetime(2024, 3, 5, 9, 30, tzinfo=UTC), None),
        ("5 Mar 24 09:30 EST", datetime(2024, 3, 5, 14, 30, tzinfo=UTC), None),
        (
            "Tue, 5 Mar 2024 09:30:00 CEST",
            datetime(2024, 3, 5, 9, 30, tzinfo=UTC),
            "date_without_timezone",
        ),
        ("Tue, 31 Feb 2024 09:30:00 +0000", None, "invalid_date"),
        ("", None, "invalid_date"),
    ],
)
def test_dates_are_timezone_aware_or_absent_with_a_defect(
    value: str, expected: datetime | None, defect: str | None
) -> None:
    parsed = parse_email(raw_mail("From: ada@example.com", f"Date: {value}", body="x\n"))

    assert parsed.date == expected
    assert parsed.date is None or parsed.date.tzinfo is not None
    if defect is None:
        assert parsed.defects == ()
    else:
        assert defect in parsed.defects


@pytest.mark.parametrize(
    ("sender", "name"),
    [
        ('"M\u00fcller, Anna" <anna@example.com>', "Müller, Anna"),
        ("=?utf-8?q?M=C3=BCller=2C_Anna?= <anna@example.com>", "Müller, Anna"),
        ("=?windows-1251?b?zuv84+A=?= <anna@example.com>", "Ольга"),
        ("Anna  Müller <anna@example.com>, Bob <bob@example.com>", "Anna Müller"),
        ("anna@example.com", None),
        ("<anna@example.com>", None),
    ],
    ids=["quoted-raw-utf8", "rfc2047", "rfc2047-cp1251", "list", "bare", "angle"],
)
def test_the_senders_display_name_is_kept_beside_the_address(sender: str, name: str | None) -> None:
    raw = raw_mail(f"From: {sender}".encode(), "Subject: Invoice", body="Body\n")

    parsed = parse_email(raw)

    assert parsed.sender == "anna@example.com"
    assert parsed.sender_name == name


def test_control_characters_in_a_display_name_become_spaces() -> None:
    parsed = parse_email(raw_mail(b'From: "Anna\x01Bank" <anna@example.com>', body="Body\n"))

    assert parsed.sender_name == "Anna Bank"
    assert "control_characters:from_name" in parsed.defects


def test_missing_from_and_date_are_reported() -> None:
    parsed = parse_email(raw_mail("Subject: anonymous", body="Body\n"))

    assert parsed.sender is None
    assert parsed.date is None
    assert {"missing_from", "missing_date"} <= set(parsed.defects)


def test_bad_base64_in_an_attachment_is_salvaged_with_defects() -> None:
    pdf = make_pdf("Contract annex")
    encoded = b64_lines(pdf)
    noisy = encoded[:40] + "!!*" + encoded[40:]
    joined = encoded.replace("\n", "")
    truncated = joined[: len(joined) - 7]  # one character past a whole group: no padding helps
    assert len(truncated) % 4 == 1
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nTwo annexes.\n"
            "--mix\nContent-Type: application/pdf; name=noisy.pdf\n"
            f"Content-Transfer-Encoding: base64\n\n{noisy}"
            "--mix\nContent-Type: application/pdf; name=cut.pdf\n"
            f"Content-Transfer-Encoding: base64\n\n{truncated}\n--mix--\n"
        ),
    )

    parsed = parse_email(raw)

    noisy_part, cut_part = attachments(parsed)
    assert noisy_part.data == pdf
    assert "invalid_base64_characters" in noisy_part.defects
    assert "invalid_base64_length" in cut_part.defects
    assert cut_part.data.startswith(b"%PDF-")
    assert pdf.startswith(cut_part.data)
    assert len(cut_part.data) >= len(pdf) - 6


def test_truncated_multipart_keeps_what_arrived() -> None:
    pdf = make_pdf("Long report " * 50)
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nReport follows.\n"
            "--mix\nContent-Type: application/pdf\n"
            'Content-Disposition: attachment; filename="report.pdf"\n'
            f"Content-Transfer-Encoding: base64\n\n{b64_lines(pdf)}"
        ),
    )
    raw = raw[: len(raw) - 300]

    parsed = parse_email(raw)

    assert body_of(parsed) == "Report follows."
    assert "close_boundary_not_found" in parsed.defects
    [report] = attachments(parsed)
    assert report.filename == "report.pdf"
    assert report.data
    assert pdf.startswith(report.data)


def test_multipart_without_its_boundary_is_read_as_text() -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=never-used",
        body="Just some text the sender's tool mislabelled.\n",
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Just some text the sender's tool mislabelled.\n"
    assert "start_boundary_not_found" in parsed.defects


def test_garbage_content_type_on_an_attachment_becomes_octet_stream() -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nSee file.\n"
            "--mix\nContent-Type: ???garbage\n"
            'Content-Disposition: attachment; filename="data.bin"\n\n'
            "payload\n--mix--\n"
        ),
    )

    [data] = attachments(parse_email(raw))

    assert data.media_type == "application/octet-stream"
    assert data.filename == "data.bin"
    assert "invalid_content_type" in data.defects


def test_absurdly_deep_multipart_nesting_does_not_raise() -> None:
    body = "".join(
        f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(3000)
    )
    raw = raw_mail(
        "From: ada@example.com",
        "Subject: deep",
        "Content-Type: multipart/mixed; boundary=b0",
        body=body,
    )

    parsed = parse_email(raw)

    assert parsed.subject == "deep"
    assert parsed.sender == "ada@example.com"
    assert any(defect.startswith("mime_parse_failed") for defect in parsed.defects)
    assert parsed.parts[0].role == "body"


# --- filenames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("disposition", "expected"),
    [
        ("attachment; filename*=UTF-8''R%C3%A9sum%C3%A9%20final.pdf", "Résumé final.pdf"),
        (
            "attachment;\n filename*0*=UTF-8''%E8%AB%8B%E6%B1%82;\n filename*1*=%E6%9B%B8.pdf",
            "請求書.pdf",
        ),
        ("attachment; filename*=iso-8859-1'de'Pr%FCfung.pdf", "Prüfung.pdf"),
        ('attachment; filename="=?UTF-8?B?w5xiZXJzaWNodC5wZGY=?="', "Übersicht.pdf"),
        ('attachment; filename="=?gb2312?B?t6LGsS5wZGY=?="', "发票.pdf"),
        ("attachment; filename==?utf-8?Q?Gr=C3=BC=C3=9Fe.pdf?=", "Grüße.pdf"),
        ('attachment; filename="../../etc/passwd"', "../../etc/passwd"),
        ("attachment; filename=Invoice March 2026.pdf", "Invoice March 2026.pdf"),
        ("attachment; filename=Invoice March 2026.pdf ; size=9", "Invoice March 2026.pdf"),
        ("attachment; filename=a=b.pdf", "a=b.pdf"),
    ],
    ids=[
        "rfc2231",
        "rfc2231-continued",
        "rfc2231-latin1",
        "rfc2047",
        "rfc2047-gb2312",
        "unquoted",
        "raw",
        "unquoted-spaces",
        "unquoted-spaces-then-parameter",
        "unquoted-equals",
    ],
)
def test_attachment_filenames_are_decoded_not_sanitised(disposition: str, expected: str) -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nFile.\n"
            f"--mix\nContent-Type: application/pdf\nContent-Disposition: {disposition}\n\n"
            "%PDF-1.4\n--mix--\n"
        ),
    )

    [part] = attachments(parse_email(raw))

    assert part.filename == expected


def test_raw_utf8_filename_and_name_parameter_fallback() -> None:
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "Content-Type: multipart/mixed; boundary=mix",
        body=(
            "--mix\nContent-Type: text/plain\n\nFiles.\n"
            "--mix\nContent-Type: application/pdf\n"
            'Content-Disposition: attachment; filename="Bühne.pdf"\n\n'
            "%PDF-1.4\n"
            '--mix\nContent-Type: image/jpeg; name="photo 1.jpg"\n\n'
            "jpeg\n"
            "--mix\nContent-Type: image/png; name=scan of page 2.png\n\n"
            "png\n--mix--\n"
        ).encode(),
    )

    parsed = parse_email(raw)

    stage, photo, scan = attachments(parsed)
    assert stage.filename == "Bühne.pdf"
    assert "non_ascii_header:content-disposition" in stage.defects
    assert photo.filename == "photo 1.jpg"
    assert not photo.inline
    assert scan.filename == "scan of page 2.png"


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/mixed; boundary=----=_Part_123_456.789",
        "multipart/mixed;\n\tboundary=----=_Part_123_456.789",
        "multipart/mixed; boundary=----=_Part_123_456.789; charset=UTF-8",
        'multipart/mixed; boundary="----=_Part_123_456.789"',
    ],
    ids=["unquoted", "unquoted-folded", "unquoted-then-parameter", "quoted"],
)
def test_a_boundary_with_equals_signs_splits_the_parts_quoted_or_not(content_type: str) -> None:
    pdf = make_pdf("Invoice 42 due in March")
    raw = raw_mail(
        "From: ada@example.com",
        "Date: Tue, 5 Mar 2024 09:30:00 +0100",
        "MIME-Version: 1.0",
        *f"Content-Type: {content_type}".split("\n"),
        body=(
            "------=_Part_123_456.789\nContent-Type: text/plain\n\nPlease pay.\n"
            "------=_Part_123_456.789\nContent-Type: application/pdf\n"
            "Content-Transfer-Encoding: base64\n"
            "Content-Disposition: attachment; filename=invoice.pdf\n\n"
            f"{b64_lines(pdf)}------=_Part_123_456.789--\n"
        ),
    )

    parsed = parse_email(raw)

    assert body_of(parsed) == "Please pay."
    [invoice] = attachments(parsed)
    assert invoice.data == pdf
    assert invoice.media_type == "application/pdf"
    assert "start_boundary_not_found" not in parsed.defects


# --- hostile input and limits ---------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes_never_raise_and_still_yield_a_body(seed: int) -> None:
    raw = random.Random(seed).randbytes(2000)

    parsed = parse_email(raw)

    assert parsed.parts[0].part == "body"
    assert parsed.parts[0].role == "body"
    parsed.parts[0].data.decode("utf-8")
    assert parsed.defects
    assert not any(defect.startswith("internal_error") for defect in parsed.defects)


def test_empty_input_never_raises() -> None:
    parsed = parse_email(b"")

    assert (parsed.message_id, parsed.subject, parsed.sender, parsed.date) == (None,) * 4
    [body] = parsed.parts
    assert (body.part, body.role, body.data) == ("body", "body", b"")
    assert "no_body" in body.defects
    assert {"missing_from", "missing_date"} <= set(parsed.defects)


@pytest.mark.parametrize("seed", range(4))
def test_mangled_real_message_never_raises(seed: int) -> None:
    msg = base_message("Fwd: =?x?")
    msg.set_content("Body with ümlauts\n")
    msg.add_alternative("<p>Body</p><![x", subtype="html")
    msg.add_attachment(make_pdf("annex"), maintype="application", subtype="pdf", filename="a.pdf")
    data = bytearray(msg.as_bytes())
    rng = random.Random(seed)
    for _ in range(40):
        position = rng.randrange(len(data))
        if rng.random() < 0.5:
            data[position : position + rng.randrange(1, 30)] = b""
        else:
            data[position:position] = rng.choice([b"\xff", b"\r\n--", b"=?", b":", b"\0", b";"])

    parsed = parse_email(bytes(data))

    assert parsed.parts[0].role == "body"
    assert not any(defect.startswith("internal_error") for defect in parsed.defects)


def test_max_parts_drops_the_rest_with_a_defect() -> None:
    msg = base_message()
    msg.set_content("Ten attachments.\n")
    for index in range(10):
        msg.add_attachment(
            f"row {index}\n".encode(), maintype="text", subtype="csv", filename=f"{index}.csv"
        )

    parsed = parse_email(msg.as_bytes(), max_parts=4)

    assert [part.part for part in parsed.parts] == ["body", "2", "3", "4"]
    assert "too_many_parts" in parsed.defects
    assert "too_many_parts" not in parse_email(msg.as_bytes()).defects


def test_part_ids_are_deterministic() -> None:
    inner = base_message("inner")
    inner.set_content("inner\n")
    inner.add_attachment(b"x", maintype="application", subtype="octet-stream", filename="x.bin")
    raw = forwarded(inner, "outer\n", "outer").as_bytes()

    assert parse_email(raw) == parse_email(raw)


def test_nonsense_limits_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_parts"):
        parse_email(b"", max_parts=0)
    with pytest.raises(ValueError, match="max_depth"):
        parse_email(b"", max_depth=-1)
