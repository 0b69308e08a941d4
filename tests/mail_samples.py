"""Mails shaped as mail programs send them, with the parts they add on their own: inline images,
S/MIME and PGP signatures, delivery and read reports (for the parser's part kinds and rules)."""

from __future__ import annotations

import base64

from scripts.pdfgen import make_pdf

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
# Not a real signature (no test verifies one): DER-ish bytes where the signature would be.
P7S = bytes.fromhex("3082055406092a864886f70d010702a082054530820541020101310f300d0609")


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("ascii")


def _b64(data: bytes) -> str:
    return base64.encodebytes(data).decode("ascii")


def outlook_inline_image(tag: str = "1") -> bytes:
    """An Outlook HTML mail: a logo in the signature (inline, by Content-ID) and a PDF invoice."""
    return _crlf(
        f"""From: Billing <billing@supplier.example.com>
To: ap@example.org
Subject: Invoice {tag} from Supplier
Message-ID: <outlook-{tag}@supplier.example.com>
Date: Fri, 04 Dec 2026 09:12:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="_004_MIXED_"

--_004_MIXED_
Content-Type: multipart/related; boundary="_003_RELATED_"; type="multipart/alternative"

--_003_RELATED_
Content-Type: multipart/alternative; boundary="_000_ALT_"

--_000_ALT_
Content-Type: text/plain; charset="us-ascii"

Please find invoice {tag} attached.

--_000_ALT_
Content-Type: text/html; charset="us-ascii"

<p>Please find invoice {tag} attached.</p><img src="cid:image001.png@01DB1234.5678">

--_000_ALT_--

--_003_RELATED_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"
Content-ID: <image001.png@01DB1234.5678>
Content-Transfer-Encoding: base64

{_b64(PNG)}
--_003_RELATED_--

--_004_MIXED_
Content-Type: application/pdf; name="invoice-{tag}.pdf"
Content-Disposition: attachment; filename="invoice-{tag}.pdf"
Content-Transfer-Encoding: base64

{_b64(make_pdf(f"Invoice {tag}"))}
--_004_MIXED_--
"""
    )


def smime_signed(tag: str = "1") -> bytes:
    """An S/MIME signed mail as Outlook sends it (``application/x-pkcs7-signature``)."""
    return _crlf(
        f"""From: Carol <carol@partner.example.net>
To: support@example.org
Subject: Contract question {tag}
Message-ID: <smime-{tag}@partner.example.net>
Date: Fri, 04 Dec 2026 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/x-pkcs7-signature";
 micalg=sha-256; boundary="----=_SIGNED_"

------=_SIGNED_
Content-Type: text/plain; charset="utf-8"

Could you check clause {tag} of the contract?

------=_SIGNED_
Content-Type: application/x-pkcs7-signature; name="smime.p7s"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="smime.p7s"

{_b64(P7S)}
------=_SIGNED_--
"""
    )


def pgp_signed(tag: str = "1") -> bytes:
    """A PGP/MIME signed mail as Thunderbird sends it."""
    return _crlf(
        f"""From: Dave <dave@example.net>
To: support@example.org
Subject: Signed note {tag}
Message-ID: <pgp-{tag}@example.net>
Date: Fri, 04 Dec 2026 11:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/signed; micalg=pgp-sha256;
 protocol="application/pgp-signature"; boundary="------------PGPSIG"

--------------PGPSIG
Content-Type: text/plain; charset=UTF-8

Note {tag}: the shipment left today.

--------------PGPSIG
Content-Type: application/pgp-signature; name="OpenPGP_signature.asc"
Content-Description: OpenPGP digital signature
Content-Disposition: attachment; filename="OpenPGP_signature.asc"

-----BEGIN PGP SIGNATURE-----

wnsEABYIACMWIQR0ZXN0IHNpZ25hdHVyZSBub3QgcmVhbAUCZ1234AAKCRAAAAAA
=abcd
-----END PGP SIGNATURE-----

--------------PGPSIG--
"""
    )


def delivery_report(tag: str = "1") -> bytes:
    """A bounce (RFC 3464) as Postfix sends it: text, delivery-status and the headers back."""
    return _crlf(
        f"""From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: ap@example.org
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce-{tag}@mx.example.org>
Date: Fri, 04 Dec 2026 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
 boundary="BOUNCE.{tag}"

--BOUNCE.{tag}
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.
I'm sorry to have to inform you that your message {tag} could not
be delivered to one or more recipients.

--BOUNCE.{tag}
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Fri,  4 Dec 2026 11:59:58 +0000 (UTC)

Final-Recipient: rfc822; nobody@customer.example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <nobody@customer.example.com>: User unknown

--BOUNCE.{tag}
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: ap@example.org
To: nobody@customer.example.com
Subject: Reminder {tag}
Message-ID: <reminder-{tag}@example.org>

--BOUNCE.{tag}--
"""
    )


def read_receipt(tag: str = "1") -> bytes:
    """A read receipt (RFC 8098 message disposition notification)."""
    return _crlf(
        f"""From: Erin <erin@customer.example.com>
To: ap@example.org
Subject: Read: Reminder {tag}
Message-ID: <mdn-{tag}@customer.example.com>
Date: Fri, 04 Dec 2026 13:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification;
 boundary="MDN{tag}"

--MDN{tag}
Content-Type: text/plain; charset=us-ascii

Your message was displayed.

--MDN{tag}
Content-Type: message/disposition-notification

Reporting-UA: mail.customer.example.com; Mailer
Final-Recipient: rfc822; erin@customer.example.com
Original-Message-ID: <reminder-{tag}@example.org>
Disposition: manual-action/MDN-sent-manually; displayed

--MDN{tag}--
"""
    )
