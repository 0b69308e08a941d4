"""Header fields as senders write them: unfolded raw values and their defects, the fields that
identify a message (id, subject, sender, date), RFC 2047 encoded words and raw 8-bit text.
"""

from __future__ import annotations

import binascii
import email.utils
import re
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage

from triage_text.email.decoding import LINE_BREAK, decode_text, lenient_base64
from triage_text.email.defects import short_label

SINGLE_HEADERS = frozenset(
    {
        "date",
        "from",
        "sender",
        "reply-to",
        "to",
        "cc",
        "bcc",
        "message-id",
        "in-reply-to",
        "references",
        "subject",
    }
)
SINGLE_PART_HEADERS = frozenset(
    {"content-type", "content-disposition", "content-transfer-encoding"}
)

_SURROGATE = re.compile("[\udc80-\udcff]")
ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
# Starts only where a run of address characters starts: without the lookbehind, a long run
# with no "@" is scanned again from each of its characters (quadratic: 6 s for 32 KB).
_ADDR_SPEC = re.compile(r"(?<![^\s<>()\[\]@,;:\"])[^\s<>()\[\]@,;:\"]+@[^\s<>()\[\]@,;:\"]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def raw_headers(obj: EmailMessage) -> list[tuple[str, str]]:
    """Return the headers as the sender wrote them (unfolded), in order."""
    return [(name.lower(), LINE_BREAK.sub("", str(value))) for name, value in obj.raw_items()]


def first_raw(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key == name), None)


def header_defects(headers: list[tuple[str, str]], single: frozenset[str]) -> list[str]:
    defects = [
        f"non_ascii_header:{short_label(name)}" for name, value in headers if _has_raw(value)
    ]
    counts = Counter(name for name, _ in headers)
    # Iterate the Counter, not the set: defect order must not depend on hash seeds.
    defects += [
        f"duplicate_header:{name}" for name, n in counts.items() if name in single and n > 1
    ]
    return list(dict.fromkeys(defects))


def read_message_id(headers: list[tuple[str, str]], defects: list[str]) -> str | None:
    value = first_raw(headers, "message-id")
    if value is None:
        return None
    value = repair_raw(value).strip()
    match = _ANGLE_ID.search(value)
    message_id = (match[1] if match else value).strip()
    if match is None or not message_id or " " in message_id:
        defects.append("invalid_message_id")
    return _without_controls(message_id, "message_id", defects) or None


def read_subject(headers: list[tuple[str, str]], defects: list[str]) -> str | None:
    value = first_raw(headers, "subject")
    if value is None:
        return None
    decoded, word_defects = decode_words(repair_raw(value))
    defects += [f"subject:{defect}" for defect in word_defects]
    return _without_controls(decoded, "subject", defects).strip()


def read_sender(
    msg: EmailMessage, headers: list[tuple[str, str]], defects: list[str]
) -> str | None:
    value = first_raw(headers, "from")
    if value is None:
        defects.append("missing_from")
        return None
    address = _parsed_address(msg)
    if address is not None:
        return _without_controls(repair_raw(address), "from", defects)
    match = _ADDR_SPEC.search(repair_raw(value))
    if match is None:
        defects.append("from_without_address")
        return None
    defects.append("invalid_from")
    return _without_controls(match[0], "from", defects)


def without_controls(value: str) -> str:
    """``value`` with its control characters (NUL among them: PostgreSQL text refuses it)
    replaced by spaces, as every header value the parser keeps is."""
    return _CONTROL.sub(" ", value)


def read_recipients(msg: EmailMessage) -> tuple[str, ...]:
    """The To and Cc addresses (lower case) that parse; what does not parse is left out."""
    found: list[str] = []
    for name in ("to", "cc"):
        try:
            for address in getattr(msg[name], "addresses", ()):
                addr_spec = str(address.addr_spec).strip().lower()
                if "@" in addr_spec:
                    found.append(without_controls(addr_spec))
        except Exception:  # noqa: BLE001, S112 - header parsing of hostile input has raised before
            continue
    return tuple(dict.fromkeys(found))


def _without_controls(value: str, name: str, defects: list[str]) -> str:
    cleaned = without_controls(value)
    if cleaned != value:
        defects.append(f"control_characters:{name}")
    return cleaned


def read_sender_name(msg: EmailMessage, defects: list[str]) -> str | None:
    """Return the sender's display name (``Müller, Anna``) as read, or None if there is none."""
    address = _from_address(msg)
    name = getattr(address, "display_name", None)
    if not isinstance(name, str):
        return None
    name = _without_controls(repair_raw(name), "from_name", defects)
    return " ".join(name.split()) or None


def _parsed_address(msg: EmailMessage) -> str | None:
    spec = getattr(_from_address(msg), "addr_spec", None)
    return spec if isinstance(spec, str) else None


def _from_address(msg: EmailMessage) -> object | None:
    """The first address of From with a user and a domain, as the stdlib parsed it."""
    try:
        header = msg["from"]
        addresses = getattr(header, "addresses", ())
        for address in addresses:
            if getattr(address, "username", "") and getattr(address, "domain", ""):
                # Reading addr_spec here, so that a hostile address raises inside the guard.
                _ = address.addr_spec, address.display_name
                return address  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - CPython's address parser has raised on hostile lists
        return None
    return None


def read_date(headers: list[tuple[str, str]], defects: list[str]) -> datetime | None:
    value = first_raw(headers, "date")
    if value is None:
        defects.append("missing_date")
        return None
    value = repair_raw(value).strip()
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append("invalid_date")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 reads "-0000" as UTC with the sender's zone unknown; anything else is a guess.
        if not value.endswith("-0000"):
            defects.append("date_without_timezone")
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def decode_words(value: str) -> tuple[str, list[str]]:
    """Decode RFC 2047 encoded words, joining adjacent ones so split characters survive."""
    out: list[str] = []
    defects: list[str] = []
    pending = b""
    pending_charset: str | None = None
    position = 0

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            text, text_defects = decode_text(pending, pending_charset)
            out.append(text)
            defects.extend(text_defects)
        pending, pending_charset = b"", None

    for match in ENCODED_WORD.finditer(value):
        gap = value[position : match.start()]
        if pending_charset is None or gap.strip():
            flush()
            out.append(gap)
        charset = match[1].split("*", 1)[0].lower()
        data = _word_bytes(match[2].lower(), match[3])
        if data is None:
            flush()
            out.append(match[0])
            defects.append("undecodable_encoded_word")
        elif charset == pending_charset:
            pending += data
        else:
            flush()
            pending, pending_charset = data, charset
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out), defects


def _word_bytes(encoding: str, text: str) -> bytes | None:
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if encoding == "b":
        return lenient_base64(raw)
    return binascii.a2b_qp(raw, header=True)


def _has_raw(value: str) -> bool:
    return _SURROGATE.search(value) is not None


def repair_raw(value: str) -> str:
    """Turn raw 8-bit header bytes (kept as surrogates by the parser) into text."""
    if not _has_raw(value):
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return value.encode("ascii", "surrogateescape").decode("cp1252")
    except UnicodeError:
        return data.decode("utf-8", "replace")
