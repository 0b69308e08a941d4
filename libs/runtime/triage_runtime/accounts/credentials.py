"""Review UI authentication primitives: passwords, session and CSRF tokens, roles (no I/O).

Passwords are hashed with scrypt from the standard library and stored as
``scrypt$n$r$p$salt_b64$hash_b64``. Session tokens go to the browser; only their SHA-256 is
stored. Every comparison of a secret is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from enum import StrEnum

SCHEME = "scrypt"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 64
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
# Stored hashes with parameters above these are refused rather than computed.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAX_KEY_BYTES = 128
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,79}")


class PasswordPolicyError(ValueError):
    """A password the policy refuses (too short or absurdly long)."""


class InvalidUsernameError(ValueError):
    """A user name outside the allowed characters or length."""


class Role(StrEnum):
    """What a review UI user may be."""

    REVIEWER = "reviewer"
    ADMIN = "admin"


class Action(StrEnum):
    """What a request may need permission for."""

    REVIEW = "review"
    ADMIN = "admin"


_PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.REVIEWER: frozenset({Action.REVIEW}),
    Role.ADMIN: frozenset({Action.REVIEW, Action.ADMIN}),
}


def can(role: Role | str, action: Action | str) -> bool:
    """Say whether ``role`` may perform ``action``; unknown roles or actions may do nothing."""
    try:
        return Action(action) in _PERMISSIONS[Role(role)]
    except ValueError:
        return False


def check_username(username: str) -> str:
    """Return ``username`` if allowed (letters, digits, ``_.@-``, at most 80), else raise."""
    if not _USERNAME.fullmatch(username):
        raise InvalidUsernameError(
            "a user name is 1-80 letters, digits, '_', '.', '@' or '-', starting with a"
            " letter or digit"
        )
    return username


def check_password_policy(password: str) -> None:
    """Raise PasswordPolicyError if ``password`` is too short or too long."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordPolicyError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
            f" (this one has {len(password)})"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordPolicyError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt(password: str, salt: bytes, *, n: int, r: int, p: int, dklen: int) -> bytes:
    # OpenSSL's default memory cap (32 MiB) is exactly what n=2**15, r=8 needs; allow headroom.
    maxmem = 128 * n * r * p + 1024 * 1024 * 16
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem
    )


def hash_password(password: str) -> str:
    """Return the encoded scrypt hash of ``password`` with a fresh random salt."""
    check_password_policy(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64encode(salt)}${_b64encode(key)}"


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    valid = (
        1 < n <= _MAX_N
        and n & (n - 1) == 0
        and 0 < r <= _MAX_R
        and 0 < p <= _MAX_P
        and salt
        and 0 < len(key) <= _MAX_KEY_BYTES
    )
    return (n, r, p, salt, key) if valid else None


def verify_password(password: str, encoded: str) -> bool:
    """Say whether ``password`` matches ``encoded``; malformed hashes never match."""
    parsed = _parse(encoded)
    if parsed is None or len(password) > MAX_PASSWORD_LENGTH:
        return False
    n, r, p, salt, expected = parsed
    actual = _scrypt(password, salt, n=n, r=r, p=p, dklen=len(expected))
    return hmac.compare_digest(actual, expected)


def needs_rehash(encoded: str) -> bool:
    """Say whether ``encoded`` was made with other parameters than today's (or is malformed)."""
    parsed = _parse(encoded)
    if parsed is None:
        return True
    n, r, p, salt, key = parsed
    return (n, r, p, len(salt), len(key)) != (SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_BYTES, KEY_BYTES)


# Hashing against a throwaway salt when a user name is unknown makes an unknown name take
# as long as a wrong password, so timing does not tell which names exist.
_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


def burn_verification_time(password: str) -> None:
    """Spend as long as verify_password would, for a user that does not exist."""
    _scrypt(
        password[:MAX_PASSWORD_LENGTH],
        _DUMMY_SALT,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        dklen=KEY_BYTES,
    )


def new_session_token() -> str:
    """Return a fresh session token for the browser's cookie (never stored as such)."""
    return secrets.token_urlsafe(32)


def token_sha256(token: str) -> str:
    """Return the hex SHA-256 of a session token: what the database stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_csrf_token() -> str:
    """Return a fresh per-session CSRF token."""
    return secrets.token_urlsafe(32)


def verify_csrf(expected: str, presented: str | None) -> bool:
    """Say whether the CSRF token a form or header ``presented`` is the session's one."""
    if not expected or not presented:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8"))
