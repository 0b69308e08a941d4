"""A part's content as bytes: transfer-decoded, salvaged from broken base64, or serialised
back to what the sender wrote when the part holds messages rather than a payload string.
"""

from __future__ import annotations

from email.message import EmailMessage

from triage_text.email.decoding import lenient_base64
from triage_text.email.defects import defect_names
from triage_text.email.limits import SERIAL_POLICY


def payload_bytes(obj: EmailMessage) -> tuple[bytes, list[str]]:
    """Return the transfer-decoded payload and the defects decoding it produced."""
    before = len(obj.defects)
    try:
        data = obj.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - transfer decoding of hostile input; keep the raw bytes
        return _raw_payload(obj), ["undecodable_payload"]
    defects = defect_names(obj.defects[before:])
    if not isinstance(data, bytes):
        # message/delivery-status and friends hold header blocks, not a payload string.
        return _serialised_payload(obj), defects
    if "invalid_base64_length" in defects:
        # The stdlib then hands back the base64 text itself; salvage what decodes.
        data = lenient_base64(_raw_payload(obj))
    return data, defects


def subparts(obj: EmailMessage) -> list[object]:
    """Return the sub-messages of a multipart or message/* part ([] for other parts)."""
    if not obj.is_multipart():
        return []
    payload = obj.get_payload()
    return list(payload) if isinstance(payload, list) else []


def _raw_payload(obj: EmailMessage) -> bytes:
    """Return a leaf's payload as transmitted; 8-bit bytes may come back replaced."""
    if obj.is_multipart():
        return b""
    try:
        # Without decode=True the stdlib looks the charset up, which can raise.
        payload = obj.get_payload()
    except Exception:  # noqa: BLE001 - e.g. ValueError for a charset with a NUL in it
        return b""
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def _serialised_payload(obj: EmailMessage) -> bytes:
    payload = subparts(obj)
    if not payload:
        return _raw_payload(obj)
    return b"".join(serialise(item)[0] for item in payload if isinstance(item, EmailMessage))


def serialise(obj: EmailMessage) -> tuple[bytes, list[str]]:
    try:
        return obj.as_bytes(policy=SERIAL_POLICY), []
    except Exception:  # noqa: BLE001 - the generator can trip over what the parser accepted
        return _raw_payload(obj), ["unserialisable_message"]
