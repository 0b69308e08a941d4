"""The parser tells real attachments from the parts mail programs add on their own."""

from __future__ import annotations

from email.message import EmailMessage

from tests import mail_samples
from tests.mail_samples import P7S, PNG
from triage_text.email.parse import parse_email
from triage_text.email.result import ParsedMessage


def kinds(parsed: ParsedMessage) -> dict[str, tuple[str, str, str | None]]:
    """Each part's path: its kind, media type and file name."""
    return {p.part: (p.kind, p.media_type, p.filename) for p in parsed.parts}


def test_an_outlook_signature_logo_is_inline_and_the_invoice_an_attachment() -> None:
    parsed = parse_email(mail_samples.outlook_inline_image("7"))

    assert kinds(parsed) == {
        "body": ("body", "text/plain", None),
        "1.2": ("inline", "image/png", "image001.png"),
        "2": ("attachment", "application/pdf", "invoice-7.pdf"),
    }


def test_images_shown_inline_are_inline_whether_by_disposition_or_content_id() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("See the photos.")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="a.png", disposition="inline")
    msg.add_attachment(PNG, maintype="image", subtype="png", cid="<b@example.com>")
    *_, referenced = msg.iter_attachments()
    del referenced["Content-Disposition"]  # as some mailers send images the HTML refers to
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="c.png")
    msg.add_attachment(
        b"%PDF-1.4\n", maintype="application", subtype="pdf", filename="d.pdf", disposition="inline"
    )

    parsed = parse_email(msg.as_bytes())

    assert [(p.filename, p.kind) for p in parsed.parts[1:]] == [
        ("a.png", "inline"),  # image/* inline
        (None, "inline"),  # referenced by Content-ID, no disposition
        ("c.png", "attachment"),  # attached
        # Apple Mail sends a PDF "inline" without a Content-ID: still a real attachment.
        ("d.pdf", "attachment"),
    ]


def test_smime_and_pgp_signatures_are_signatures() -> None:
    smime = parse_email(mail_samples.smime_signed())
    pgp = parse_email(mail_samples.pgp_signed())

    assert kinds(smime)["2"] == ("signature", "application/x-pkcs7-signature", "smime.p7s")
    assert kinds(pgp)["2"] == ("signature", "application/pgp-signature", "OpenPGP_signature.asc")
    assert smime.parts[0].data == b"Could you check clause 1 of the contract?\n"


def test_an_smime_p7s_sent_untyped_is_still_a_signature() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("Signed.")
    msg.add_attachment(P7S, maintype="application", subtype="octet-stream", filename="SMIME.P7S")

    parsed = parse_email(msg.as_bytes())

    assert parsed.parts[1].kind == "signature"


def test_delivery_and_read_reports_carry_their_report_parts_as_delivery_status() -> None:
    bounce = parse_email(mail_samples.delivery_report("3"))
    receipt = parse_email(mail_samples.read_receipt("3"))

    assert kinds(bounce) == {
        "body": ("body", "text/plain", None),
        "2": ("delivery_status", "message/delivery-status", None),
        "3": ("delivery_status", "text/rfc822-headers", None),
    }
    assert b"could not" in bounce.parts[0].data
    assert kinds(receipt)["2"] == ("delivery_status", "message/disposition-notification", None)


def test_recipients_are_the_to_and_cc_addresses() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["To"] = "AP Team <AP@Example.org>, b@example.org"
    msg["Cc"] = "c@example.org, AP@example.org"
    msg.set_content("x")

    assert parse_email(msg.as_bytes()).recipients == (
        "ap@example.org",
        "b@example.org",
        "c@example.org",
    )
