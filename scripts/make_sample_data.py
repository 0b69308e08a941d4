#!/usr/bin/env python3
"""Generate Triage's deterministic, SYNTHETIC sample data set (stdlib only).

Everything written here is invented: company names, people, amounts, invoice
numbers and e-mail addresses (only example.com / example.org) are filled into
hand-written templates by a seeded random generator.  The same ``--seed``
always produces the same bytes, so the committed data can be checked for
freshness in CI with ``--check``.

Layout of the output directory (default ``data/sample`` in the repository)::

    train/<label>/<nnnn>.txt    training set, TRAIN_PER_LABEL per label
    golden/<label>/<nnnn>.txt   held-out set, other seed stream and templates
    inbox/                      a dozen demo uploads (.txt and .pdf)
    README.md                   what all of this is and how to regenerate it
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
if not __package__:
    # Run as ``python scripts/make_sample_data.py``: make ``scripts`` importable.
    sys.path.insert(0, str(REPO_ROOT))

from scripts.pdfgen import make_image_pdf, make_pdf  # noqa: E402 - needs the sys.path fix above

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

LABELS: tuple[str, ...] = ("billing", "technical", "legal", "other")
TRAIN_PER_LABEL = 150
GOLDEN_PER_LABEL = 40
AMBIGUOUS_RATE = 0.08
DEFAULT_SEED = 7
DEFAULT_OUT = REPO_ROOT / "data" / "sample"
SCRIPT_NAME = "scripts/make_sample_data.py"

VAGUE_WEIGHT = 2.5
MAILING_FORMATS: tuple[str, ...] = ("email", "plain")
CROSSOVER_WEIGHT = 2.0

Split = Literal["train", "golden"]
Use = Literal["both", "train", "golden"]

# ---------------------------------------------------------------------------
# Vocabularies.  All names are invented combinations; no real person is meant.
# ---------------------------------------------------------------------------

FIRST_NAMES: tuple[str, ...] = (
    "Alex",
    "Amira",
    "Ben",
    "Bianca",
    "Carlos",
    "Chloe",
    "Daniel",
    "Dana",
    "Elif",
    "Emil",
    "Fatima",
    "Felix",
    "Grace",
    "Gustav",
    "Hana",
    "Henrik",
    "Ines",
    "Ivan",
    "Jade",
    "Jonas",
    "Kai",
    "Keiko",
    "Lars",
    "Leila",
    "Marco",
    "Maya",
    "Nadia",
    "Nico",
    "Olga",
    "Omar",
    "Paula",
    "Pedro",
    "Quinn",
    "Rosa",
    "Ravi",
    "Sofia",
    "Sven",
    "Tariq",
    "Tessa",
    "Uma",
    "Victor",
    "Vera",
    "Wendy",
    "Yusuf",
    "Zoe",
    "Lena",
    "Mateo",
    "Priya",
    "Tom",
    "Anouk",
)
LAST_NAMES: tuple[str, ...] = (
    "Abbott",
    "Brandt",
    "Castillo",
    "Delacroix",
    "Eriksen",
    "Fontaine",
    "Gallagher",
    "Haddad",
    "Ivanova",
    "Jansen",
    "Kowalczyk",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okafor",
    "Petrova",
    "Quintero",
    "Rasmussen",
    "Schreiber",
    "Tanaka",
    "Umarov",
    "Varga",
    "Whitfield",
    "Xu",
    "Yilmaz",
    "Zielinski",
    "Marsh",
    "Holloway",
    "Pereira",
    "Lindgren",
    "Achterberg",
    "Bellamy",
)
COMPANY_STEMS: tuple[str, ...] = (
    "Acme",
    "Blue Harbor",
    "Northfield",
    "Copperleaf",
    "Silverline",
    "Granite Peak",
    "Redwood",
    "Lakeside",
    "Ironbridge",
    "Maple Row",
    "Sunvale",
    "Oakmont",
    "Harborview",
    "Kestrel",
    "Brightwater",
    "Fernhill",
    "Stonegate",
    "Wrenfield",
    "Larkspur",
    "Tidewell",
    "Amberly",
    "Crestline",
    "Foxglove",
    "Hollowbrook",
    "Juniper",
    "Quarry Lane",
    "Riverton",
    "Pinecrest",
)
COMPANY_KINDS: tuple[str, ...] = (
    "Logistics",
    "Software",
    "GmbH",
    "Ltd",
    "Inc.",
    "Foods",
    "Consulting",
    "Manufacturing",
    "Retail",
    "Systems",
    "Health",
    "Media",
    "Analytics",
    "Supplies",
    "Partners",
    "B.V.",
)
OUR_COMPANIES: tuple[str, ...] = (
    "Triage Demo Corp",
    "Lumen Office Services",
    "Northwind Example Ltd",
    "Example Holdings",
)
PRODUCTS: tuple[str, ...] = (
    "FlowDesk",
    "LedgerLite",
    "DataHarbor",
    "ShipTrack",
    "PayBridge",
    "InsightHub",
    "CloudVault",
    "FormPilot",
    "TeamBoard",
    "StockWise",
    "MailRelay",
    "QuickQuote",
)
PLANS: tuple[str, ...] = ("Starter", "Business", "Professional", "Enterprise", "Team")
FEATURES: tuple[str, ...] = (
    "bulk export",
    "single sign-on",
    "audit log",
    "webhooks",
    "custom fields",
    "CSV import",
    "role-based access",
    "scheduled reports",
    "two-factor authentication",
    "REST API",
)
CITIES: tuple[tuple[str, str], ...] = (
    ("Rotterdam", "Netherlands"),
    ("Leeds", "United Kingdom"),
    ("Lyon", "France"),
    ("Graz", "Austria"),
    ("Porto", "Portugal"),
    ("Aarhus", "Denmark"),
    ("Bilbao", "Spain"),
    ("Hamburg", "Germany"),
    ("Cork", "Ireland"),
    ("Tampere", "Finland"),
    ("Denver", "USA"),
    ("Toronto", "Canada"),
)
STREETS: tuple[str, ...] = (
    "Harbour Road",
    "Mill Lane",
    "Station Street",
    "Canal Side",
    "Market Square",
    "Industrieweg",
    "Rue des Lilas",
    "Parkstrasse",
    "King's Row",
    "Elm Avenue",
)
JOB_TITLES: tuple[str, ...] = (
    "Accounts Payable Specialist",
    "Finance Manager",
    "IT Administrator",
    "Office Manager",
    "Operations Lead",
    "Head of Procurement",
    "Customer Success Manager",
    "Legal Counsel",
    "Data Protection Officer",
    "Software Engineer",
    "Project Coordinator",
    "CFO",
    "CTO",
    "HR Generalist",
    "Marketing Manager",
    "Paralegal",
    "Support Engineer",
    "Team Assistant",
)
LAW_FIRMS: tuple[str, ...] = (
    "Hartley & Voss LLP",
    "Brennan Ostrowski Rechtsanwälte",
    "Meridian Legal",
    "Calloway Fitch Solicitors",
    "Delmont & Partners",
    "Vantier Avocats",
)
COURTS: tuple[str, ...] = (
    "District Court of Example County",
    "Regional Court of Hamburg (example)",
    "High Court, Business and Property Courts (example)",
    "Superior Court of Example State",
)
PRIVACY_LAWS: tuple[str, ...] = ("GDPR", "UK GDPR", "CCPA", "the Data Protection Act")
SERVICES: tuple[str, ...] = (
    "authentication service",
    "reporting dashboard",
    "sync worker",
    "payment gateway",
    "file upload service",
    "search index",
    "notification service",
    "public API",
)
ENDPOINTS: tuple[str, ...] = (
    "/api/v2/orders",
    "/api/v1/invoices/export",
    "/oauth/token",
    "/api/v2/customers/search",
    "/api/v1/webhooks",
    "/api/v2/shipments/:id/labels",
    "/api/v1/reports/run",
)
HTTP_ERRORS: tuple[str, ...] = (
    "500 Internal Server Error",
    "502 Bad Gateway",
    "503 Service Unavailable",
    "504 Gateway Timeout",
    "401 Unauthorized",
    "403 Forbidden",
    "429 Too Many Requests",
)
BROWSERS: tuple[str, ...] = ("Chrome 121", "Firefox 122", "Safari 17", "Edge 120")
SYSTEMS: tuple[str, ...] = ("Windows 11", "macOS 14", "Ubuntu 22.04", "iOS 17", "Android 14")
EVENTS: tuple[str, ...] = (
    "summer barbecue",
    "quarterly all-hands",
    "product roadshow",
    "team offsite",
    "customer day",
    "winter party",
    "leadership breakfast",
    "open house",
)
DEPARTMENTS: tuple[str, ...] = (
    "Finance",
    "Operations",
    "Customer Support",
    "Engineering",
    "Sales",
    "People & Culture",
)
CURRENCIES: tuple[tuple[str, str], ...] = (
    ("€", ""),
    ("$", ""),
    ("£", ""),
    ("EUR ", ""),
    ("", " USD"),
)
MONTHS: tuple[str, ...] = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WEEKDAYS: tuple[str, ...] = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
BASE_DATE = dt.date(2024, 1, 1)

# ---------------------------------------------------------------------------
# Scenario templates.  ``{slot}`` placeholders are filled per document.  In
# every sentence list, each fourth entry (index % 4 == 3) is reserved for the
# golden set, and scenarios marked ``use="train"`` / ``use="golden"`` appear in
# one set only, so the golden set contains phrasings the training set lacks.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One kind of document within a label: subjects plus sentence pools."""

    label: str
    name: str
    subjects: tuple[str, ...]
    openers: tuple[str, ...]
    details: tuple[str, ...]
    asks: tuple[str, ...]
    blocks: tuple[str, ...] = ()
    use: Use = "both"
    weight: float = 1.0
    formats: tuple[str, ...] = ()


SCENARIOS: tuple[Scenario, ...] = (
    # ----------------------------------------------------------------- billing
    Scenario(
        label="billing",
        name="invoice",
        subjects=(
            "Invoice {invoice_no} for {month}",
            "Your {product} invoice {invoice_no}",
            "New invoice from {company}",
            "Invoice {invoice_no} - {amount} due {due_date}",
            "Monthly statement {month} {year}",
            "Billing documents for order {order_no}",
        ),
        openers=(
            "Please find attached invoice {invoice_no} for the services delivered in {month}.",
            "Attached is our invoice {invoice_no} covering the {product} {plan} subscription.",
            "We have issued invoice {invoice_no} for {amount} in respect of order {order_no}.",
            "Here is the invoice for last month's deliveries, reference {invoice_no}.",
            "This is your monthly statement for account {customer_id}.",
            "As agreed, I am sending over the invoice for the consulting work completed on {date}.",
            "Our accounts team has prepared invoice {invoice_no} for the licence renewal.",
            "I'm forwarding the corrected invoice {invoice_no} with the new billing address.",
        ),
        details=(
            "The total amount due is {amount} including VAT.",
            "Payment terms are {days} days net from the invoice date.",
            "The invoice was raised against purchase order {po_no}.",
            "Please transfer the amount to the bank account shown on the invoice (IBAN {iban}).",
            "The charge covers {users} user licences at the {plan} rate.",
            "A PDF copy is also available in the billing section of your customer portal.",
            "Line items include the annual support fee and two additional seats.",
            "Please quote the invoice number as the payment reference.",
            "The due date is {due_date}.",
            "Our VAT number is {vat_id}.",
            "We have applied the agreed {percent} volume discount to this invoice.",
            "The previous balance of {amount_small} has been carried forward.",
            "Shipping and handling are invoiced separately this time.",
        ),
        asks=(
            "Could you confirm receipt and let us know when payment is scheduled?",
            "Please forward this to your accounts payable team.",
            "Let me know if you need the invoice addressed to a different entity.",
            "Kindly arrange payment by {due_date}.",
            "If anything on the invoice looks wrong, please reply before the payment run.",
        ),
        blocks=("invoice_table",),
    ),
    Scenario(
        label="billing",
        name="reminder",
        subjects=(
            "Payment reminder: invoice {invoice_no}",
            "Overdue balance on account {customer_id}",
            "Second reminder - {amount} outstanding",
            "Final notice before account suspension",
            "Outstanding payment for order {order_no}",
            "Friendly reminder: payment due",
        ),
        openers=(
            (
                "According to our records, invoice {invoice_no} for {amount} is now {days} days "
                "overdue."
            ),
            (
                "This is a friendly reminder that payment for invoice {invoice_no} was due on "
                "{due_date}."
            ),
            "We have not yet received payment for the invoices listed below.",
            "Your account {customer_id} shows an outstanding balance of {amount}.",
            "Despite our earlier reminder, invoice {invoice_no} remains unpaid.",
            "I'm writing to follow up on the open balance for your {product} subscription.",
        ),
        details=(
            "A late payment fee of {amount_small} may be added if the balance is not settled.",
            (
                "If you have already paid, please disregard this message and send us the "
                "remittance advice."
            ),
            "The original invoice date was {date} with payment terms of {days} days.",
            "Please note that services may be suspended if the account stays in arrears.",
            "Our records show a partial payment of {amount_small}, leaving {amount} open.",
            "You can settle the balance by bank transfer or by card in the customer portal.",
            "We would prefer to resolve this without passing the debt to a collection agency.",
            "Interest on late payments will accrue at the statutory rate.",
            "The overdue amount relates to the {month} usage charges.",
        ),
        asks=(
            "Please arrange payment within the next {days} days.",
            "Could you let us know the expected payment date?",
            "If there is a problem with the invoice, please tell us so we can sort it out.",
            "Kindly send proof of payment once the transfer has been made.",
            "Please contact our credit control team if you would like to agree a payment plan.",
        ),
        blocks=("open_items",),
    ),
    Scenario(
        label="billing",
        name="refund",
        subjects=(
            "Refund request for order {order_no}",
            "Charged twice for {month}",
            "Request for credit note - invoice {invoice_no}",
            "Incorrect charge on my card",
            "Please cancel and refund",
            "Duplicate payment {amount}",
        ),
        openers=(
            "I noticed that we were charged twice for the {month} subscription.",
            "We would like to request a refund for order {order_no}.",
            "Our card statement shows a charge of {amount} that we do not recognise.",
            "We cancelled the {plan} plan on {date} but were still billed for the following month.",
            "We paid invoice {invoice_no} twice by mistake and would like the duplicate returned.",
            "The amount on invoice {invoice_no} is higher than the price we agreed.",
        ),
        details=(
            "The duplicate charge was {amount} and appeared on {date}.",
            (
                "Our cancellation was confirmed in writing, so the renewal charge should not have "
                "happened."
            ),
            "The agreed price was {amount_small} per month, but we were charged {amount}.",
            "Please refund the difference to the original payment method.",
            "We returned the goods on {date} and the tracking shows they were delivered.",
            "A credit note would also be acceptable if a refund is not possible.",
            "Both payments went out from our account ending in {last4}.",
            "We have attached the bank statement showing both debits.",
            "Our finance department needs the refund processed before the end of the quarter.",
        ),
        asks=(
            "Could you confirm when the refund will be issued?",
            "Please send us a credit note for the overcharged amount.",
            "Let me know if you need any further documents to process the refund.",
            "Please reverse the charge and confirm by email.",
            "How long does a refund usually take to appear on the statement?",
        ),
    ),
    Scenario(
        label="billing",
        name="vat",
        subjects=(
            "VAT question on invoice {invoice_no}",
            "Reverse charge not applied",
            "Sales tax on our subscription",
            "Tax ID missing on invoice",
            "Question about VAT rate",
        ),
        openers=(
            (
                "Our invoice {invoice_no} was issued with {percent} VAT although we are a "
                "VAT-registered business in {country}."
            ),
            "We have a question about the VAT treatment of our {product} subscription.",
            "The reverse charge mechanism should apply to our invoices, but VAT was added.",
            "Our auditors noticed that our VAT number is missing from your invoices.",
            "Could you clarify why sales tax was charged on the last two invoices?",
        ),
        details=(
            "Our VAT identification number is {vat_id}.",
            "For intra-community supplies the invoice should state 'reverse charge'.",
            "The net amount was {amount} and the tax added was {amount_small}.",
            "We need corrected invoices for our quarterly VAT return.",
            "Our tax advisor asked for invoices showing the tax breakdown per line.",
            "The billing entity on the invoice should be our subsidiary in {city}.",
            "We are exempt from sales tax and can send the exemption certificate.",
        ),
        asks=(
            "Please reissue the invoice without VAT and include our VAT number.",
            "Could you confirm which tax rate applies to our account?",
            "Please send a corrected invoice and a credit note for the original.",
            "Let us know if you need a copy of our VAT registration certificate.",
        ),
    ),
    Scenario(
        label="billing",
        name="billing_details",
        subjects=(
            "Update billing details",
            "Change of payment method",
            "Upgrade to {plan} - pricing question",
            "New billing contact for {company}",
            "Card expiring soon",
        ),
        openers=(
            "Please update the billing address on our account to the new office in {city}.",
            "We would like to switch from card payments to annual invoicing.",
            "Our company card ending in {last4} expires next month.",
            (
                "We are considering upgrading from the {plan} plan and would like to understand "
                "the pricing."
            ),
            "From {event_date} please send all invoices to our new accounts payable mailbox.",
        ),
        details=(
            "The new billing contact is {colleague}, who will approve invoices from now on.",
            "We would prefer to be billed annually to get the discounted rate.",
            (
                "Please let us know whether the upgrade is charged pro rata for the rest of the "
                "billing period."
            ),
            "Invoices should be addressed to {company}, {street}, {city}.",
            "Our purchase order number for the coming year is {po_no}.",
            (
                "The price per seat on the {plan} plan is {amount_small} per month according to "
                "your website."
            ),
            "We want to reduce the number of paid seats from {users} to {users2}.",
        ),
        asks=(
            "Could you confirm once the billing details have been updated?",
            "Please send us a quote for the annual plan.",
            "Let me know how we can update the payment method ourselves.",
            "Please make sure the next invoice reflects the new seat count.",
        ),
    ),
    Scenario(
        label="billing",
        name="po_mismatch",
        use="golden",
        subjects=(
            "PO number mismatch on invoice {invoice_no}",
            "Invoice rejected by our AP system",
            "Pricing discrepancy on order {order_no}",
        ),
        openers=(
            (
                "Our accounts payable system rejected invoice {invoice_no} because the PO number "
                "does not match."
            ),
            "The unit prices on invoice {invoice_no} differ from the quote we accepted.",
            (
                "We received an invoice for {amount} but our purchase order was only for "
                "{amount_small}."
            ),
        ),
        details=(
            "The correct purchase order is {po_no}, issued on {date}.",
            "Invoices without a valid PO reference cannot be paid under our procurement policy.",
            "Quantities billed do not match the goods received note for order {order_no}.",
            "We can only approve the amount covered by the purchase order.",
        ),
        asks=(
            "Please cancel the invoice and issue a new one with the correct PO.",
            "Could you check the pricing and send a revised invoice?",
        ),
    ),
    Scenario(
        label="billing",
        name="remittance",
        use="train",
        subjects=(
            "Remittance advice {date}",
            "Payment confirmation for invoice {invoice_no}",
            "Payment sent",
        ),
        openers=(
            "Please be advised that we have paid invoice {invoice_no} today by bank transfer.",
            "This remittance advice confirms payment of {amount} to your account.",
            "We have settled the outstanding invoices listed below.",
        ),
        details=(
            "The payment reference is {invoice_no}.",
            "Funds should arrive within two to three business days.",
            "The transfer includes invoices {invoice_no} and {invoice_no2}.",
            "A small bank charge of {amount_small} was deducted by the intermediary bank.",
        ),
        asks=(
            "Please allocate the payment and confirm the account is now clear.",
            "Let us know if the amount received differs from what is shown here.",
        ),
        blocks=("open_items",),
    ),
    # --------------------------------------------------------------- technical
    Scenario(
        label="technical",
        name="bug",
        subjects=(
            "Bug: {feature} not working",
            "Error when saving records in {product}",
            "Unexpected behaviour after update to {version}",
            "Report button does nothing",
            "Data not displayed correctly",
            "Possible bug in {product} {version}",
        ),
        openers=(
            "Since the update to version {version}, {feature} no longer works for our team.",
            "We found a bug in {product}: saving a record with custom fields throws an error.",
            "When I click 'Export', the page reloads but no file is downloaded.",
            "The dashboard shows wrong totals after we changed the time zone setting.",
            "Some users see a blank screen when opening the reports page in {browser}.",
            "Dates in the CSV export are shifted by one day.",
            "I'd like to report a bug in the search: results are missing records created today.",
        ),
        details=(
            "Steps to reproduce: open the record, change any field, press save.",
            "The issue happens in {browser} on {os}; other browsers seem fine.",
            "We cleared the cache and tried in an incognito window with the same result.",
            "It started after the release on {date}.",
            "About {users} users are affected in our workspace.",
            "The browser console shows the error code {error_code}.",
            "Expected behaviour: the file should download. Actual behaviour: nothing happens.",
            "Screenshots and a HAR file are attached.",
            "Our workaround is to export smaller batches, but that takes much longer.",
            "We are on version {version} of the desktop client.",
            "Rolling back the integration settings did not help.",
        ),
        asks=(
            "Could you look into this and let us know if it is a known issue?",
            "Please tell us if you need logs or access to our test workspace.",
            "Is there an ETA for a fix?",
            "Can you escalate this to your engineering team?",
            "Let me know if a workaround exists in the meantime.",
        ),
        blocks=("console_log",),
    ),
    Scenario(
        label="technical",
        name="outage",
        subjects=(
            "URGENT: {product} down",
            "Service outage - cannot access {service}",
            "Production incident: {http_error}",
            "Is there an outage?",
            "Site unreachable since {time}",
        ),
        openers=(
            "Since {time} this morning none of our users can reach {product}.",
            "The {service} has been returning {http_error} for the last {minutes} minutes.",
            "We are experiencing a full outage of the {service} in the {region} region.",
            "Is there an ongoing incident? Our integration stopped processing orders at {time}.",
            "Our monitoring reports that your {service} is timing out.",
        ),
        details=(
            "The status page still shows all systems operational.",
            "This is blocking our warehouse team, so it is a priority one issue for us.",
            "Requests time out after about 30 seconds.",
            "We checked our own network and other services are reachable.",
            "Roughly {users} users are affected across three sites.",
            "The last successful sync was at {time2}.",
            "We saw latency climbing above 5 seconds before the service went down completely.",
            "Our incident reference is {ticket_no}.",
            "Restarting the connector on our side made no difference.",
        ),
        asks=(
            "Please give us an update as soon as possible.",
            "Can you confirm whether this is a wider incident?",
            "Please share a root cause analysis once the service is restored.",
            "Who can we call for urgent escalation?",
        ),
        blocks=("server_log",),
    ),
    Scenario(
        label="technical",
        name="login",
        subjects=(
            "Cannot log in",
            "SSO login fails with error {error_code}",
            "Two-factor code not accepted",
            "Locked out of account",
            "Password reset email not arriving",
        ),
        openers=(
            "Several users in our team cannot log in since this morning.",
            "Single sign-on via our identity provider fails with error {error_code}.",
            (
                "My two-factor authentication codes are rejected even though the phone clock is "
                "correct."
            ),
            "I am locked out of my account after too many login attempts.",
            "The password reset email never arrives, not even in the spam folder.",
        ),
        details=(
            "The login page shows 'invalid SAML response' after the redirect.",
            "We rotated the signing certificate on our identity provider on {date}.",
            "The error appears in {browser} and in the desktop app.",
            "Admins can still log in with username and password.",
            "The account email is {sender_email}.",
            "We have checked that the user is assigned to the application in our directory.",
            "The session expires immediately after login and redirects back to the login screen.",
            "The authenticator app was moved to a new phone last week.",
        ),
        asks=(
            "Could you unlock the account or reset the second factor?",
            "Please check the SSO configuration on your side.",
            "How can we get our users back in quickly?",
            "Let me know which logs you need from our identity provider.",
        ),
    ),
    Scenario(
        label="technical",
        name="api",
        subjects=(
            "API returns {http_error}",
            "Rate limiting on {endpoint}",
            "Webhook deliveries failing",
            "API token invalid after rotation",
            "Integration error with {endpoint}",
        ),
        openers=(
            (
                "Our integration receives {http_error} from {endpoint} for about a third of the "
                "requests."
            ),
            (
                "Since {date} we are hitting rate limits on {endpoint} even though traffic has not "
                "changed."
            ),
            "Webhook deliveries to our endpoint fail with a timeout according to the delivery log.",
            "After rotating the API token, every request returns 401 Unauthorized.",
            "The {endpoint} endpoint returns an empty list although records exist.",
        ),
        details=(
            "We send about {users} requests per minute, well below the documented limit.",
            "The response body contains the error code {error_code} and no further details.",
            "Pagination seems to skip records when the page size is above 100.",
            "We are using the official client library version {version}.",
            "The same request works in the sandbox environment.",
            "Retry with exponential backoff does not help.",
            "Request ID from the response header: {request_id}.",
            "The JSON response is missing the 'updated_at' field described in the API docs.",
        ),
        asks=(
            "Could you check the logs for the request ID above?",
            "Please confirm the current rate limits for our plan.",
            "Is there a change in the API we missed?",
            "How should we handle this error on our side?",
        ),
        blocks=("http_exchange",),
    ),
    Scenario(
        label="technical",
        name="crash",
        subjects=(
            "Crash with stack trace",
            "Unhandled exception in {product} {version}",
            "App crashes on start",
            "NullPointerException in export job",
        ),
        openers=(
            "The desktop client crashes every time we open a project with more than 500 items.",
            "Our nightly export job fails with an unhandled exception, stack trace below.",
            "The import stops halfway and the log shows the following traceback.",
            "After upgrading to {version}, the application crashes on start.",
        ),
        details=(
            "This happens on {os} with the latest updates installed.",
            "Memory usage climbs to several gigabytes before the crash.",
            "Reinstalling the client did not change anything.",
            "The crash dump is attached to this email.",
            "The failing job ID is {ticket_no}.",
            "It looks like a null value in the customer record is not handled.",
        ),
        asks=(
            "Can your developers take a look at the trace?",
            "Please let us know whether a patch release is planned.",
            "Is there a setting to skip the failing records?",
        ),
        blocks=("python_trace", "java_trace"),
    ),
    Scenario(
        label="technical",
        name="how_to",
        subjects=(
            "Question about {feature}",
            "How do I configure {feature}?",
            "Is {feature} supported on the {plan} plan?",
            "Setting up the integration",
            "Feature request: {feature}",
        ),
        openers=(
            "We would like to set up {feature} for our workspace and could not find the option.",
            "Is it possible to use {feature} together with the {product} mobile app?",
            "How can we configure the integration so that new orders sync automatically?",
            "We are evaluating {feature} and have a few technical questions.",
            "Could you explain how permissions work when {feature} is enabled?",
        ),
        details=(
            "The documentation mentions a settings page that we do not see in our admin panel.",
            "We need to connect it to our existing directory with about {users} accounts.",
            "Ideally the sync would run every {minutes} minutes.",
            "We are running the self-hosted version {version} on {os}.",
            "Our security team wants to know whether data is encrypted at rest.",
            "It would help to have an example configuration file.",
            "We tried the steps in the help article, but the toggle is greyed out.",
        ),
        asks=(
            "Could you point us to the right documentation?",
            "Is this on your roadmap?",
            "Can someone from your support team walk us through the setup?",
            "Please let me know what we are missing.",
        ),
    ),
    Scenario(
        label="technical",
        name="performance",
        use="golden",
        subjects=(
            "Mobile app freezes",
            "Very slow page loads",
            "Performance degradation since {date}",
        ),
        openers=(
            "The {product} mobile app freezes on the loading screen on {mobile_os}.",
            "Page loads in the web app have become very slow, often more than ten seconds.",
            "We noticed a serious performance degradation of the {service} since {date}.",
        ),
        details=(
            "Force-closing the app and reinstalling did not fix it.",
            "The slowness is worst between nine and eleven in the morning.",
            "Network traces show the API calls themselves take several seconds.",
            "Our users on wifi and on mobile data see the same behaviour.",
        ),
        asks=(
            "Could you investigate the cause of the slowdown?",
            "Is a fix for the mobile app planned?",
        ),
    ),
    Scenario(
        label="technical",
        name="sync_import",
        use="train",
        subjects=("Import failing", "Data sync stopped", "CSV import errors"),
        openers=(
            "The CSV import rejects our file with the message 'unexpected column'.",
            "The sync between {product} and our ERP stopped on {date}.",
            "Records imported yesterday show garbled characters in the name fields.",
        ),
        details=(
            "The file is UTF-8 encoded and uses semicolons as separators.",
            "The sync log shows repeated connection resets.",
            "About {users} records are missing in the target system.",
            "We re-ran the import twice with the same result.",
        ),
        asks=(
            "Could you check what is wrong with the file format?",
            "Please help us restart the sync without creating duplicates.",
        ),
        blocks=("server_log",),
    ),
    # ------------------------------------------------------------------- legal
    Scenario(
        label="legal",
        name="contract",
        subjects=(
            "Contract renewal {contract_no}",
            "Draft amendment to the master services agreement",
            "Review of the service agreement",
            "Signed contract - {company}",
            "Change of terms - framework agreement",
        ),
        openers=(
            (
                "Please find attached the draft amendment to our master services agreement "
                "{contract_no}."
            ),
            "Our legal department has reviewed the service agreement and proposes a few changes.",
            (
                "The framework agreement with {company} expires on {event_date} and we would like "
                "to discuss the renewal terms."
            ),
            "Enclosed is the countersigned contract for your records.",
            "We would like to amend the liability and termination clauses of the agreement.",
        ),
        details=(
            (
                "Clause {clause} should be amended so that either party can terminate with {days} "
                "days' written notice."
            ),
            (
                "We cannot accept unlimited liability and propose a cap equal to twelve months of "
                "fees."
            ),
            (
                "The governing law should be the law of {country}, with exclusive jurisdiction of "
                "the courts of {city}."
            ),
            "Changes are marked in the attached redline.",
            "The indemnification clause needs to cover third-party intellectual property claims.",
            (
                "The agreement renews automatically unless notice is given {days} days before the "
                "end of the term."
            ),
            "Please note that the contract must be signed by two authorised signatories.",
            "Our counsel asked to add a standard force majeure clause.",
            "Schedule 2 of the agreement defines the service levels and remedies.",
        ),
        asks=(
            "Please review the proposed changes and let us know whether they are acceptable.",
            "Could you return a signed copy by {due_date}?",
            "We suggest a call with both legal teams to finalise the wording.",
            "Kindly confirm who will sign on your side.",
        ),
        blocks=("clause_quote",),
    ),
    Scenario(
        label="legal",
        name="nda",
        subjects=(
            "NDA for project discussions",
            "Mutual non-disclosure agreement",
            "Confidentiality agreement - signature required",
            "NDA redline from {company}",
        ),
        openers=(
            (
                "Before we share the technical details, we need a mutual non-disclosure agreement "
                "in place."
            ),
            "Attached is our standard NDA for your signature.",
            "We have reviewed your NDA template and have some comments.",
            (
                "Could you send us your mutual confidentiality agreement so that we can start the "
                "evaluation?"
            ),
        ),
        details=(
            "The confidentiality obligations should survive for {years} years after termination.",
            "The definition of confidential information is too broad in section 1.",
            "We need a carve-out for information that is already publicly available.",
            "Disclosure to affiliates and professional advisers must be permitted.",
            "The NDA should be mutual rather than one-way.",
            "Please note that we can only sign NDAs governed by the law of {country}.",
            "Return or destruction of confidential information should be confirmed in writing.",
        ),
        asks=(
            "Please countersign and return the NDA by {due_date}.",
            "Let us know if the proposed changes are acceptable.",
            "Who on your side is authorised to sign the agreement?",
        ),
        blocks=("clause_quote",),
    ),
    Scenario(
        label="legal",
        name="gdpr",
        subjects=(
            "Data subject access request",
            "Request for erasure under {law}",
            "{law} request - personal data",
            "Right to be forgotten",
            "Privacy request regarding my account",
        ),
        openers=(
            (
                "Under Article 15 of the {law}, I request a copy of all personal data you hold "
                "about me."
            ),
            "I am exercising my right to erasure and ask you to delete my personal data.",
            "Please treat this email as a formal data subject access request.",
            "I object to the processing of my personal data for marketing purposes.",
            (
                "As the data protection officer of {company}, I am forwarding a data subject "
                "request we received."
            ),
        ),
        details=(
            "Please include the purposes of the processing and the recipients of the data.",
            "I expect a response within one month as required by law.",
            "My customer number is {customer_id} and the account email is {sender_email}.",
            "Please also confirm whether my data was shared with any third parties.",
            "If you need to verify my identity, please tell me which documents you require.",
            "I withdraw any consent I have given for the processing of my data.",
            "Please confirm the retention period for the data you keep.",
            (
                "If I do not receive a response, I will lodge a complaint with the supervisory "
                "authority."
            ),
        ),
        asks=(
            "Please confirm receipt of this request.",
            "Kindly send the data in a commonly used electronic format.",
            "Please confirm in writing once the deletion is complete.",
        ),
    ),
    Scenario(
        label="legal",
        name="subpoena",
        subjects=(
            "Subpoena - case {case_no}",
            "Court order for production of records",
            "Litigation hold notice",
            "Request for documents - {court}",
        ),
        openers=(
            "We act for the claimant in case {case_no} before the {court}.",
            "Enclosed please find a subpoena requiring the production of business records.",
            "This letter serves as a litigation hold notice regarding the dispute with {company}.",
            (
                "{law_firm} has been instructed in connection with proceedings against one of your "
                "customers."
            ),
        ),
        details=(
            "You are required to produce the documents listed in Schedule A by {due_date}.",
            "Please preserve all emails, invoices and system logs relating to the matter.",
            "Failure to comply with the order may result in sanctions.",
            "The relevant period is from {date} to {date2}.",
            "Any objection must be filed with the court within {days} days.",
            "Please direct all correspondence on this matter to the undersigned.",
            "Deletion of relevant records, including automatic deletion, must be suspended.",
        ),
        asks=(
            "Please confirm that you will comply with the request.",
            "Kindly forward this notice to your legal department without delay.",
            "Please acknowledge receipt of this letter.",
        ),
    ),
    Scenario(
        label="legal",
        name="dispute",
        subjects=(
            "Formal notice of breach of contract",
            "Dispute regarding terms of service",
            "Notice of termination",
            "Complaint and claim for damages",
        ),
        openers=(
            "We hereby give formal notice that you are in breach of the agreement dated {date}.",
            "We dispute the changes to your terms of service announced on {date}.",
            "Our client considers the unilateral price change a breach of contract.",
            "This letter constitutes notice of termination of the agreement {contract_no}.",
            "We reserve all rights regarding the losses caused by the missed delivery deadlines.",
        ),
        details=(
            "Under clause {clause} you were required to remedy the breach within {days} days.",
            "The new terms were never accepted by our company and are not binding.",
            "Our client has suffered damages of at least {amount}.",
            "We consider the limitation of liability clause unenforceable in these circumstances.",
            "Without prejudice to our rights, we are prepared to discuss an amicable settlement.",
            "If the matter is not resolved, we will initiate proceedings without further notice.",
            "The termination will take effect at the end of the notice period.",
        ),
        asks=(
            "Please respond within {days} days with your proposal.",
            "We request written confirmation that the original terms continue to apply.",
            "Kindly confirm the date on which the termination becomes effective.",
        ),
        blocks=("clause_quote",),
    ),
    Scenario(
        label="legal",
        name="cease_desist",
        subjects=(
            "Cease and desist - unauthorised use of trademark",
            "Infringement of our intellectual property",
            "Demand to stop using copyrighted material",
        ),
        openers=(
            (
                "We represent {company} in relation to the unauthorised use of its registered "
                "trademark."
            ),
            (
                "It has come to our attention that your website uses copyrighted material owned by "
                "our client."
            ),
            (
                "This is a formal demand that you cease and desist from using the name {product} "
                "in commerce."
            ),
            "Our client's patent covers the method described in your product documentation.",
        ),
        details=(
            "The mark is registered under number {reg_no} and has been in use since {year_old}.",
            "The use is likely to cause confusion among consumers.",
            "You must remove all infringing material within {days} days of this letter.",
            "We reserve the right to seek injunctive relief and damages.",
            "Please provide an account of all sales made under the infringing name.",
            "This letter is sent without prejudice to any other rights of our client.",
        ),
        asks=(
            "Please confirm in writing that you will comply with these demands.",
            "We expect your signed undertaking by {due_date}.",
        ),
    ),
    Scenario(
        label="legal",
        name="dpa",
        use="golden",
        subjects=(
            "Data processing agreement",
            "DPA and sub-processor list",
            "Privacy terms for our contract",
        ),
        openers=(
            (
                "Our procurement process requires a signed data processing agreement before we can "
                "go live."
            ),
            (
                "Please send us your current list of sub-processors and the standard contractual "
                "clauses."
            ),
            "We need to review the privacy terms before renewing the agreement.",
        ),
        details=(
            "The DPA must reflect the requirements of Article 28 of the {law}.",
            "Transfers of personal data outside the EEA need an appropriate safeguard.",
            "We expect to be notified of any personal data breach within 48 hours.",
            "Audit rights for the controller must be included.",
        ),
        asks=(
            "Please send the signed DPA to our legal team.",
            "Could you confirm where customer data is stored?",
        ),
    ),
    Scenario(
        label="legal",
        name="indemnity",
        use="train",
        subjects=(
            "Notice of claim",
            "Insurance and indemnity question",
            "Claim for indemnification",
        ),
        openers=(
            "We hereby notify you of a claim under the indemnity provisions of our agreement.",
            (
                "A third party has made a claim against us that falls within your indemnification "
                "obligations."
            ),
            (
                "Please provide evidence of professional liability insurance as required by the "
                "contract."
            ),
        ),
        details=(
            "The claim relates to alleged infringement arising from the use of your software.",
            "The insurance certificate must show cover of at least {amount}.",
            "Under the agreement you are obliged to defend and hold us harmless.",
            "Please notify your insurer without delay.",
        ),
        asks=(
            "Please confirm that you accept the claim under the indemnity.",
            "Kindly send the insurance certificate by {due_date}.",
        ),
    ),
    # ------------------------------------------------------------------- other
    Scenario(
        label="other",
        name="newsletter",
        formats=MAILING_FORMATS,
        subjects=(
            "{company} Newsletter - {month} edition",
            "What's new this month",
            "Your monthly update from {company}",
            "Industry insights: {month} {year}",
        ),
        openers=(
            "Welcome to the {month} edition of our newsletter.",
            "Here is your monthly round-up of news from {company}.",
            "In this issue: our new office, upcoming webinars and tips for the season.",
            "Thank you for subscribing to our newsletter!",
        ),
        details=(
            (
                "We are excited to announce that our team in {city} has grown to more than fifty "
                "people."
            ),
            "Join our free webinar on {event_date} to hear from industry experts.",
            "Read our latest blog post on sustainable packaging.",
            "Our customer of the month is {company2}, who shared their story with us.",
            "Don't miss our spring sale with {percent} off selected items.",
            "Meet the team: this month we talk to our head of customer experience.",
            "Save the date for our annual customer conference in {city}.",
            "Tip of the month: organise your shared folders by project rather than by person.",
            "We are proud to have been certified as a great place to work.",
            "Follow us on social media for more updates.",
        ),
        asks=(
            "You are receiving this email because you subscribed on our website.",
            "To unsubscribe, click the link at the bottom of this email.",
            "Forward this newsletter to a colleague who might be interested.",
        ),
        blocks=("newsletter_sections",),
    ),
    Scenario(
        label="other",
        name="meeting",
        formats=MAILING_FORMATS,
        subjects=(
            "Meeting invite: {weekday} {time}",
            "Catch-up next week?",
            "Quarterly review meeting",
            "Invitation: project kickoff",
            "Rescheduling our call",
        ),
        openers=(
            "I'd like to invite you to a short catch-up on {weekday} at {time}.",
            "Could we schedule a meeting next week to discuss the project plan?",
            "You are invited to the quarterly review on {event_date} in meeting room {room}.",
            "Unfortunately I need to move our call on {weekday} to a later time.",
            "Let's set up a kickoff meeting for the new initiative.",
        ),
        details=(
            "The meeting will take about {minutes} minutes.",
            "The agenda is attached; feel free to add topics.",
            "We will meet in room {room} on the second floor, and a video link is in the invite.",
            "{colleague} from our {department} team will also join.",
            "Coffee and snacks will be provided.",
            "Please bring your latest numbers and any open questions.",
            "If the time does not suit you, please suggest an alternative.",
            "I have booked the large meeting room for the afternoon.",
        ),
        asks=(
            "Please accept the calendar invitation if the slot works for you.",
            "Let me know your availability for next week.",
            "Would {weekday} at {time2} work instead?",
        ),
        blocks=("agenda",),
    ),
    Scenario(
        label="other",
        name="thanks",
        subjects=(
            "Thank you!",
            "Thanks for a great partnership",
            "Appreciation",
            "Thank you for your hospitality",
        ),
        openers=(
            "I just wanted to say thank you for your help last week.",
            "On behalf of the whole team, thank you for a great year of working together.",
            "Many thanks for hosting us at your office in {city}.",
            "Thank you so much for the lovely flowers and kind words.",
        ),
        details=(
            "The workshop was really well organised and everyone enjoyed it.",
            "Your team went above and beyond to make the event a success.",
            "It was great to finally meet everyone in person.",
            "We really appreciate your patience and support over the last months.",
            "The presentation got great feedback from our management.",
            "We look forward to continuing our collaboration next year.",
        ),
        asks=(
            "Please pass on our thanks to everyone involved.",
            "Hope to see you again soon.",
            "Let's stay in touch.",
        ),
    ),
    Scenario(
        label="other",
        name="job",
        subjects=(
            "Application for the position of {job_title}",
            "Job application - {job_title}",
            "Open application",
            "Internship enquiry",
        ),
        openers=(
            "I am writing to apply for the position of {job_title} advertised on your website.",
            "Please find attached my CV and cover letter for the {job_title} role.",
            "I would like to submit an open application to {our_company}.",
            "I am a final-year student and am looking for an internship starting in {month}.",
        ),
        details=(
            "I have five years of experience in a similar role at {company}.",
            "In my current position I lead a small team and manage several projects.",
            "I speak English, German and Spanish fluently.",
            "I am particularly interested in your company's focus on sustainability.",
            "I am available to start after a notice period of {days} days.",
            "My portfolio and references are available on request.",
            "I recently completed a certification in project management.",
            "I would welcome the opportunity to discuss how I could contribute to your team.",
        ),
        asks=(
            "I look forward to hearing from you.",
            "Please let me know if you need any further information about my application.",
            "I would be happy to come in for an interview at your convenience.",
        ),
    ),
    Scenario(
        label="other",
        name="office",
        formats=MAILING_FORMATS,
        subjects=(
            "Office notice: {event}",
            "Building maintenance on {weekday}",
            "Reminder: fire drill",
            "Parking garage closed",
            "Kitchen clean-up",
            "New visitor policy",
        ),
        openers=(
            "Please note that the building will be closed on {event_date} for maintenance work.",
            "A fire drill will take place on {weekday} at {time}.",
            "The parking garage will be closed for cleaning from {event_date} to {event_date2}.",
            "Friendly reminder to empty the fridge in the second-floor kitchen by Friday.",
            "From {event_date} all visitors need to register at reception.",
            "The heating in the east wing will be switched off on {weekday} for repairs.",
        ),
        details=(
            "Please make sure you take your personal belongings home before the weekend.",
            "Staff are asked to use the back entrance during the works.",
            "Anything left in the fridge after Friday afternoon will be thrown away.",
            "Please follow the instructions of the fire wardens.",
            "Bicycles can be parked in the courtyard during this time.",
            "The cleaning company will also replace the carpets in meeting room {room}.",
            "Visitor badges must be returned at the end of the day.",
            "We apologise for any inconvenience.",
        ),
        asks=(
            "Please contact facilities if you have any questions.",
            "Thank you for your understanding.",
            "Please share this with your team.",
        ),
    ),
    Scenario(
        label="other",
        name="event",
        formats=MAILING_FORMATS,
        subjects=(
            "You're invited: {event}",
            "Webinar invitation: trends in {year_next}",
            "Join us at our {event}",
            "Registration open: customer conference",
        ),
        openers=(
            "We are delighted to invite you to our {event} on {event_date}.",
            "Join our free webinar on {event_date} at {time} about the future of remote work.",
            "Registration is now open for our annual customer conference in {city}.",
            "Our {event} is coming up and we would love to see you there.",
        ),
        details=(
            "The programme includes talks, workshops and plenty of time for networking.",
            "Drinks and dinner will be served from 6 pm.",
            "Places are limited, so please register early.",
            "The venue is a short walk from the central station.",
            "Family members are welcome to attend.",
            "A recording will be sent to all registered participants.",
        ),
        asks=(
            "Please RSVP by {due_date}.",
            "Register using the link below.",
            "We hope to see you there!",
        ),
        blocks=("agenda",),
    ),
    Scenario(
        label="other",
        name="community",
        formats=MAILING_FORMATS,
        use="golden",
        subjects=("Charity run - join the team!", "Volunteering day", "Book club this month"),
        openers=(
            "This year our office is entering a team in the city charity run on {event_date}.",
            "Our annual volunteering day will take place in {month}.",
            "The book club meets again on {weekday} over lunch.",
        ),
        details=(
            "All donations go to a local food bank.",
            "You can choose between helping at the animal shelter or planting trees.",
            "This month we are reading a novel chosen by the marketing team.",
            "Team t-shirts will be handed out at reception.",
        ),
        asks=(
            "Sign up on the list in the kitchen by {due_date}.",
            "Everyone is welcome, no experience needed.",
        ),
    ),
    Scenario(
        label="other",
        name="sales_pitch",
        formats=MAILING_FORMATS,
        use="train",
        subjects=(
            "Quick question",
            "Helping {our_company} grow",
            "Short survey about your experience",
        ),
        openers=(
            (
                "I came across {our_company} and thought our lead generation service could be a "
                "great fit."
            ),
            "We help companies like yours save up to {percent} on office supplies.",
            "We would appreciate five minutes of your time for a short customer survey.",
        ),
        details=(
            "Our clients include several leading companies in your sector.",
            "The survey has ten questions and takes about five minutes.",
            "I would love to show you a short demo.",
            "As a thank-you, every participant can enter a prize draw.",
        ),
        asks=(
            "Would you be open to a 15-minute call next week?",
            "Click here to start the survey.",
        ),
    ),
    # ---------------------------------------------------------------------
    # Crossover scenarios: the label is clear to a human, but most of the
    # vocabulary belongs to another queue.  Real triage is full of these.
    # ---------------------------------------------------------------------
    Scenario(
        label="billing",
        name="price_change",
        formats=MAILING_FORMATS,
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Price adjustment from {event_date}",
            "Your subscription renewal and new prices",
            "Changes to your {plan} plan pricing",
            "Annual price review {year}",
        ),
        openers=(
            (
                "In line with clause {clause} of your agreement, the price of the {plan} plan will "
                "increase by {percent} from {event_date}."
            ),
            (
                "Your {product} subscription renews on {event_date} and will be charged at the new "
                "annual rate."
            ),
            (
                "We are writing to let you know about a change to the fees for your account "
                "{customer_id}."
            ),
            (
                "Following our annual price review, the monthly fee per seat changes from "
                "{amount_small} to a slightly higher rate."
            ),
        ),
        details=(
            "The new price will appear on your next invoice.",
            (
                "Under the terms of the agreement, price changes are notified at least {days} days "
                "in advance."
            ),
            (
                "If you switch to annual billing before the renewal date, the current price stays "
                "fixed for twelve months."
            ),
            "Your card ending in {last4} will be charged automatically on the renewal date.",
            "The renewal amount for {users} seats is {amount} excluding VAT.",
            "The contract term and all other conditions remain unchanged.",
            "Customers on legacy plans keep their discount until the end of the current term.",
        ),
        asks=(
            "No action is needed if you want to continue with the new price.",
            (
                "Please contact your account manager if you would like to change your plan before "
                "the renewal."
            ),
            "Reply to this email if the billing contact has changed.",
        ),
    ),
    Scenario(
        label="billing",
        name="invoice_copies",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Cannot download invoices",
            "Missing invoices in the portal",
            "Invoice copies for {year}",
            "Invoice PDF shows wrong company name",
        ),
        openers=(
            "I cannot find the invoices for {month} in the billing section of the portal.",
            (
                "Our auditors need copies of all invoices for {year}, but the download link gives "
                "an error."
            ),
            "The invoice PDFs in the customer portal still show our old company name and address.",
            "We only see invoices from the last six months in the portal, but we need older ones.",
        ),
        details=(
            "The list of invoices is empty when I filter by {month}.",
            "Clicking the download button opens an empty page in {browser}.",
            "Our customer number is {customer_id}.",
            "The company name changed to {company} on {date}.",
            "We need the documents in PDF format for our year-end closing.",
            "Invoice {invoice_no} is the one our accounts team is missing.",
        ),
        asks=(
            "Could you send us the invoice copies by email instead?",
            "Please reissue the invoices with the correct company details.",
            "Can you tell me where to find older invoices?",
        ),
    ),
    Scenario(
        label="technical",
        name="billing_integration",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Invoice sync to our accounting system fails",
            "Payment webhook returns {http_error}",
            "Invoices API pagination bug",
            "Accounting connector error {error_code}",
        ),
        openers=(
            (
                "The connector that syncs your invoices into our accounting system stopped working "
                "on {date}."
            ),
            "Webhook events for successful payments are delivered with a malformed JSON body.",
            (
                "The invoices endpoint of your API returns each invoice twice when we page through "
                "the results."
            ),
            "Since the last release, the accounting export writes amounts without decimal places.",
        ),
        details=(
            (
                "The connector log shows error {error_code} for every invoice with more than ten "
                "line items."
            ),
            "We use the invoice ID as the key in our system, so the duplicates break the import.",
            "Amounts like {amount} arrive as whole numbers, which breaks our reconciliation.",
            "The payment.succeeded event is missing the currency field.",
            "We are on client library version {version} and have not changed our code.",
            "Replaying the webhook from the dashboard fails with a timeout.",
            "Request ID from the last failed call: {request_id}.",
        ),
        asks=(
            "Could your engineers check whether this is a regression?",
            "Please let us know when a fix for the API is deployed.",
            "Is there a workaround to re-sync the affected invoices?",
        ),
        blocks=("http_exchange",),
    ),
    Scenario(
        label="technical",
        name="privacy_settings",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "How to configure data retention",
            "Bulk deletion of user data via API",
            "Question about the audit log export",
            "Anonymising records for a GDPR request",
        ),
        openers=(
            (
                "To handle deletion requests we need to delete user records in bulk, but the API "
                "only deletes one at a time."
            ),
            (
                "How do we configure the data retention settings so that old tickets are purged "
                "automatically?"
            ),
            (
                "Our data protection team asked us to export the audit log, but the export stops "
                "after 10,000 rows."
            ),
            "Is there an API endpoint to anonymise a customer record instead of deleting it?",
        ),
        details=(
            "The retention setting in the admin panel is greyed out on the {plan} plan.",
            "Deleting {users} records one by one runs into the rate limit on {endpoint}.",
            "The export job fails with error {error_code} after a few minutes.",
            "We would like to script this with the REST API rather than click through the UI.",
            "Our legal team needs to confirm that backups are purged as well.",
            "We are running version {version} of the self-hosted edition.",
        ),
        asks=(
            "Could you share the right API call or a script example?",
            "Please tell us how to enable the retention setting.",
            "Is a bulk deletion endpoint planned?",
        ),
    ),
    Scenario(
        label="legal",
        name="debt_collection",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Letter before action - unpaid invoices",
            "Final demand on behalf of {company}",
            "Notice of intended legal proceedings",
            "Claim for outstanding fees",
        ),
        openers=(
            "We act for {company} in connection with unpaid invoices totalling {amount}.",
            (
                "Despite repeated payment reminders, our client's invoices remain unpaid, and we "
                "have been instructed to recover the debt."
            ),
            (
                "This is a letter before action concerning the outstanding balance on account "
                "{customer_id}."
            ),
            "{law_firm} has been instructed to issue proceedings for the recovery of unpaid fees.",
        ),
        details=(
            (
                "The invoices were issued under the services agreement dated {date} and are not "
                "disputed."
            ),
            (
                "Statutory interest and compensation for recovery costs will be claimed in "
                "addition to the principal."
            ),
            (
                "If payment of {amount} is not received within {days} days, we will issue a claim "
                "without further notice."
            ),
            "Court proceedings would increase the costs for which you may be held liable.",
            "Please note that this letter may be produced to the court on the question of costs.",
            "Any dispute about the invoices must be set out in writing with supporting documents.",
        ),
        asks=(
            "Please pay the full amount or contact us to propose a settlement.",
            "Kindly direct all further correspondence on this matter to our office.",
            "Please confirm within {days} days how you intend to resolve the claim.",
        ),
    ),
    Scenario(
        label="legal",
        name="sla_claim",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Claim for service credits under the SLA",
            "Breach of service level agreement",
            "Formal complaint regarding the outage on {date}",
        ),
        openers=(
            (
                "The outage of the {service} on {date} breached the availability commitment in "
                "Schedule 2 of our agreement."
            ),
            (
                "We hereby claim service credits for the downtime in {month} under the service "
                "level agreement."
            ),
            "Repeated outages this quarter amount to a material breach of the contract.",
        ),
        details=(
            "Availability fell below the guaranteed 99.9% for the second month in a row.",
            "The downtime lasted {minutes} minutes and affected all of our users.",
            "Under clause {clause} we are entitled to a credit of {percent} of the monthly fee.",
            (
                "We reserve the right to terminate the agreement for cause if the service levels "
                "are missed again."
            ),
            "Your incident report does not meet the notification duties set out in the contract.",
            "Our losses from the interruption exceed {amount}.",
        ),
        asks=(
            "Please confirm the service credits in writing within {days} days.",
            "We request a formal remediation plan as required by the agreement.",
        ),
    ),
    Scenario(
        label="other",
        name="release_newsletter",
        formats=MAILING_FORMATS,
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "{product} product update - {month}",
            "What's new in {product} {version}",
            "Release highlights for {month}",
            "New features you might have missed",
        ),
        openers=(
            "Here are the highlights of this month's {product} release.",
            "We shipped a lot of improvements in {month}: here is a quick tour.",
            "Version {version} is rolling out to all workspaces this week.",
            "This edition of our product newsletter is all about speed and security.",
        ),
        details=(
            "The new {feature} option is now available on all paid plans.",
            "Dashboards load up to twice as fast thanks to a new caching layer.",
            "Admins can now enforce two-factor authentication for the whole team.",
            "Our public API gained three new endpoints for reports and exports.",
            "The mobile app has a fresh design and a dark mode.",
            "Watch the two-minute video to see the new features in action.",
            "Join our product webinar on {event_date} to ask the team your questions.",
        ),
        asks=(
            "You are receiving this product newsletter because you are a {product} user.",
            "Manage your email preferences at any time in your account settings.",
            "Happy building, and thanks for being a customer!",
        ),
    ),
    Scenario(
        label="other",
        name="internal_meeting",
        formats=MAILING_FORMATS,
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Invite: contract and invoicing process review",
            "Meeting: quarterly close with finance",
            "Sync on the incident review next {weekday}",
            "Workshop invitation: supplier onboarding",
        ),
        openers=(
            (
                "I'd like to set up a meeting with finance and legal to walk through how we handle "
                "supplier invoices and contracts."
            ),
            (
                "Let's meet on {weekday} at {time} to prepare the quarterly close with the finance "
                "team."
            ),
            (
                "Could we find a slot next week for the review of last month's outage with the "
                "engineering leads?"
            ),
            (
                "You are invited to a workshop on how we onboard new suppliers, from contract "
                "signature to the first payment."
            ),
        ),
        details=(
            "No decisions are needed yet; the goal is to agree on an agenda.",
            "I have booked room {room} for {minutes} minutes, and a video link is in the invite.",
            "{colleague} from {department} will present the current process.",
            "Please have a look at the shared slides before the meeting.",
            "Lunch will be provided for everyone who joins in person.",
            "If you cannot make it, feel free to send a colleague.",
        ),
        asks=(
            "Please accept or decline the calendar invitation.",
            "Let me know if another time works better for you.",
        ),
        blocks=("agenda",),
    ),
    Scenario(
        label="other",
        name="compliance_webinar",
        formats=MAILING_FORMATS,
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Webinar: privacy rules in {year_next}",
            "Free guide: e-invoicing requirements",
            "Invitation: breakfast seminar on contract law updates",
        ),
        openers=(
            (
                "Join our free webinar on {event_date} about what the new privacy rules mean for "
                "small businesses."
            ),
            "Download our free guide to the upcoming e-invoicing and VAT reporting requirements.",
            "{law_firm} invites you to a breakfast seminar on recent changes in contract law.",
        ),
        details=(
            (
                "Our speakers will cover data protection, consent and cookie banners in plain "
                "language."
            ),
            "The guide explains the new invoice formats and deadlines step by step.",
            "The seminar takes place at our office in {city} from 8:30 to 10:00.",
            "Places are limited, and attendance is free of charge.",
            "A recording will be shared with everyone who registers.",
        ),
        asks=(
            "Register now using the link below.",
            "We look forward to welcoming you.",
            "You can unsubscribe from these invitations at any time.",
        ),
    ),
    # ---------------------------------------------------------------------
    # Vague messages: short, few topical words.  Hard for any classifier.
    # ---------------------------------------------------------------------
    Scenario(
        label="billing",
        name="vague_account",
        weight=VAGUE_WEIGHT,
        subjects=(
            "Question about our account",
            "Quick question",
            "Following up",
            "Our account {customer_id}",
        ),
        openers=(
            "I have a question about the last charge on our account.",
            "Could someone from your accounts team call me back?",
            "Something does not add up on our last statement.",
            "We need a document from you for our year-end closing.",
        ),
        details=(
            "It's about account {customer_id}.",
            "Our finance team asked me to check.",
            "It's probably a small thing.",
            "The number looks different from last month.",
        ),
        asks=(
            "Please call me back.",
            "Can you check and get back to me?",
            "Who is the right person to talk to?",
        ),
    ),
    Scenario(
        label="technical",
        name="vague_broken",
        weight=VAGUE_WEIGHT,
        subjects=("Not working", "Problem since yesterday", "Help!", "Issue with the system"),
        openers=(
            "It is not working again since yesterday.",
            "Something is wrong with the system, nobody in the office can get in.",
            "The thing we set up last week stopped working.",
            "We have a problem with {product} again.",
        ),
        details=(
            "It worked fine until {weekday}.",
            "Nothing changed on our side as far as I know.",
            "My colleague says it's the same for her.",
            "We already tried turning it off and on again.",
        ),
        asks=("Can someone have a look?", "Please call me when you can.", "How do we fix this?"),
    ),
    Scenario(
        label="legal",
        name="vague_legal",
        weight=VAGUE_WEIGHT,
        subjects=(
            "For your legal team",
            "Regarding our agreement",
            "Important - please forward",
            "Our position",
        ),
        openers=(
            "Please forward this message to your legal department.",
            "We need to discuss the agreement between our companies.",
            "We do not agree with the way this matter has been handled.",
            "Our lawyers have asked us to contact you.",
        ),
        details=(
            "We would like to resolve this without escalating further.",
            "We have kept copies of all correspondence.",
            "The matter concerns {company}.",
            "We expect a written answer.",
        ),
        asks=(
            "Please confirm who is handling this on your side.",
            "We look forward to your written response.",
            "Please treat this as urgent.",
        ),
    ),
    Scenario(
        label="other",
        name="vague_note",
        weight=VAGUE_WEIGHT,
        subjects=("Quick note", "FYI", "Hello from {city}", "Following up"),
        openers=(
            "Just a quick note to follow up on our conversation.",
            "FYI, see below.",
            "I wanted to share some news from our side.",
            "It was good talking to you last week.",
        ),
        details=(
            "Things are busy here but going well.",
            "{colleague} says hello.",
            "We moved into the new building last month.",
            "I will be in {city} again in {month}.",
        ),
        asks=("Let's catch up soon.", "Speak soon.", "Have a great weekend."),
    ),
    # ---------------------------------------------------------------------
    # Golden-only crossover scenarios: document kinds the training set never
    # shows, worded mostly in another queue's vocabulary.
    # ---------------------------------------------------------------------
    Scenario(
        label="billing",
        name="card_declined",
        use="golden",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Payment failed",
            "Card declined at checkout",
            "Direct debit bounced",
            "Unable to pay",
        ),
        openers=(
            (
                "Our card payment for the renewal was declined, and the checkout page only says "
                "'error, try again later'."
            ),
            "The direct debit for this month bounced and we received an automatic warning email.",
            (
                "I tried to pay the open amount three times today, but every attempt fails at the "
                "last step."
            ),
            "Your system rejected our corporate card although it works everywhere else.",
        ),
        details=(
            "The error message mentions a failed 3-D Secure verification.",
            "We have enough funds, and our bank says no request reached them.",
            "The amount shown at checkout was {amount}.",
            "I do not want the account to be suspended because of this.",
            "The page froze in {browser} after I entered the card details.",
            "We can also pay by bank transfer if you send the details.",
        ),
        asks=(
            "How else can we pay so that the account stays active?",
            "Please retry the debit or send us the bank details.",
            "Can you confirm that no double payment will be taken?",
        ),
    ),
    Scenario(
        label="technical",
        name="invoice_rendering_bug",
        use="golden",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Generated invoices missing VAT line",
            "Rounding error in invoice totals",
            "Invoice template broken after update",
            "Currency symbol wrong on generated invoices",
        ),
        openers=(
            (
                "Since the update, the invoices our customers generate in {product} are missing "
                "the VAT line."
            ),
            (
                "Invoice totals produced by the billing module are off by one cent because of a "
                "rounding error."
            ),
            "Our custom invoice template no longer renders the logo and the payment terms.",
            (
                "Invoices created through your platform show the wrong currency symbol for our EUR "
                "customers."
            ),
        ),
        details=(
            (
                "This affects every invoice created since {date}, so it must be a change in the "
                "rendering code."
            ),
            "The amounts are correct in the database; only the generated PDF is wrong.",
            (
                "For example, three items of {amount_small} add up to a total that is one cent too "
                "high."
            ),
            "We checked the template settings and nothing was changed on our side.",
            "The problem appears in the API output as well as in the web interface.",
            "We are on version {version}.",
        ),
        asks=(
            "Can you fix the template engine so we can send correct invoices again?",
            "Please tell us when a patched version is available.",
            "Is there a workaround until the bug is fixed?",
        ),
    ),
    Scenario(
        label="legal",
        name="consumer_rights",
        use="golden",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Withdrawal from contract and refund",
            "Statutory rights - refund demanded",
            "Unlawful automatic renewal charge",
            "Formal complaint about charges",
        ),
        openers=(
            (
                "I am withdrawing from the contract within the statutory cooling-off period and "
                "demand a full refund."
            ),
            (
                "Charging our card for an automatic renewal without prior notice is not permitted "
                "under consumer protection law."
            ),
            (
                "The cancellation fee in your terms is an unfair contract term and therefore not "
                "binding."
            ),
            "I hereby formally reject the invoice {invoice_no} and reserve all my legal rights.",
        ),
        details=(
            "I was never informed of my right of withdrawal, so the period has not even started.",
            (
                "If the amount of {amount} is not refunded within {days} days, I will take the "
                "matter to the consumer arbitration board."
            ),
            (
                "Please note that I have kept copies of the order confirmation and the terms in "
                "force at the time."
            ),
            "The clause on automatic renewal was hidden in the small print and was never agreed.",
            "A copy of this letter goes to the consumer protection agency.",
            "I do not consent to any further debits from my account.",
        ),
        asks=(
            "Please confirm the cancellation and the refund in writing.",
            "I expect your written response within {days} days.",
            "Please confirm that no further claims will be made against me.",
        ),
    ),
    Scenario(
        label="other",
        name="internal_announcement",
        formats=MAILING_FORMATS,
        use="golden",
        weight=CROSSOVER_WEIGHT,
        subjects=(
            "Welcome our new colleagues",
            "IT week: new laptops",
            "Organisational update",
            "Farewell drinks on {weekday}",
        ),
        openers=(
            (
                "Please join me in welcoming {colleague}, who joins the finance team as our new "
                "accounts payable lead."
            ),
            (
                "Next week is IT week: everyone will receive a new laptop and a short security "
                "training."
            ),
            (
                "From {event_date}, the legal and procurement teams will sit together on the third "
                "floor."
            ),
            (
                "After eight years with us, {colleague} is moving on, and we are having farewell "
                "drinks on {weekday}."
            ),
        ),
        details=(
            "{colleague} previously worked on invoicing and payments at {company}.",
            "Please back up your files before the swap; the helpdesk will be on hand all week.",
            "The move should make contract reviews a little easier for everyone.",
            "There will be cake in the kitchen at 4 pm.",
            "Say hello when you see them in the office.",
            "A card is going round at reception if you would like to sign it.",
        ),
        asks=("Please give them a warm welcome.", "See you there!", "Thanks, everyone."),
    ),
)

FILLERS: tuple[str, ...] = (
    "I hope you are well.",
    "Sorry for the slow reply, it has been a busy week.",
    "I'm copying {colleague}, who is also working on this.",
    "I'll be out of the office from {event_date} until {event_date2}.",
    "Happy to jump on a call if that is easier.",
    "Thanks in advance for your help.",
    "Please reply to this email rather than to the no-reply address.",
    "Our reference number is {customer_id}.",
    "I tried to call earlier but could not get through.",
    "Looking forward to your reply.",
    "Apologies if this has already been addressed.",
    "This is the second time I'm writing about this.",
    "Let me know if anything is unclear.",
    "We appreciate your quick attention to this.",
    "Our team is based in {city}, so please keep the time difference in mind.",
    "I have attached the relevant documents for reference.",
)
TRANSITIONS: tuple[str, ...] = (
    "Separately, ",
    "On another note, ",
    "Also, ",
    "While I have you, ",
    "One more thing: ",
    "Unrelated, but ",
    "In addition, ",
    "By the way, ",
)
LETTER_GREETINGS: tuple[str, ...] = (
    "Dear {recipient},",
    "Dear Sir or Madam,",
    "Dear colleagues,",
    "To whom it may concern,",
    "Dear {recipient_first},",
)
LETTER_SIGN_OFFS: tuple[str, ...] = (
    "Yours sincerely,",
    "Kind regards,",
    "Yours faithfully,",
    "Best regards,",
)
GREETINGS: tuple[str, ...] = (
    "Hi {recipient_first},",
    "Hello,",
    "Dear {recipient},",
    "Dear Sir or Madam,",
    "Hi team,",
    "Good morning,",
    "Hello {recipient_first},",
    "To whom it may concern,",
    "Dear colleagues,",
    "Hi all,",
    "Dear {recipient_first},",
    "Hey,",
)
SIGN_OFFS: tuple[str, ...] = (
    "Best regards,",
    "Kind regards,",
    "Thanks,",
    "Cheers,",
    "Sincerely,",
    "Many thanks,",
    "Regards,",
    "Best,",
    "Thank you,",
    "With best wishes,",
    "Warm regards,",
    "All the best,",
)
DISCLAIMERS: tuple[str, ...] = (
    (
        "This e-mail and any attachments are confidential and intended solely for the addressee. "
        "If you have received it in error, please notify the sender and delete it."
    ),
    "Please consider the environment before printing this email.",
    "{company} is registered in {country}. Registered office: {street}, {city}.",
    "This message was scanned for viruses before sending.",
    "Disclaimer: the information in this message is provided for general purposes only.",
)
MAILBOXES: dict[str, str] = {
    "billing": "accounts@example.org",
    "technical": "support@example.org",
    "legal": "legal@example.org",
    "other": "info@example.org",
}
FORM_TOPICS: dict[str, str] = {
    "billing": "Billing",
    "technical": "Technical support",
    "legal": "Legal / privacy",
    "other": "General enquiry",
}

# ---------------------------------------------------------------------------
# Slot values
# ---------------------------------------------------------------------------

Slots = dict[str, str]
_SLOT_RE = re.compile(r"\{([a-z_0-9]+)\}")


def fill(template: str, slots: Slots) -> str:
    """Replace every ``{slot}`` in ``template`` with its value from ``slots``."""
    return _SLOT_RE.sub(lambda match: slots[match.group(1)], template)


def _format_date(day: dt.date, style: int) -> str:
    """Format ``day`` in one of four common business styles (locale-independent)."""
    month = MONTHS[day.month - 1]
    styles = (
        f"{day.day} {month} {day.year}",
        f"{month} {day.day}, {day.year}",
        day.isoformat(),
        f"{day.day:02d}/{day.month:02d}/{day.year}",
    )
    return styles[style % len(styles)]


def _money(value: float, slots: Slots) -> str:
    """Format an amount with the document's currency."""
    return f"{slots['_cur_prefix']}{value:,.2f}{slots['_cur_suffix']}"


def _company(rng: random.Random) -> str:
    """Return an invented company name."""
    return f"{rng.choice(COMPANY_STEMS)} {rng.choice(COMPANY_KINDS)}"


def _person(rng: random.Random) -> tuple[str, str]:
    """Return an invented (first, last) name pair."""
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def make_slots(rng: random.Random) -> Slots:
    """Draw one document's worth of consistent slot values."""
    first, last = _person(rng)
    r_first, r_last = _person(rng)
    c_first, c_last = _person(rng)
    city, country = rng.choice(CITIES)
    day = BASE_DATE + dt.timedelta(days=rng.randrange(0, 540))
    style = rng.randrange(4)
    prefix, suffix = rng.choice(CURRENCIES)
    year = day.year
    hour, minute = rng.randint(7, 17), rng.choice((0, 5, 10, 15, 20, 30, 40, 45, 50))
    domain = rng.choice(("example.com", "example.org"))
    amount = rng.randint(180, 48_000) + rng.randrange(100) / 100
    slots: Slots = {
        "_cur_prefix": prefix,
        "_cur_suffix": suffix,
        "_date_style": str(style),
        "_domain": domain,
        "_day": day.isoformat(),
        "sender": f"{first} {last}",
        "sender_first": first,
        "sender_email": f"{first}.{last}@{domain}".lower(),
        "sender_title": rng.choice(JOB_TITLES),
        "recipient": f"{r_first} {r_last}",
        "recipient_first": r_first,
        "colleague": f"{c_first} {c_last}",
        "company": _company(rng),
        "company2": _company(rng),
        "our_company": rng.choice(OUR_COMPANIES),
        "product": rng.choice(PRODUCTS),
        "plan": rng.choice(PLANS),
        "feature": rng.choice(FEATURES),
        "invoice_no": f"INV-{year}-{rng.randint(1000, 99999):05d}",
        "invoice_no2": f"INV-{year}-{rng.randint(1000, 99999):05d}",
        "order_no": f"SO-{rng.randint(100000, 999999)}",
        "po_no": f"PO{rng.randint(40000, 89999)}",
        "ticket_no": f"#{rng.randint(10000, 99999)}",
        "contract_no": f"MSA-{year - rng.randint(0, 3)}-{rng.randint(10, 999):03d}",
        "case_no": f"{rng.randint(1, 9)} O {rng.randint(100, 999)}/{str(year)[2:]}",
        "customer_id": f"CUST-{rng.randint(10000, 99999)}",
        "vat_id": f"XX{rng.randint(100_000_000, 999_999_999)}",
        "iban": f"XX{rng.randint(10, 99)} EXMP 0000 {rng.randint(1000, 9999)} 00",
        "last4": f"{rng.randint(0, 9999):04d}",
        "amount": _money(amount, {"_cur_prefix": prefix, "_cur_suffix": suffix}),
        "amount_small": _money(
            rng.randint(15, 900) + rng.randrange(100) / 100,
            {"_cur_prefix": prefix, "_cur_suffix": suffix},
        ),
        "percent": f"{rng.choice((5, 10, 12, 15, 19, 20, 21, 25))}%",
        "days": str(rng.choice((7, 10, 14, 30, 45, 60))),
        "years": str(rng.choice((2, 3, 5))),
        "users": str(rng.choice((8, 12, 25, 40, 60, 150, 300))),
        "users2": str(rng.choice((5, 10, 20))),
        "minutes": str(rng.choice((15, 20, 30, 45, 60, 90))),
        "date": _format_date(day, style),
        "date2": _format_date(day + dt.timedelta(days=rng.randint(3, 40)), style),
        "event_date": _format_date(day + dt.timedelta(days=rng.randint(12, 45)), style),
        "event_date2": _format_date(day + dt.timedelta(days=rng.randint(46, 60)), style),
        "due_date": _format_date(day + dt.timedelta(days=rng.choice((14, 30))), style),
        "month": MONTHS[day.month - 1],
        "year": str(year),
        "year_next": str(year + 1),
        "year_old": str(year - rng.randint(5, 20)),
        "weekday": rng.choice(WEEKDAYS),
        "time": f"{hour:02d}:{minute:02d}",
        "time2": f"{min(hour + rng.randint(1, 3), 18):02d}:{rng.choice((0, 15, 30, 45)):02d}",
        "error_code": f"{rng.choice(('E', 'ERR-', 'AUTH-', 'SYNC-'))}{rng.randint(100, 9999)}",
        "http_error": rng.choice(HTTP_ERRORS),
        "endpoint": rng.choice(ENDPOINTS),
        "version": f"{rng.randint(2, 9)}.{rng.randint(0, 14)}.{rng.randint(0, 9)}",
        "browser": rng.choice(BROWSERS),
        "os": rng.choice(SYSTEMS),
        "mobile_os": rng.choice(("iOS 17", "Android 14", "iPadOS 17")),
        "service": rng.choice(SERVICES),
        "region": rng.choice(("EU-West", "EU-Central", "US-East", "UK-South")),
        "request_id": f"req_{rng.getrandbits(48):012x}",
        "law": rng.choice(PRIVACY_LAWS),
        "law_firm": rng.choice(LAW_FIRMS),
        "court": rng.choice(COURTS),
        "clause": f"{rng.randint(2, 18)}.{rng.randint(1, 6)}",
        "reg_no": f"{rng.randint(1000000, 9999999)}",
        "event": rng.choice(EVENTS),
        "city": city,
        "country": country,
        "street": f"{rng.randint(1, 180)} {rng.choice(STREETS)}",
        "department": rng.choice(DEPARTMENTS),
        "room": f"{rng.choice('ABC')}{rng.randint(1, 4)}.{rng.randint(1, 20):02d}",
        "job_title": rng.choice(JOB_TITLES),
    }
    return slots


# ---------------------------------------------------------------------------
# Multi-line blocks (tables, logs, stack traces, quoted clauses, agendas)
# ---------------------------------------------------------------------------


def _block_invoice_table(rng: random.Random, slots: Slots) -> str:
    """Return a small invoice with line items, subtotal, VAT and total."""
    items = [
        (
            f"{slots['product']} {slots['plan']} licence",
            rng.randint(1, 40),
            rng.choice((19.0, 29.0, 49.0, 79.0)),
        ),
        ("Premium support (monthly)", 1, rng.choice((150.0, 250.0, 480.0))),
        ("Onboarding workshop", 1, rng.choice((600.0, 900.0, 1200.0))),
        ("Additional storage 100 GB", rng.randint(1, 5), 12.5),
        ("Consulting hours", rng.randint(2, 16), rng.choice((95.0, 120.0, 140.0))),
    ]
    chosen = rng.sample(items, rng.randint(1, 3))
    rate = rng.choice((0, 19, 20, 21))
    lines = [
        (
            f"Invoice no.: {slots['invoice_no']}   Invoice date: {slots['date']}   Due: "
            f"{slots['due_date']}"
        ),
        f"{'Description':<34}{'Qty':>5}{'Unit price':>14}{'Total':>14}",
    ]
    subtotal = 0.0
    for desc, qty, price in chosen:
        total = qty * price
        subtotal += total
        lines.append(f"{desc:<34}{qty:>5}{price:>14,.2f}{total:>14,.2f}")
    vat = round(subtotal * rate / 100, 2)
    lines += [
        f"{'Subtotal':<53}{_money(subtotal, slots):>14}",
        f"{f'VAT {rate}%':<53}{_money(vat, slots):>14}",
        f"{'Total due':<53}{_money(subtotal + vat, slots):>14}",
    ]
    return "\n".join(lines)


def _block_open_items(rng: random.Random, slots: Slots) -> str:
    """Return a short statement of open invoices."""
    lines = [f"{'Invoice':<18}{'Due date':<20}{'Amount':>14}  Status"]
    for _ in range(rng.randint(2, 4)):
        number = f"INV-{slots['year']}-{rng.randint(1000, 99999):05d}"
        due = _format_date(
            BASE_DATE + dt.timedelta(days=rng.randrange(0, 500)), int(slots["_date_style"])
        )
        amount = _money(rng.randint(90, 9000) + rng.randrange(100) / 100, slots)
        status = rng.choice(("overdue", "open", "partially paid", "overdue"))
        lines.append(f"{number:<18}{due:<20}{amount:>14}  {status}")
    return "\n".join(lines)


def _block_console_log(rng: random.Random, slots: Slots) -> str:
    """Return a browser console error excerpt."""
    prop = rng.choice(("map", "length", "id", "toFixed"))
    component = rng.choice(("ReportTable", "ExportButton", "RecordForm", "SearchResults"))
    return "\n".join(
        (
            f"Uncaught TypeError: Cannot read properties of undefined (reading '{prop}')",
            (
                f"    at {component}.render (app.{rng.getrandbits(20):05x}.js"
                f":1:{rng.randint(1000, 99999)})"
            ),
            f"    at renderWithHooks (vendor.js:2:{rng.randint(1000, 99999)})",
            f"    at updateFunctionComponent (vendor.js:2:{rng.randint(1000, 99999)})",
            f"[{slots['error_code']}] request failed: GET {slots['endpoint']}",
        ),
    )


def _block_server_log(rng: random.Random, slots: Slots) -> str:
    """Return a few timestamped log lines from a failing service."""
    hour = int(slots["time"][:2])
    worker = rng.choice(("sync-worker", "api-gateway", "auth", "exporter"))
    lines = []
    messages = (
        "ERROR upstream timed out (30000 ms) while reading response header",
        "WARN  retry {n}/5 for job {job}",
        "ERROR connection reset by peer",
        f"ERROR {slots['http_error']} from {slots['endpoint']}",
        "INFO  circuit breaker opened",
        "WARN  queue depth above threshold: {job}",
    )
    for index in range(rng.randint(3, 6)):
        message = rng.choice(messages).format(n=index + 1, job=rng.randint(1000, 9999))
        lines.append(
            f"{slots['_day']}T{hour:02d}:{index * 7 % 60:02d}:{rng.randint(0, 59):02d}Z "
            f"[{worker}] {message}"
        )
    return "\n".join(lines)


def _block_http_exchange(rng: random.Random, slots: Slots) -> str:
    """Return a failing HTTP request and response."""
    method = rng.choice(("GET", "POST", "PUT"))
    status = slots["http_error"]
    reason = status.split(" ", 1)[1].lower()
    return "\n".join(
        (
            f"{method} {slots['endpoint']} HTTP/1.1",
            "Host: api.example.com",
            "Authorization: Bearer ****redacted****",
            "",
            f"HTTP/1.1 {status}",
            (
                f'{{"error": {{"code": "{slots["error_code"]}", "message": "{reason}",'
                f' "request_id": "{slots["request_id"]}"}}}}'
            ),
        ),
    )


def _block_python_trace(rng: random.Random, slots: Slots) -> str:
    """Return a Python traceback from an export job."""
    module = slots["product"].lower()
    error = rng.choice(
        (
            "TypeError: unsupported operand type(s) for *: 'NoneType' and 'int'",
            "KeyError: 'customer_id'",
            (
                "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xe9 in position 14: invalid "
                "continuation byte"
            ),
            "ConnectionResetError: [Errno 104] Connection reset by peer",
        ),
    )
    return "\n".join(
        (
            "Traceback (most recent call last):",
            f'  File "/opt/{module}/export/run.py", line {rng.randint(40, 120)}, in main',
            "    rows = exporter.fetch(batch_size=500)",
            f'  File "/opt/{module}/export/exporter.py", line {rng.randint(120, 400)}, in fetch',
            "    return [self._convert(row) for row in cursor]",
            f'  File "/opt/{module}/export/exporter.py", line {rng.randint(400, 600)}, in _convert',
            '    total = row["quantity"] * row["unit_price"]',
            error,
        ),
    )


def _block_java_trace(rng: random.Random, slots: Slots) -> str:
    """Return a Java stack trace from a worker thread."""
    package = f"com.example.{slots['product'].lower()}"
    return "\n".join(
        (
            (
                f'Exception in thread "export-worker-{rng.randint(1, 8)}" '
                'java.lang.NullPointerException: Cannot invoke "String.trim()" because '
                '"customer.name" is null'
            ),
            (
                f"    at {package}.export.CustomerMapper.map"
                f"(CustomerMapper.java:{rng.randint(20, 99)})"
            ),
            f"    at {package}.export.ExportJob.run(ExportJob.java:{rng.randint(100, 300)})",
            (
                "    at "
                "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1136)"
            ),
            "    at java.base/java.lang.Thread.run(Thread.java:833)",
        ),
    )


_CLAUSES: tuple[tuple[str, str], ...] = (
    (
        "Termination",
        (
            "Either party may terminate this Agreement for convenience by giving not less than "
            "ninety (90) days' written notice to the other party."
        ),
    ),
    (
        "Limitation of Liability",
        (
            "Neither party shall be liable for any indirect or consequential loss, and each "
            "party's total liability shall not exceed the fees paid in the twelve (12) months "
            "preceding the claim."
        ),
    ),
    (
        "Confidentiality",
        (
            "The Receiving Party shall keep the Confidential Information strictly confidential and "
            "shall not disclose it to any third party without the prior written consent of the "
            "Disclosing Party."
        ),
    ),
    (
        "Governing Law",
        (
            "This Agreement shall be governed by and construed in accordance with the laws of the "
            "chosen jurisdiction, and the parties submit to the exclusive jurisdiction of its "
            "courts."
        ),
    ),
)


def _block_clause_quote(rng: random.Random, slots: Slots) -> str:
    """Return a quoted contract clause."""
    heading, body = rng.choice(_CLAUSES)
    return f'Clause {slots["clause"]} ("{heading}") currently reads:\n    "{body}"'


def _block_newsletter_sections(rng: random.Random, slots: Slots) -> str:
    """Return a newsletter table of contents."""
    sections = [
        "Company news",
        "Upcoming events",
        "Tip of the month",
        f"Customer story: {slots['company2']}",
        "Job openings",
        "From the blog",
    ]
    chosen = rng.sample(sections, rng.randint(3, 5))
    return "IN THIS ISSUE\n" + "\n".join(f"  * {item}" for item in chosen)


def _block_agenda(rng: random.Random, slots: Slots) -> str:
    """Return a short meeting or event agenda."""
    items = [
        "Welcome and coffee",
        "Review of the last quarter",
        "Break",
        "Planning for the next quarter",
        "Lunch",
        f"Guest talk by {slots['colleague']}",
        "Open questions",
        "Drinks",
    ]
    hour = rng.randint(9, 14)
    lines = ["Agenda:"]
    for index, item in enumerate(rng.sample(items, rng.randint(3, 5))):
        lines.append(f"  {hour + index:02d}:{rng.choice(('00', '30')):s}  {item}")
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[random.Random, Slots], str]] = {
    "invoice_table": _block_invoice_table,
    "open_items": _block_open_items,
    "console_log": _block_console_log,
    "server_log": _block_server_log,
    "http_exchange": _block_http_exchange,
    "python_trace": _block_python_trace,
    "java_trace": _block_java_trace,
    "clause_quote": _block_clause_quote,
    "newsletter_sections": _block_newsletter_sections,
    "agenda": _block_agenda,
}

# ---------------------------------------------------------------------------
# Document composition
# ---------------------------------------------------------------------------

LENGTHS: tuple[int, ...] = tuple(range(2, 16))
LENGTH_WEIGHTS: tuple[int, ...] = (4, 7, 9, 10, 10, 9, 8, 7, 6, 5, 4, 3, 2, 2)
FORMATS: tuple[str, ...] = ("email", "letter", "webform", "portal", "plain")
FORMAT_WEIGHTS: tuple[int, ...] = (50, 14, 12, 10, 14)
FILLER_RATE = 0.18
BLOCK_RATE = 0.45
_HELD_OUT_EVERY = 4
GOLDEN_NOVEL_RATE = 0.8
SECONDARY_SHARE = (0.38, 0.5)
STALE_SUBJECT_RATE = 0.35
OLD_THREAD_RATE = 0.25
TYPO_RATE = 0.3
LOWERCASE_RATE = 0.04
GREET_RATE = 0.85
GREET_RATE_SHORT = 0.55
MAILBOX_MATCH_RATE = 0.3
FORM_TOPIC_MATCH_RATE = 0.4
SHORT_DOC = 3


def partition(items: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split phrasings into (shared, golden-only): every fourth one is held out of training."""
    shared = tuple(
        item for index, item in enumerate(items) if index % _HELD_OUT_EVERY != _HELD_OUT_EVERY - 1
    )
    held = tuple(
        item for index, item in enumerate(items) if index % _HELD_OUT_EVERY == _HELD_OUT_EVERY - 1
    )
    return shared, held


def pick(rng: random.Random, items: Sequence[str], split: Split) -> str:
    """Pick one phrasing; training never sees held-out ones, golden prefers them."""
    shared, held = partition(items)
    if split == "train" or not held:
        return rng.choice(shared or tuple(items))
    if rng.random() < GOLDEN_NOVEL_RATE:
        return rng.choice(held)
    return rng.choice(tuple(items))


def draw_order(rng: random.Random, items: Sequence[str], split: Split) -> list[str]:
    """Return phrasings in the order a document uses them (no repeats)."""
    shared, held = (list(part) for part in partition(items))
    rng.shuffle(shared)
    if split == "train":
        return shared
    rng.shuffle(held)
    order: list[str] = []
    while shared or held:
        take_held = bool(held) and (not shared or rng.random() < GOLDEN_NOVEL_RATE)
        order.append(held.pop() if take_held else shared.pop())
    return order


def scenarios_for(label: str, split: Split) -> tuple[Scenario, ...]:
    """Return the scenarios of ``label`` that may appear in ``split``."""
    return tuple(s for s in SCENARIOS if s.label == label and s.use in ("both", split))


def choose_scenario(rng: random.Random, label: str, split: Split) -> Scenario:
    """Draw a scenario of ``label`` for ``split``, honouring scenario weights."""
    candidates = scenarios_for(label, split)
    return rng.choices(candidates, weights=[s.weight for s in candidates])[0]


@dataclass(frozen=True)
class Part:
    """A paragraph-level piece of a body: prose sentences or a pre-formatted block."""

    sentences: tuple[str, ...]
    is_block: bool = False


def _sentences(
    rng: random.Random, scenario: Scenario, split: Split, count: int, *, with_ask: bool
) -> list[str]:
    """Pick ``count`` sentences from a scenario: an opener, details, maybe an ask."""
    opener = pick(rng, scenario.openers, split)
    details = draw_order(rng, scenario.details, split)
    chosen = [opener]
    want_ask = with_ask and count >= 2
    middle = count - 1 - int(want_ask)
    for _ in range(middle):
        if details and rng.random() >= FILLER_RATE:
            chosen.append(details.pop(0))
        else:
            chosen.append(pick(rng, FILLERS, split))
    if want_ask:
        chosen.append(pick(rng, scenario.asks, split))
    return chosen


def _group(rng: random.Random, sentences: Sequence[str]) -> list[Part]:
    """Group sentences into paragraphs of one to four sentences."""
    parts: list[Part] = []
    index = 0
    while index < len(sentences):
        size = rng.choice((1, 2, 2, 3, 3, 4))
        parts.append(Part(tuple(sentences[index : index + size])))
        index += size
    return parts


def compose_body(
    rng: random.Random,
    scenario: Scenario,
    split: Split,
    count: int,
    secondary: Scenario | None = None,
) -> list[Part]:
    """Compose the body of a document; ``secondary`` mixes in a minority topic."""
    secondary_count = 0
    if secondary is not None:
        count = max(count, 4)
        share = rng.uniform(*SECONDARY_SHARE)
        # Strictly a minority: the label's own topic must stay dominant.
        secondary_count = max(1, min((count - 1) // 2, round(count * share)))
    primary = _sentences(rng, scenario, split, count - secondary_count, with_ask=True)
    ask = primary.pop() if len(primary) > 2 else None
    parts = _group(rng, primary)
    if scenario.blocks and count >= 3 and rng.random() < BLOCK_RATE:
        parts.insert(1, Part((rng.choice(scenario.blocks),), is_block=True))
    if secondary is not None:
        extra = _sentences(rng, secondary, split, secondary_count, with_ask=secondary_count > 2)
        if rng.random() < 0.6:
            lead = extra[0]
            extra[0] = rng.choice(TRANSITIONS) + lead[0].lower() + lead[1:]
        parts.insert(rng.randint(1, len(parts)), Part(tuple(extra)))
    if ask is not None:
        parts.append(Part((ask,)))
    return parts


# ---------------------------------------------------------------------------
# Rendering: wrap a body into an e-mail, letter, web form, portal ticket, ...
# ---------------------------------------------------------------------------


def _weekday_name(day: dt.date) -> str:
    """Return the short English weekday name of ``day``."""
    return ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[day.weekday()]


def _sent_day(rng: random.Random, slots: Slots) -> dt.date:
    """Return the day a document was sent: a few days after its reference date."""
    return dt.date.fromisoformat(slots["_day"]) + dt.timedelta(days=rng.randint(1, 8))


def _rfc_date(rng: random.Random, slots: Slots) -> str:
    """Return an RFC 2822 style Date header value."""
    day = _sent_day(rng, slots)
    month = MONTHS[day.month - 1][:3]
    zone = rng.choice(("+0000", "+0100", "+0200", "-0500"))
    clock = f"{slots['time']}:{rng.randint(0, 59):02d}"
    return f"{_weekday_name(day)}, {day.day} {month} {day.year} {clock} {zone}"


def _signature(rng: random.Random, slots: Slots) -> list[str]:
    """Return the signature lines."""
    lines = [slots["sender"]]
    if rng.random() < 0.7:
        lines.append(slots["sender_title"])
    if rng.random() < 0.8:
        lines.append(slots["company"])
    if rng.random() < 0.35:
        lines.append(f"Tel. +1 555 01{rng.randint(0, 99):02d}")
    if rng.random() < 0.25:
        lines.append(slots["sender_email"])
    return lines


def _render_parts(rng: random.Random, parts: Sequence[Part], slots: Slots, typos: int = 0) -> str:
    """Render body parts as paragraphs, expanding blocks; typos go into prose only."""
    paragraphs: list[str] = []
    prose: list[int] = []
    for part in parts:
        if part.is_block:
            paragraphs.append(BLOCKS[part.sentences[0]](rng, slots))
        else:
            prose.append(len(paragraphs))
            paragraphs.append(" ".join(fill(sentence, slots) for sentence in part.sentences))
    for _ in range(typos if prose else 0):
        index = rng.choice(prose)
        paragraphs[index] = add_typos(rng, paragraphs[index], 1)
    return "\n\n".join(paragraphs)


@dataclass(frozen=True)
class Draft:
    """Everything needed to render one document."""

    label: str
    subject: str
    body: str
    slots: Slots
    short: bool
    split: Split


def _greeted(
    rng: random.Random, draft: Draft, greetings: Sequence[str] = GREETINGS, *, always: bool = False
) -> str:
    """Return the body, usually preceded by a greeting line."""
    if not always and rng.random() >= (GREET_RATE_SHORT if draft.short else GREET_RATE):
        return draft.body
    return f"{fill(pick(rng, greetings, draft.split), draft.slots)}\n\n{draft.body}"


def _closing(rng: random.Random, draft: Draft, sign_offs: Sequence[str] = SIGN_OFFS) -> str:
    """Return a sign-off line followed by the signature."""
    signature = "\n".join(_signature(rng, draft.slots))
    return f"{pick(rng, sign_offs, draft.split)}\n{signature}"


def _render_email(rng: random.Random, draft: Draft) -> str:
    """Render as an e-mail with headers."""
    slots = draft.slots
    mailboxes = tuple(MAILBOXES.values())
    mailbox = MAILBOXES[draft.label] if rng.random() < MAILBOX_MATCH_RATE else rng.choice(mailboxes)
    headers = (
        f"From: {slots['sender']} <{slots['sender_email']}>",
        f"To: {mailbox}",
        f"Subject: {draft.subject}",
        f"Date: {_rfc_date(rng, slots)}",
    )
    return "\n".join(headers) + f"\n\n{_greeted(rng, draft)}\n\n{_closing(rng, draft)}\n"


_REPLY_PREFIX_RE = re.compile(r"^(?:\[EXTERNAL\] )?(?:RE|Fwd): ")


def _render_letter(rng: random.Random, draft: Draft) -> str:
    """Render as a formal letter with letterhead and reference line."""
    slots = draft.slots
    sent = _format_date(_sent_day(rng, slots), int(slots["_date_style"]))
    head = (
        slots["company"],
        slots["street"],
        f"{rng.randint(1000, 99999)} {slots['city']}",
        slots["country"],
        "",
        slots["our_company"],
        f"Attn: {rng.choice(DEPARTMENTS)}",
        "",
        f"{slots['city']}, {sent}",
        "",
        f"Re: {_REPLY_PREFIX_RE.sub('', draft.subject)}",
    )
    body = _greeted(rng, draft, LETTER_GREETINGS, always=True)
    return "\n".join(head) + f"\n\n{body}\n\n{_closing(rng, draft, LETTER_SIGN_OFFS)}\n"


def _render_webform(rng: random.Random, draft: Draft) -> str:
    """Render as a website contact-form submission."""
    slots = draft.slots
    topics = tuple(FORM_TOPICS.values())
    topic = FORM_TOPICS[draft.label] if rng.random() < FORM_TOPIC_MATCH_RATE else rng.choice(topics)
    head = (
        "New message from the website contact form",
        f"Name: {slots['sender']}",
        f"Email: {slots['sender_email']}",
        f"Company: {slots['company']}",
        f"Topic: {topic}",
        f"Subject: {draft.subject}",
        "Message:",
    )
    return "\n".join(head) + f"\n{draft.body}\n"


def _render_portal(rng: random.Random, draft: Draft) -> str:
    """Render as a request submitted through a customer portal."""
    slots = draft.slots
    sent = _sent_day(rng, slots).isoformat()
    head = (
        f"Customer portal - new request {slots['ticket_no']}",
        f"Submitted: {sent} {slots['time']}",
        f"Customer: {slots['company']} ({slots['customer_id']})",
        f"Contact: {slots['sender']}",
        f"Subject: {draft.subject}",
    )
    return "\n".join(head) + f"\n\n{_greeted(rng, draft)}\n\n{slots['sender']}\n"


def _render_plain(rng: random.Random, draft: Draft) -> str:
    """Render as plain text: subject line, body, sign-off (e.g. text pulled from a PDF)."""
    return f"{draft.subject}\n\n{_greeted(rng, draft)}\n\n{_closing(rng, draft)}\n"


RENDERERS: dict[str, Callable[[random.Random, Draft], str]] = {
    "email": _render_email,
    "letter": _render_letter,
    "webform": _render_webform,
    "portal": _render_portal,
    "plain": _render_plain,
}


# ---------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------

# Plain lower-case words only: never touch e-mail addresses, domains, paths or URLs.
_WORD_RE = re.compile(r"(?<![\w@./:-])(?!example)[a-z]{5,}(?![\w@/:])(?!\.\w)")
_MIN_TYPO_WORD = 5


def add_typos(rng: random.Random, text: str, count: int) -> str:
    """Introduce ``count`` plausible typos into lower-case words of ``text``."""
    for _ in range(count):
        words = list(_WORD_RE.finditer(text))
        if not words:
            break
        match = rng.choice(words)
        word = match.group(0)
        pos = rng.randint(1, len(word) - 2)
        kind = rng.randrange(3)
        if kind == 0:
            typo = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
        elif kind == 1:
            typo = word[:pos] + word[pos + 1 :]
        else:
            typo = word[:pos] + word[pos] + word[pos:]
        text = text[: match.start()] + typo + text[match.end() :]
    return text


_QUOTED: tuple[str, ...] = (
    "Thank you for contacting us. We have received your message and will get back to you shortly.",
    "Could you send us a few more details so that we can look into this?",
    "As discussed on the phone, I am sending a short summary below.",
    "We are looking into it and will update you by the end of the day.",
)


def quote_old_thread(
    rng: random.Random, text: str, old: Scenario, split: Split, slots: Slots
) -> str:
    """Append a quoted earlier message on another topic (a reply on an old thread)."""
    count = rng.randint(2, 5)
    lines = [fill(line, slots) for line in _sentences(rng, old, split, count, with_ask=True)]
    address = f"{slots['recipient_first'].lower()}@example.org"
    header = f"\nOn {slots['date']}, {slots['recipient']} <{address}> wrote:\n"
    return text + header + "".join(f"> {line}\n" for line in lines)


def add_noise(rng: random.Random, text: str, slots: Slots) -> str:
    """Apply realistic noise: quoted replies, disclaimers, forwards, mobile footers."""
    if rng.random() < 0.06:
        text += "\nSent from my phone\n"
    if rng.random() < 0.14:
        text += "\n--\n" + fill(rng.choice(DISCLAIMERS), slots) + "\n"
    if rng.random() < 0.1:
        quoted = rng.sample(_QUOTED, 2)
        text += f"\nOn {slots['date']}, {slots['recipient']} <team@example.org> wrote:\n"
        text += "".join(f"> {line}\n" for line in quoted)
    if rng.random() < 0.06:
        address = slots["colleague"].replace(" ", ".").lower()
        text = (
            "---------- Forwarded message ---------\n"
            f"From: {slots['colleague']} <{address}@{slots['_domain']}>\n\n" + text
        )
    return text


def _subject(rng: random.Random, scenario: Scenario, split: Split, slots: Slots) -> str:
    """Return a subject line, sometimes with reply/forward/external prefixes."""
    subject = fill(pick(rng, scenario.subjects, split), slots)
    roll = rng.random()
    if roll < 0.12:
        subject = "RE: " + subject
    elif roll < 0.18:
        subject = "Fwd: " + subject
    if rng.random() < 0.1:
        subject = "[EXTERNAL] " + subject
    return subject


def generate_document(rng: random.Random, label: str, split: Split, *, ambiguous: bool) -> str:
    """Generate one synthetic document of ``label``; ambiguous ones mix in a second topic."""
    scenario = choose_scenario(rng, label, split)
    secondary: Scenario | None = None
    if ambiguous:
        other_label = rng.choice([name for name in LABELS if name != label])
        secondary = choose_scenario(rng, other_label, split)
    slots = make_slots(rng)
    count = rng.choices(LENGTHS, weights=LENGTH_WEIGHTS)[0]
    parts = compose_body(rng, scenario, split, count, secondary)
    typos = rng.randint(1, 3) if rng.random() < TYPO_RATE else 0
    body = _render_parts(rng, parts, slots, typos)
    if rng.random() < LOWERCASE_RATE:  # a hasty message typed all in lower case
        body = body.lower()
    subject = _subject(rng, scenario, split, slots)
    if secondary is not None and rng.random() < STALE_SUBJECT_RATE:
        # A reply whose thread subject still names the earlier (secondary) topic.
        subject = "RE: " + _subject(rng, secondary, split, slots).removeprefix("RE: ")
    draft = Draft(label, subject, body, slots, short=count <= SHORT_DOC, split=split)
    fmt = rng.choices(FORMATS, weights=FORMAT_WEIGHTS)[0]
    if scenario.formats and fmt not in scenario.formats:
        fmt = rng.choice(scenario.formats)
    text = RENDERERS[fmt](rng, draft)
    if fmt == "email" and rng.random() < OLD_THREAD_RATE:
        old_label = rng.choice([name for name in LABELS if name != label])
        text = quote_old_thread(rng, text, choose_scenario(rng, old_label, split), split, slots)
    return add_noise(rng, text, slots)


def generate_split(seed: int, split: Split, per_label: int) -> dict[str, bytes]:
    """Generate ``per_label`` documents per label for ``split`` as relative path -> bytes."""
    files: dict[str, bytes] = {}
    for label in LABELS:
        rng = random.Random(f"triage-sample/{seed}/{split}/{label}")
        ambiguous = set(rng.sample(range(per_label), round(per_label * AMBIGUOUS_RATE)))
        for index in range(per_label):
            text = generate_document(rng, label, split, ambiguous=index in ambiguous)
            files[f"{split}/{label}/{index + 1:04d}.txt"] = text.encode("utf-8")
    return files


# ---------------------------------------------------------------------------
# Inbox: hand-written demo uploads (fixed text; invented names only)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxDoc:
    """A demo document for the inbox, with the queue a human would choose."""

    name: str
    expected: str
    note: str
    title: str
    text: str
    scanned: bool = False

    @property
    def is_pdf(self) -> bool:
        """Return whether the document is written as a PDF."""
        return self.name.endswith(".pdf")


_NDA_BODY = """MUTUAL NON-DISCLOSURE AGREEMENT

This Mutual Non-Disclosure Agreement (the "Agreement") is entered into on 4 March 2024
between Kestrel Analytics B.V., Canal Side 12, 3011 Rotterdam, Netherlands ("Kestrel"),
and Triage Demo Corp, 88 Market Square, Leeds, United Kingdom (the "Company"), each a
"Party".

1. Purpose The Parties wish to evaluate a possible collaboration on demand forecasting
(the "Purpose") and will for that reason exchange information that is confidential.

2. Confidential Information "Confidential Information" means all technical, commercial
and financial information disclosed by one Party (the "Disclosing Party") to the other
(the "Receiving Party"), whether in writing, orally or by inspection, that is marked as
confidential or would reasonably be understood to be confidential.

3. Exclusions Confidential Information does not include information that (a) is or
becomes publicly available through no fault of the Receiving Party; (b) was lawfully
known to the Receiving Party before disclosure; (c) is independently developed without
use of the Confidential Information; or (d) is lawfully received from a third party
without a duty of confidentiality.

4. Obligations The Receiving Party shall use the Confidential Information solely for the
Purpose, shall protect it with at least the degree of care it uses for its own
confidential information, and shall not disclose it to any third party other than its
employees, affiliates and professional advisers who need to know it for the Purpose and
are bound by equivalent obligations.

5. Compelled Disclosure If the Receiving Party is required by law, court order or
subpoena to disclose Confidential Information, it shall, where legally permitted, give
the Disclosing Party prompt written notice so that the Disclosing Party may seek a
protective order.

6. Return and Destruction On written request, the Receiving Party shall promptly return
or destroy all Confidential Information and confirm the destruction in writing, except
for copies kept in routine backups or required to be retained by law.

7. Term This Agreement applies to disclosures made within two (2) years of its date. The
obligations of confidentiality survive for three (3) years after the last disclosure.

8. No Licence Nothing in this Agreement grants any licence under any patent, trademark,
copyright or other intellectual property right, except the limited right to use
Confidential Information for the Purpose.

9. Remedies Each Party acknowledges that damages may not be an adequate remedy for a
breach of this Agreement and that the Disclosing Party may seek injunctive relief in
addition to any other remedy.

10. Governing Law and Jurisdiction
This Agreement is governed by the laws of the Netherlands. The courts of Rotterdam have
exclusive jurisdiction over any dispute arising out of or in connection with it.

Signed for and on behalf of Kestrel Analytics B.V.

Name: Lena Achterberg
Title: Legal Counsel
Date: ____________________

Signed for and on behalf of Triage Demo Corp

Name: ____________________
Title: ____________________
Date: ____________________
"""

INBOX: tuple[InboxDoc, ...] = (
    InboxDoc(
        name="invoice-overdue-acme.pdf",
        expected="billing",
        note="overdue invoice reminder with a statement of open items",
        title="Payment reminder - invoice INV-2024-04817",
        text="""Acme Office Supplies Ltd
14 Mill Lane
LS1 4AB Leeds
United Kingdom

Triage Demo Corp
Attn: Accounts Payable

Leeds, 18 April 2024

Re: Second reminder - invoice INV-2024-04817

Dear Sir or Madam,

According to our records, invoice INV-2024-04817 dated 1 March 2024 for GBP 2,418.60 is
now 18 days overdue. The payment terms agreed in your customer account were 30 days net.

Invoice            Invoice date     Due date          Amount      Status
INV-2024-04817     1 March 2024     31 March 2024     2,418.60    overdue
INV-2024-05102     15 March 2024    14 April 2024       312.00    overdue

Total outstanding: GBP 2,730.60

If you have already paid, please disregard this reminder and send us the remittance
advice so that we can allocate the payment. Otherwise please transfer the outstanding
balance to the bank account shown on the invoice within the next 7 days, quoting the
invoice numbers as payment reference. A late payment fee may be added to balances that
remain unpaid after that date.

Kind regards,

Wendy Holloway
Credit Control
Acme Office Supplies Ltd
accounts@example.com
""",
    ),
    InboxDoc(
        name="api-outage-report.txt",
        expected="technical",
        note="production outage with HTTP 503 errors and log excerpt",
        title="API outage report",
        text="""From: Tariq Okafor <tariq.okafor@example.com>
To: support@example.org
Subject: URGENT: public API returning 503 since 08:40 (EU-West)
Date: Tue, 12 Mar 2024 09:12:44 +0100

Hi support team,

since 08:40 CET every call from our warehouse integration to /api/v2/orders fails with
503 Service Unavailable. Nothing changed on our side; the last successful sync was at
08:37. Your status page still says all systems operational.

Excerpt from our connector log:

2024-03-12T07:40:03Z ERROR [api-gateway] 503 Service Unavailable from /api/v2/orders
2024-03-12T07:40:33Z WARN  [api-gateway] retry 1/5 for job 8812
2024-03-12T07:41:03Z WARN  [api-gateway] retry 2/5 for job 8812
2024-03-12T07:42:03Z ERROR [api-gateway] circuit breaker opened

About 40 pickers are idle because no new orders come through, so this is a priority one
incident for us. Please tell us whether this is a wider outage and when you expect the
service to be restored. Our incident reference is #48213.

Thanks,
Tariq Okafor
IT Operations, Northfield Logistics
""",
    ),
    InboxDoc(
        name="refund-request-double-charge.txt",
        expected="billing",
        note="customer charged twice, asks for a refund",
        title="Refund request",
        text="""From: Sofia Marsh <sofia.marsh@example.org>
To: accounts@example.org
Subject: Charged twice for our March subscription - refund please
Date: Mon, 8 Apr 2024 14:03:10 +0200

Hello,

our company card was charged twice for the FlowDesk Business subscription in March: two
debits of EUR 348.00 each on 1 March 2024, both with the reference INV-2024-03391. Our
agreed price is EUR 348.00 per month for 12 seats, so one of the two payments is a
duplicate.

Could you please refund the duplicate payment to the original card, or issue a credit
note against the April invoice if that is easier for you? I have attached the card
statement showing both debits.

Many thanks,
Sofia Marsh
Finance Manager, Copperleaf Retail
""",
    ),
    InboxDoc(
        name="nda-draft-kestrel.pdf",
        expected="legal",
        note="cover letter plus a three-page mutual NDA (multi-page PDF)",
        title="Mutual NDA - Kestrel Analytics",
        text="""Kestrel Analytics B.V.
Canal Side 12
3011 Rotterdam
Netherlands

Triage Demo Corp
Attn: Legal

Rotterdam, 4 March 2024

Re: Mutual non-disclosure agreement

Dear colleagues,

before our teams exchange technical details about the demand forecasting project, we
need a mutual non-disclosure agreement in place. Please find our standard NDA enclosed.
The confidentiality obligations survive for three years, and the agreement is governed
by Dutch law.

Please review the draft and let us know whether you have any comments. If it is
acceptable, kindly have it countersigned by an authorised signatory and return a copy by
15 March 2024.

Yours sincerely,

Lena Achterberg
Legal Counsel
Kestrel Analytics B.V.
\f"""
        + _NDA_BODY,
    ),
    InboxDoc(
        name="gdpr-erasure-request.txt",
        expected="legal",
        note="data-subject erasure request under the GDPR",
        title="Erasure request",
        text="""New message from the website contact form
Name: Henrik Varga
Email: henrik.varga@example.com
Company: -
Topic: General enquiry
Subject: Request for erasure of my personal data (Art. 17 GDPR)
Message:
Dear Sir or Madam,

I am exercising my right to erasure under Article 17 of the GDPR and ask you to delete
all personal data you hold about me, including my newsletter subscription and the
customer account CUST-58214 registered to this email address. I also withdraw any
consent I have given for marketing.

Please confirm in writing once the deletion is complete, and tell me if any data has to
be retained for legal reasons and for how long. If you need to verify my identity,
please let me know which documents you require.

Regards,
Henrik Varga
""",
    ),
    InboxDoc(
        name="sso-login-error.pdf",
        expected="technical",
        note="SSO login failure with a stack trace",
        title="Support request: SSO login fails",
        text="""Customer portal - new request #51907
Submitted: 2024-05-06 10:21
Customer: Brightwater Health (CUST-22817)
Contact: Keiko Brandt
Subject: SSO login fails with AUTH-4012 after certificate rotation

Hello,

since we rotated the SAML signing certificate on our identity provider yesterday, none
of our users can log in to DataHarbor via single sign-on. After the redirect the login
page shows "invalid SAML response" and error code AUTH-4012. Admin accounts with
username and password still work.

The desktop client writes the following to its log:

Traceback (most recent call last):
  File "/opt/dataharbor/auth/saml.py", line 212, in consume
    assertion = self._validate(response)
  File "/opt/dataharbor/auth/saml.py", line 318, in _validate
    raise SignatureError("certificate fingerprint mismatch")
dataharbor.auth.errors.SignatureError: certificate fingerprint mismatch

We uploaded the new certificate in the admin panel, but the old fingerprint still seems
to be used. Could you check the SSO configuration on your side? About 150 users are
affected.

Keiko Brandt
IT Administrator, Brightwater Health
""",
    ),
    InboxDoc(
        name="newsletter-april.pdf",
        expected="other",
        note="monthly marketing newsletter",
        title="Granite Peak Media - April newsletter",
        text="""Granite Peak Media Newsletter - April edition

Welcome to the April edition of our newsletter!

IN THIS ISSUE
  * Company news: our new studio in Porto
  * Upcoming events
  * Tip of the month
  * Customer story: Sunvale Foods

Company news We are excited to announce that our team has grown to more than fifty
people, and our new studio in Porto opened its doors this month. Come and say hello if
you are in town.

Upcoming events Join our free webinar on 23 April at 16:00 to hear how small teams plan
a year of content. Save the date for our annual customer day in September.

Tip of the month Organise your shared folders by project rather than by person: it makes
handovers much easier.

Customer story
This month Sunvale Foods tells us how they rebuilt their brand in six weeks.

You are receiving this email because you subscribed on our website. To unsubscribe, use
the link in your preferences centre at https://www.example.com/preferences.""",
    ),
    InboxDoc(
        name="job-application-data-analyst.txt",
        expected="other",
        note="job application with CV attached",
        title="Job application",
        text="""From: Amira Novak <amira.novak@example.com>
To: info@example.org
Subject: Application for the position of Data Analyst
Date: Thu, 2 May 2024 08:47:19 +0200

Dear hiring team,

I am writing to apply for the position of Data Analyst advertised on your website.
Please find attached my CV and cover letter.

In my current role at Redwood Analytics I build reporting dashboards and have led a
small team for the past two years. I am particularly interested in your work on document
automation, and I would welcome the opportunity to discuss how I could contribute to
your team.

I am available to start after a notice period of 60 days, and I would be happy to come
in for an interview at your convenience.

Kind regards,
Amira Novak
""",
    ),
    InboxDoc(
        name="contract-renewal-price-increase.pdf",
        expected="review (legal / billing)",
        note="AMBIGUOUS: contract amendment that is mostly about new prices and invoicing",
        title="Renewal of agreement MSA-2022-118",
        text="""Ironbridge Software Ltd
Station Street 40
M1 2AB Manchester
United Kingdom

Triage Demo Corp
Attn: Procurement

Manchester, 22 April 2024

Re: Renewal of master services agreement MSA-2022-118 and new pricing

Dear Ms Fontaine,

your master services agreement MSA-2022-118 renews automatically on 1 June 2024 unless
notice is given 30 days before the end of the term. With the renewal we would like to
amend Schedule 3 (Fees): the price per user increases from GBP 29.00 to GBP 34.00 per
month, and invoices will be issued annually in advance instead of monthly.

Please find the draft amendment enclosed. Clause 14.2 (Limitation of Liability) and the
governing law remain unchanged. The first annual invoice of GBP 24,480.00 plus VAT will
be raised on 1 June 2024 with payment terms of 30 days net, quoting your purchase order
number.

Please countersign the amendment by 15 May 2024, or let us know if you would like to
discuss the new fees or the billing schedule.

Yours sincerely,

Victor Bellamy
Account Director
Ironbridge Software Ltd
""",
    ),
    InboxDoc(
        name="payment-page-error-charged-twice.txt",
        expected="review (technical / billing)",
        note="AMBIGUOUS: checkout error that also caused a duplicate charge",
        title="Payment page error",
        text="""From: Jonas Pereira <jonas.pereira@example.com>
To: support@example.org
Subject: Checkout page error - and now we were charged twice?
Date: Fri, 10 May 2024 16:55:02 +0200

Hi,

when I tried to upgrade our workspace to the Professional plan this afternoon, the
checkout page showed "Something went wrong (E5031)" after I clicked Pay, so I tried
again in Firefox and got a blank screen. Now our card statement shows two payments of
EUR 588.00, but the workspace still says Business plan.

Can you check what happened? Either the upgrade should go through and the duplicate
charge be refunded, or both payments should be reversed. I also need a corrected invoice
for our accounts team.

Thanks,
Jonas Pereira
Operations Lead, Tidewell Foods
""",
    ),
    InboxDoc(
        name="security-incident-notice.pdf",
        expected="review (legal / technical)",
        note="AMBIGUOUS: vendor breach notification with technical details and GDPR duties",
        title="Notification of a security incident",
        text="""Stonegate Systems Inc.
Notification of a security incident

To: Triage Demo Corp, Data Protection Officer
Date: 27 May 2024

Dear customer,

we are writing to inform you of a security incident affecting the file upload service
that we operate for you as a processor under our data processing agreement.

What happened: on 24 May 2024 between 02:10 and 05:45 UTC an attacker used a
vulnerability in an outdated image library to read files from one storage bucket in the
EU-West region. We have patched the library, rotated all access keys and restored the
service from clean images.

What data is involved: uploaded documents of 37 of your users, which may contain names,
email addresses and invoice data. Passwords and payment card numbers were not affected.

Your obligations: as controller, you may have to notify the supervisory authority within
72 hours of becoming aware of a personal data breach under Article 33 GDPR, and possibly
the affected individuals. We will support you with the information you need and have
attached a list of the affected files.

Please confirm receipt of this notice and name a contact for the follow-up.

Yours sincerely,

Gustav Lindgren
Chief Information Security Officer, Stonegate Systems Inc.
security@example.com
""",
    ),
    InboxDoc(
        name="following-up.txt",
        expected="review (low confidence)",
        note="a vague follow-up that names no topic: a human has to look it up",
        title="Following up",
        text="""Hello,

I am following up on my message from last Tuesday. Could somebody please get back to me
about it? I would like to know where things stand.

Thanks,
Sam Okafor
""",
    ),
    InboxDoc(
        name="account-does-not-match.txt",
        expected="review (low confidence)",
        note="plan, portal and signed agreement disagree: billing, technical or legal",
        title="Our account does not match",
        text="""Hi,

Since your update last week our account page shows a different plan, the last invoice
has a different amount, and the contract we signed does not match what the portal says.
Who can help us sort this out?

Regards,
Priya Natarajan
""",
    ),
    InboxDoc(
        name="scanned-letter-no-text.pdf",
        expected="review (extraction_failed)",
        note="image-only scan of a letter: no text layer, so nothing to classify",
        title="Scanned letter",
        text="",
        scanned=True,
    ),
)


SCAN_WIDTH = 620
SCAN_HEIGHT = 877
_WHITE, _BLACK = 1, 0


def _fill(pixels: bytearray, box: tuple[int, int, int, int]) -> None:
    """Paint the rectangle (x, y, width, height) black, clipped to the page."""
    x, y, width, height = box
    for row in range(max(0, y), min(SCAN_HEIGHT, y + height)):
        left, right = max(0, x), min(SCAN_WIDTH, x + width)
        if left < right:
            offset = row * SCAN_WIDTH
            pixels[offset + left : offset + right] = bytes(right - left)


def _text_line(rng: random.Random, pixels: bytearray, x: int, y: int, right: int) -> None:
    """Draw one line of illegible "words" (dark bars) with a slight scanner skew."""
    while x < right:
        word = rng.randint(8, 46)
        _fill(pixels, (x, y + (x - 60) // 180, min(word, right - x), rng.choice((5, 6, 6, 7))))
        x += word + rng.randint(5, 8)


def scanned_letter_rows(seed: int) -> list[bytes]:
    """Return packed 1-bit rows of a synthetic scanned letter (integer drawing only)."""
    rng = random.Random(f"triage-sample/{seed}/inbox/scan")
    pixels = bytearray([_WHITE]) * (SCAN_WIDTH * SCAN_HEIGHT)
    _fill(pixels, (0, 0, 7, SCAN_HEIGHT))  # scanner shadow along the left edge
    _fill(pixels, (60, 48, 64, 40))  # letterhead logo
    _text_line(rng, pixels, 136, 54, 330)
    _text_line(rng, pixels, 136, 72, 260)
    for line in range(4):  # recipient address block
        _text_line(rng, pixels, 60, 130 + 14 * line, 60 + rng.randint(90, 170))
    _text_line(rng, pixels, 430, 200, 560)  # date
    y = 250
    for _ in range(rng.randint(4, 5)):  # body paragraphs
        lines = rng.randint(3, 6)
        for line in range(lines):
            right = 560 if line < lines - 1 else rng.randint(200, 520)
            _text_line(rng, pixels, 60, y, right)
            y += 15
        y += 14
    x, sig_y = 70, y + 40  # a signature squiggle, then the typed name
    while x < 210:
        sig_y = min(max(sig_y + rng.randint(-3, 3), y + 25), y + 55)
        _fill(pixels, (x, sig_y, 3, 3))
        x += 2
    _text_line(rng, pixels, 60, y + 75, 180)
    for _ in range(700):  # dust and speckles
        _fill(
            pixels,
            (rng.randrange(SCAN_WIDTH), rng.randrange(SCAN_HEIGHT), 1, rng.choice((1, 1, 2))),
        )
    rows: list[bytes] = []
    for row in range(SCAN_HEIGHT):
        bits = pixels[row * SCAN_WIDTH : (row + 1) * SCAN_WIDTH]
        padded = bits + bytes([_WHITE]) * (-len(bits) % 8)
        rows.append(
            bytes(
                int("".join("1" if bit else "0" for bit in padded[i : i + 8]), 2)
                for i in range(0, len(padded), 8)
            ),
        )
    return rows


def generate_inbox(seed: int = DEFAULT_SEED) -> dict[str, bytes]:
    """Return the demo inbox documents as relative path -> bytes."""
    files: dict[str, bytes] = {}
    for doc in INBOX:
        if doc.scanned:
            data = make_image_pdf(scanned_letter_rows(seed), SCAN_WIDTH)
        elif doc.is_pdf:
            data = make_pdf(doc.text, title=doc.title)
        else:
            data = doc.text.encode("utf-8")
        files[f"inbox/{doc.name}"] = data
    return files


# ---------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """Return a Markdown table; ``align`` holds one ``l``/``r`` per column."""
    rules = ["---:" if align[i : i + 1] == "r" else "---" for i in range(len(header))]
    lines = [header, rules, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def render_readme(seed: int, files: dict[str, bytes]) -> str:
    """Return the README describing the generated data set."""
    per_split = {"train": TRAIN_PER_LABEL, "golden": GOLDEN_PER_LABEL}
    counts = {
        (split, label): sum(1 for path in files if path.startswith(f"{split}/{label}/"))
        for split in per_split
        for label in LABELS
    }
    label_rows = [
        [f"`{label}`", str(counts["train", label]), str(counts["golden", label])]
        for label in LABELS
    ]
    totals = [sum(counts["train", label] for label in LABELS)]
    totals.append(sum(counts["golden", label] for label in LABELS))
    label_rows.append(["**total**", f"**{totals[0]}**", f"**{totals[1]}**"])
    mixed = {split: round(per * AMBIGUOUS_RATE) for split, per in per_split.items()}
    pdfs = sum(1 for doc in INBOX if doc.is_pdf)
    layout_rows = [
        [
            "`train/<label>/<nnnn>.txt`",
            "training set: e-mails, letters, web-form and portal messages",
        ],
        [
            "`golden/<label>/<nnnn>.txt`",
            "held-out evaluation set: own seed stream, partly different templates and phrasings",
        ],
        ["`inbox/`", f"{len(INBOX)} demo uploads ({len(INBOX) - pdfs} `.txt`, {pdfs} text `.pdf`)"],
        ["`README.md`", "this file (generated too)"],
    ]
    inbox_rows = [[f"`{doc.name}`", doc.expected, doc.note] for doc in INBOX]
    command = f"python3 {SCRIPT_NAME} --seed {seed}"
    sections = [
        "# Sample data (SYNTHETIC)",
        (
            f"**Everything in this directory is synthetic.** It was generated by `{command}` from "
            f"hand-written templates, invented vocabularies and a seeded random generator. No "
            f"document is real: companies, people, amounts, invoice, order and case numbers are "
            f"made up, and every e-mail address uses the reserved `example.com` / `example.org` "
            f"domains. Do not edit these files by hand; change the generator and regenerate."
        ),
        "## Contents",
        _table(["path", "what"], layout_rows),
        (
            "Labels (queues):\n\n"
            "- `billing`: invoices, payment reminders, refunds, VAT questions, billing details, "
            "price changes\n"
            "- `technical`: bug reports, outages, login/SSO and API errors, stack traces, how-to "
            "questions\n"
            "- `legal`: contracts, NDAs, GDPR/data-subject requests, subpoenas, disputes, "
            "cease-and-desist letters\n"
            "- `other`: newsletters, meeting invites, thank-you notes, job applications, office "
            "notices, event invitations"
        ),
        _table(["label", "train", "golden"], label_rows, align="lrr"),
        "## How hard it is (on purpose)",
        (
            f"- About {AMBIGUOUS_RATE:.0%} of each label ({mixed['train']} per label in `train/`, "
            f"{mixed['golden']} in `golden/`) mix in a second topic; the label is the dominant "
            f"one.\n- Some documents are vague one-liners, some are worded mostly in another "
            f"queue's vocabulary (a law firm chasing unpaid invoices is `legal`; a broken invoice "
            f"template is `technical`), and some replies quote an old thread about a different "
            f"topic.\n- `golden/` prefers phrasings that `train/` never uses and adds document "
            f"kinds that `train/` lacks, so it measures generalisation rather than memorised "
            f"templates.\n- Documents have 2 to 15 sentences plus realistic noise: typos, reply "
            f"and forward headers, disclaimers, signatures, log excerpts and tables.\n\nA TF-IDF + "
            f"logistic-regression baseline trained on `train/` scores a macro-F1 of about "
            f"0.92-0.94 on `golden/`: good, not perfect. Real triage has ambiguity, and that is "
            f"what human review is for."
        ),
        "## Inbox",
        (
            "Files a user would upload to watch the pipeline. The ambiguous ones should end up in "
            "human review."
        ),
        _table(["file", "expected queue", "what it is"], inbox_rows),
        "## Regenerating",
        "From the repository root:",
        (
            "```\n"
            f"{command}            # rewrite data/sample\n"
            f"{command} --check    # exit 1 if the files here are stale\n"
            "```"
        ),
        (
            "The output is byte-for-byte deterministic for a given seed (Python 3.11+, standard "
            "library only). PDFs come from `scripts/pdfgen.py`: uncompressed, without timestamps."
        ),
    ]
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------------------
# Writing, checking, command line
# ---------------------------------------------------------------------------

MANAGED_DIRS: tuple[str, ...] = ("train", "golden", "inbox")
MANAGED_SUFFIXES: tuple[str, ...] = (".txt", ".pdf")


def generate_all(seed: int = DEFAULT_SEED) -> dict[str, bytes]:
    """Generate the whole data set as relative POSIX path -> file bytes."""
    files = generate_split(seed, "train", TRAIN_PER_LABEL)
    files.update(generate_split(seed, "golden", GOLDEN_PER_LABEL))
    files.update(generate_inbox(seed))
    files["README.md"] = render_readme(seed, files).encode("utf-8")
    return files


def managed_files(out: Path) -> dict[str, Path]:
    """Return the generator-owned files currently under ``out`` (relative path -> path)."""
    found: dict[str, Path] = {}
    readme = out / "README.md"
    if readme.is_file():
        found["README.md"] = readme
    for name in MANAGED_DIRS:
        root = out / name
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.suffix in MANAGED_SUFFIXES:
                found[path.relative_to(out).as_posix()] = path
    return found


def write_tree(files: dict[str, bytes], out: Path) -> tuple[int, int]:
    """Write ``files`` under ``out`` and delete stale generated files; return (written, removed)."""
    removed = 0
    for rel, path in managed_files(out).items():
        if rel not in files:
            path.unlink()
            removed += 1
    written = 0
    for rel, data in sorted(files.items()):
        target = out / rel
        if target.is_file() and target.read_bytes() == data:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written += 1
    return written, removed


def diff_trees(expected: Path, actual: Path) -> list[str]:
    """Return human-readable differences between two generated trees."""
    want, have = managed_files(expected), managed_files(actual)
    problems = [f"missing: {rel}" for rel in sorted(want.keys() - have.keys())]
    problems += [f"unexpected: {rel}" for rel in sorted(have.keys() - want.keys())]
    problems += [
        f"differs: {rel}"
        for rel in sorted(want.keys() & have.keys())
        if want[rel].read_bytes() != have[rel].read_bytes()
    ]
    return problems


def check(seed: int, out: Path) -> list[str]:
    """Regenerate into a temporary directory and compare it with ``out``."""
    with tempfile.TemporaryDirectory(prefix="triage-sample-") as tmp:
        fresh = Path(tmp)
        write_tree(generate_all(seed), fresh)
        return diff_trees(fresh, out)


def _display(path: Path) -> str:
    """Show ``path`` relative to the repository root when it lies inside it."""
    resolved = path.resolve()
    return (
        resolved.relative_to(REPO_ROOT).as_posix()
        if resolved.is_relative_to(REPO_ROOT)
        else str(path)
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="make_sample_data.py",
        description=(
            "Generate Triage's SYNTHETIC sample data: a labelled training set, a held-out golden "
            "set and demo inbox documents (.txt and .pdf). Output is byte-for-byte deterministic "
            "for a given seed."
        ),
        epilog=(
            f"Labels: {', '.join(LABELS)}. Writes train/<label>/<nnnn>.txt "
            f"({TRAIN_PER_LABEL} per label), golden/<label>/<nnnn>.txt ({GOLDEN_PER_LABEL} per "
            "label), inbox/ and README.md. Use --check in CI to prove the committed data is fresh."
        ),
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: data/sample in the repository)",
    )
    parser.add_argument(
        "--seed",
        metavar="N",
        type=int,
        default=DEFAULT_SEED,
        help=f"random seed (default: {DEFAULT_SEED}; the committed data uses {DEFAULT_SEED})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write: regenerate into a temporary directory and exit 1 if DIR differs",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    args = build_parser().parse_args(argv)
    out: Path = args.out
    seed: int = args.seed
    if args.check:
        problems = check(seed, out)
        if problems:
            shown = "\n".join(f"  {line}" for line in problems[:20])
            more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
            sys.stderr.write(
                f"{_display(out)} is stale ({len(problems)} difference(s)):\n{shown}{more}\n"
                f"Regenerate with: python3 {SCRIPT_NAME} --seed {seed}\n",
            )
            return 1
        sys.stdout.write(f"{_display(out)} is up to date (seed {seed}).\n")
        return 0
    files = generate_all(seed)
    written, removed = write_tree(files, out)
    sys.stdout.write(
        (
            f"{len(files)} files in {_display(out)} (seed {seed}): {written} written, {removed} "
            f"stale removed.\n"
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
