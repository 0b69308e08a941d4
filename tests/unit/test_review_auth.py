"""Review UI authentication primitives: password hashing, tokens, CSRF and roles."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest

from triage_runtime.accounts import credentials as auth
from triage_runtime.accounts.credentials import (
    Action,
    InvalidUsernameError,
    PasswordPolicyError,
    Role,
    can,
    check_username,
    hash_password,
    needs_rehash,
    new_csrf_token,
    new_session_token,
    token_sha256,
    verify_csrf,
    verify_password,
)
from triage_runtime.accounts.throttle import Backoff, friendly_wait

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def encoded() -> str:
    """One hash of PASSWORD, shared because scrypt is deliberately slow."""
    return hash_password(PASSWORD)


def test_hash_round_trip(encoded: str) -> None:
    assert verify_password(PASSWORD, encoded)


def test_wrong_password_is_refused(encoded: str) -> None:
    assert not verify_password(PASSWORD + "!", encoded)
    assert not verify_password("Correct horse battery", encoded)
    assert not verify_password("", encoded)


def test_encoded_format(encoded: str) -> None:
    scheme, n, r, p, salt_b64, key_b64 = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**15), "8", "1")
    salt = base64.b64decode(salt_b64, validate=True)
    key = base64.b64decode(key_b64, validate=True)
    assert len(salt) == 16
    assert len(key) == 64
    expected = hashlib.scrypt(
        PASSWORD.encode(), salt=salt, n=2**15, r=8, p=1, dklen=64, maxmem=64 * 1024 * 1024
    )
    assert key == expected
    assert PASSWORD not in encoded


def test_salts_differ(encoded: str) -> None:
    other = hash_password(PASSWORD)
    assert other != encoded
    assert other.split("$")[4] != encoded.split("$")[4]
    assert verify_password(PASSWORD, other)


def test_needs_rehash(encoded: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not needs_rehash(encoded)
    # A hash made with cheaper parameters still verifies, but asks to be redone.
    monkeypatch.setattr(auth, "SCRYPT_N", 2**10)
    cheap = hash_password(PASSWORD)
    monkeypatch.undo()
    assert cheap.split("$")[1] == str(2**10)
    assert verify_password(PASSWORD, cheap)
    assert needs_rehash(cheap)
    assert needs_rehash(encoded.replace("$8$", "$4$", 1))
    assert needs_rehash("not a hash")


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "bcrypt$32768$8$1$c2FsdA==$a2V5",
        "scrypt$32768$8$1$not base64$a2V5",
        "scrypt$1000$8$1$c2FsdA==$a2V5",  # n not a power of two
        "scrypt$4194304$8$1$c2FsdA==$a2V5",  # n too large to compute on request
        "scrypt$32768$8$1$c2FsdA==",
    ],
)
def test_malformed_hashes_never_verify(malformed: str) -> None:
    assert not verify_password(PASSWORD, malformed)
    assert needs_rehash(malformed)


def test_short_password_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="at least 12 characters"):
        hash_password("elevenchars")
    assert hash_password("twelve chars").startswith("scrypt$")


def test_absurdly_long_password_is_refused() -> None:
    with pytest.raises(PasswordPolicyError, match="at most"):
        hash_password("x" * 1025)


def test_usernames() -> None:
    assert check_username("alice.smith@example") == "alice.smith@example"
    for bad in ["", "-alice", "a b", "x" * 81, "al'ice", "<b>"]:
        with pytest.raises(InvalidUsernameError):
            check_username(bad)


def test_session_tokens_are_random_and_stored_hashed() -> None:
    tokens = {new_session_token() for _ in range(50)}
    assert len(tokens) == 50
    token = next(iter(tokens))
    assert len(token) >= 43
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token)
    digest = token_sha256(token)
    assert digest == hashlib.sha256(token.encode()).hexdigest()
    assert len(digest) == 64
    assert token not in digest


def test_csrf_verify() -> None:
    csrf = new_csrf_token()
    assert len(csrf) <= 64
    assert csrf != new_csrf_token()
    assert verify_csrf(csrf, csrf)
    assert not verify_csrf(csrf, new_csrf_token())
    assert not verify_csrf(csrf, csrf[:-1])
    assert not verify_csrf(csrf, None)
    assert not verify_csrf(csrf, "")
    assert not verify_csrf("", "")


def test_can() -> None:
    assert can(Role.REVIEWER, Action.REVIEW)
    assert not can(Role.REVIEWER, Action.ADMIN)
    assert can(Role.ADMIN, Action.REVIEW)
    assert can(Role.ADMIN, Action.ADMIN)
    # Plain strings work too; anything unknown is refused.
    assert can("admin", "review")
    assert not can("reviewer", "admin")
    assert not can("superuser", "review")
    assert not can("admin", "delete-everything")
    assert {r.value for r in Role} == {"reviewer", "admin"}


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("/", True),
        ("/items/3", True),
        ("//evil.example.com/", False),
        ("/\\evil.example.com", False),
        ("https://evil.example.com/", False),
        ("/items\\..\\x", False),
    ],
)
def test_post_login_redirects_stay_on_the_site(target: str, local: bool) -> None:
    from triage_review_ui.domain import is_local_path

    assert is_local_path(target) is local


def test_the_sign_in_back_off_doubles_from_the_last_failure_up_to_its_cap() -> None:
    backoff = Backoff(free=5, base=timedelta(seconds=1), cap=timedelta(minutes=15))
    at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    assert backoff.wait(4, at, at) == timedelta(0)  # still free
    assert backoff.wait(5, at, at) == timedelta(seconds=1)
    assert backoff.wait(6, at, at) == timedelta(seconds=2)
    assert backoff.wait(8, at, at + timedelta(seconds=3)) == timedelta(seconds=5)
    assert backoff.wait(8, at, at + timedelta(seconds=9)) == timedelta(0)  # waited it out
    assert backoff.wait(30, at, at) == timedelta(minutes=15)
    assert backoff.wait(10**6, at, at) == timedelta(minutes=15)  # no overflow, no lockout
    assert backoff.wait(5, None, at) == timedelta(0)


def test_a_wait_reads_as_a_person_says_it() -> None:
    assert friendly_wait(timedelta(seconds=0.2)) == "1 second"
    assert friendly_wait(timedelta(seconds=1.5)) == "2 seconds"
    assert friendly_wait(timedelta(seconds=59)) == "59 seconds"
    assert friendly_wait(timedelta(seconds=61)) == "2 minutes"
    assert friendly_wait(timedelta(minutes=15)) == "15 minutes"
