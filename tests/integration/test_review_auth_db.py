"""Review UI users, logins, sessions and the audit log on real PostgreSQL, and `triage user`.

Each test empties the auth tables itself (auth_db), so the shared clean_db list need not
know them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from tests.stack import Stack
from triage_cli.user_cli import user_app
from triage_runtime.accounts import credentials as auth
from triage_runtime.accounts.credentials import PasswordPolicyError, Role, token_sha256
from triage_runtime.accounts.store import (
    AuthStore,
    OwnAccountError,
    RateLimitedError,
    UnknownUserError,
    UserExistsError,
)
from triage_runtime.accounts.throttle import Backoff, LoginThrottle
from triage_runtime.db.engine import make_async_engine

AUTH_TABLES = ("web_session", "login_attempt", "audit_log", "app_user")
PASSWORD = "a long enough secret"
ADDR = "192.0.2.10"


@pytest.fixture
def auth_db(stack: Stack) -> str:
    """The session database with the auth tables emptied."""
    engine = create_engine(stack.database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(AUTH_TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return stack.database_url


@pytest.fixture
async def engine(auth_db: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on the emptied database."""
    engine = make_async_engine(auth_db)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> AuthStore:
    """The store under test."""
    return AuthStore(engine)


async def _scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def _execute(engine: AsyncEngine, sql: str, **params: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _age_attempts(engine: AsyncEngine, minutes: int) -> None:
    await _execute(engine, f"UPDATE login_attempt SET at = at - interval '{minutes} minutes'")


# ---------------------------------------------------------------------------
# Users and logins
# ---------------------------------------------------------------------------


async def test_create_and_authenticate(store: AuthStore, engine: AsyncEngine) -> None:
    created = await store.create_user("alice", PASSWORD, Role.ADMIN)
    assert created.role is Role.ADMIN and not created.disabled
    assert created.last_login_at is None

    user = await store.authenticate("alice", PASSWORD, ADDR)
    assert user is not None
    assert (user.id, user.username, user.role) == (created.id, "alice", Role.ADMIN)
    assert user.last_login_at is not None
    assert await store.authenticate("alice", PASSWORD + "x", ADDR) is None
    assert await store.authenticate("nobody", PASSWORD, ADDR) is None

    attempts = await _scalar(
        engine,
        "SELECT string_agg(username || ':' || success::text, ',' ORDER BY id) FROM login_attempt",
    )
    assert attempts == "alice:true,alice:false,nobody:false"
    stored = str(await _scalar(engine, "SELECT password_hash FROM app_user"))
    assert stored.startswith("scrypt$32768$8$1$")
    assert PASSWORD not in stored
    assert [u.username for u in await store.list_users()] == ["alice"]


async def test_duplicate_and_invalid_users_are_refused(store: AuthStore) -> None:
    await store.create_user("bob", PASSWORD, "reviewer")
    with pytest.raises(UserExistsError, match="bob"):
        await store.create_user("bob", PASSWORD + "2", "admin")
    with pytest.raises(PasswordPolicyError, match="12"):
        await store.create_user("carol", "short", "reviewer")
    with pytest.raises(ValueError, match="superuser"):
        await store.create_user("carol", PASSWORD, "superuser")
    assert [u.username for u in await store.list_users()] == ["bob"]


async def test_disabled_user_is_refused_until_enabled(store: AuthStore) -> None:
    user = await store.create_user("dave", PASSWORD, Role.REVIEWER)
    token, _ = await store.start_session(user.id)
    await store.disable_user("dave")
    assert await store.authenticate("dave", PASSWORD, ADDR) is None
    assert await store.session_user(token) is None
    disabled = await store.get_user("dave")
    assert disabled is not None and disabled.disabled

    await store.enable_user("dave")
    assert await store.authenticate("dave", PASSWORD, ADDR) is not None
    assert await store.session_user(token) is None  # disabling ended the session for good
    with pytest.raises(UnknownUserError):
        await store.disable_user("nobody")
    with pytest.raises(UnknownUserError):
        await store.enable_user("nobody")


async def test_set_password_replaces_it_and_ends_sessions(store: AuthStore) -> None:
    user = await store.create_user("erin", PASSWORD, Role.REVIEWER)
    token, _ = await store.start_session(user.id)
    await store.set_password("erin", "another long secret")
    assert await store.session_user(token) is None
    assert await store.authenticate("erin", PASSWORD, ADDR) is None
    assert await store.authenticate("erin", "another long secret", ADDR) is not None
    with pytest.raises(UnknownUserError):
        await store.set_password("nobody", "another long secret")


async def test_login_rehashes_a_hash_with_old_parameters(
    store: AuthStore, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "SCRYPT_N", 2**10)
    await store.create_user("nina", PASSWORD, Role.REVIEWER)
    monkeypatch.undo()
    cheap = str(await _scalar(engine, "SELECT password_hash FROM app_user"))
    assert cheap.startswith("scrypt$1024$")
    assert await store.authenticate("nina", PASSWORD, ADDR) is not None
    rehashed = str(await _scalar(engine, "SELECT password_hash FROM app_user"))
    assert rehashed.startswith("scrypt$32768$8$1$")
    assert await store.authenticate("nina", PASSWORD, ADDR) is not None


async def _age_attempts_seconds(engine: AsyncEngine, seconds: float) -> None:
    await _execute(engine, f"UPDATE login_attempt SET at = at - interval '{seconds} seconds'")


async def test_failures_slow_that_name_from_that_address_only(store: AuthStore) -> None:
    await store.create_user("frank", PASSWORD, Role.REVIEWER)
    await store.create_user("grace", PASSWORD, Role.REVIEWER)
    for _ in range(5):  # the attacker's free failures, from one address
        assert await store.authenticate("frank", "wrong password!", ADDR) is None
    with pytest.raises(RateLimitedError) as held:
        await store.authenticate("frank", PASSWORD, ADDR)
    assert timedelta(0) < held.value.retry_after <= timedelta(seconds=1)
    # frank from anywhere else, and anyone else from that address, go straight in.
    assert await store.authenticate("frank", PASSWORD, "203.0.113.7") is not None
    assert await store.authenticate("grace", PASSWORD, ADDR) is not None


async def test_the_wait_doubles_never_locks_and_a_success_starts_afresh(
    store: AuthStore, engine: AsyncEngine
) -> None:
    await store.create_user("ivan", PASSWORD, Role.REVIEWER)
    for _ in range(5):
        assert await store.authenticate("ivan", "wrong password!", ADDR) is None
    await _age_attempts_seconds(engine, 1.5)  # the 1-second wait is over: one more try
    assert await store.authenticate("ivan", "wrong password!", ADDR) is None
    with pytest.raises(RateLimitedError) as held:
        await store.authenticate("ivan", PASSWORD, ADDR)
    assert timedelta(seconds=1) < held.value.retry_after <= timedelta(seconds=2)
    attempts = await _scalar(engine, "SELECT count(*) FROM login_attempt")
    assert attempts == 6  # waiting is not a failure: it does not lengthen the wait
    await _age_attempts_seconds(engine, 2.5)
    assert await store.authenticate("ivan", PASSWORD, ADDR) is not None
    for _ in range(5):  # the success started the count afresh
        assert await store.authenticate("ivan", "wrong password!", ADDR) is None


async def test_a_browser_that_signed_in_before_is_held_to_its_own_failures(
    engine: AsyncEngine,
) -> None:
    # Small ceilings, so that a few attempts reach them.
    store = AuthStore(engine, LoginThrottle(per_user=Backoff(free=8), per_address=Backoff(free=10)))
    alice = await store.create_user("alice", PASSWORD, Role.REVIEWER)
    await store.create_user("bob", PASSWORD, Role.REVIEWER)
    assert await store.authenticate("alice", PASSWORD, ADDR) is not None
    device = await store.remember_device(alice, None)
    # Another browser is not known for alice, whatever token it shows.
    assert await store.remember_device(alice, device) == device
    # From alice's own office address (one NAT): her pair is held...
    for _ in range(5):
        assert await store.authenticate("alice", "wrong password!", ADDR, "forged") is None
    with pytest.raises(RateLimitedError):
        await store.authenticate("alice", PASSWORD, ADDR)
    # ...and with three more failures, from other addresses, her name's ceiling (8) too.
    for i in range(3):
        assert await store.authenticate("alice", "wrong password!", f"198.51.100.{i}") is None
    with pytest.raises(RateLimitedError):
        await store.authenticate("alice", PASSWORD, "203.0.113.50")
    # Her own browser is held to its own (no) failures: she signs in, from the office.
    assert await store.authenticate("alice", PASSWORD, ADDR, device) is not None
    # The token is known for alice only: bob's failures with it are an unknown browser's.
    for _ in range(5):
        assert await store.authenticate("bob", "wrong password!", ADDR, device) is None
    with pytest.raises(RateLimitedError):
        await store.authenticate("bob", PASSWORD, ADDR, device)
    # The address's ceiling (10 failures of unknown browsers) is reached: only known ones pass.
    with pytest.raises(RateLimitedError):
        await store.authenticate("carol", PASSWORD, ADDR)
    assert await store.authenticate("alice", PASSWORD, ADDR, device) is not None


async def test_many_people_failing_behind_one_address_do_not_stop_a_correct_sign_in(
    store: AuthStore,
) -> None:
    await store.create_user("carol", PASSWORD, Role.REVIEWER)
    for n in range(12):  # an office's worth of forgotten passwords, all behind one NAT
        await store.create_user(f"clerk{n}", PASSWORD, Role.REVIEWER)
        for _ in range(5):
            assert await store.authenticate(f"clerk{n}", "wrong password!", ADDR) is None
    assert await store.authenticate("carol", PASSWORD, ADDR) is not None


async def test_concurrent_attempts_cannot_slip_past_the_back_off(engine: AsyncEngine) -> None:
    # A long first wait, so that a slow machine cannot let a held attempt through.
    store = AuthStore(engine, LoginThrottle(per_key=Backoff(free=5, base=timedelta(minutes=1))))
    await store.create_user("judy", PASSWORD, Role.REVIEWER)
    results = await asyncio.gather(
        *(store.authenticate("judy", "wrong password!", ADDR) for _ in range(12)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 5
    assert sum(isinstance(r, RateLimitedError) for r in results) == 7


async def test_two_admins_disabling_each_other_at_once_leave_one(store: AuthStore) -> None:
    for round_ in range(10):
        first, second = f"ada{round_}", f"bea{round_}"
        await store.create_user(first, PASSWORD, Role.ADMIN)
        await store.create_user(second, PASSWORD, Role.ADMIN)
        for user in await store.list_users():  # only this round's two are enabled admins
            if user.role is Role.ADMIN and user.username not in (first, second):
                await store.disable_user(user.username)
        results = await asyncio.gather(
            store.disable_user(first, by=second),
            store.disable_user(second, by=first),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["LastAdminError", "NoneType"]
        admins = [u for u in await store.list_users() if u.role is Role.ADMIN and not u.disabled]
        assert len(admins) == 1
    with pytest.raises(OwnAccountError):
        await store.disable_user(admins[0].username, by=admins[0].username)


# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------


async def test_session_start_lookup_expiry_and_end(store: AuthStore, engine: AsyncEngine) -> None:
    user = await store.create_user("kim", PASSWORD, Role.REVIEWER)
    token, csrf = await store.start_session(user.id, ttl=timedelta(hours=1))
    info = await store.session_user(token)
    assert info is not None
    assert info.user.username == "kim" and info.user.role is Role.REVIEWER
    assert info.csrf_token == csrf
    stored = await _scalar(engine, "SELECT token_sha256 FROM web_session")
    assert stored == token_sha256(token) != token
    assert await store.session_user(token + "x") is None
    assert await store.session_user("") is None

    other, other_csrf = await store.start_session(user.id)
    assert (other, other_csrf) != (token, csrf)
    await _execute(engine, "UPDATE web_session SET expires_at = now() - interval '1 second'")
    assert await store.session_user(token) is None
    assert await store.session_user(other) is None

    live, _ = await store.start_session(user.id)
    assert await store.session_user(live) is not None
    assert await store.end_session(live)
    assert await store.session_user(live) is None
    assert not await store.end_session(live)


# ---------------------------------------------------------------------------
# Audit log
# ---------------------------------------------------------------------------


async def test_audit_rows_are_appended_and_never_changed(
    store: AuthStore, engine: AsyncEngine
) -> None:
    first = await store.audit("alice", "login")
    second = await store.audit(
        "alice",
        "decide",
        document_id="0" * 36,
        review_item_id=7,
        detail={"label": "invoice", "previous": None},
    )
    assert second > first
    trail = await store.audit_trail()
    assert [(r.actor, r.action) for r in trail] == [("alice", "decide"), ("alice", "login")]
    assert trail[0].detail == {"label": "invoice", "previous": None}
    assert trail[0].review_item_id == 7
    assert trail[1].detail is None
    assert trail[0].at >= trail[1].at
    assert [r.id for r in await store.audit_trail(document_id="0" * 36)] == [second]

    with pytest.raises(DBAPIError, match="append-only"):
        await _execute(engine, "UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(DBAPIError, match="append-only"):
        await _execute(engine, "DELETE FROM audit_log")
    assert await _scalar(engine, "SELECT count(*) FROM audit_log WHERE actor = 'alice'") == 2


# ---------------------------------------------------------------------------
# The CLI
# ---------------------------------------------------------------------------


def _users(database_url: str) -> list[tuple[str, str, bool]]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT username, role, disabled FROM app_user ORDER BY username"))
        users = [(str(u), str(r), bool(d)) for u, r, d in rows]
    engine.dispose()
    return users


def test_user_cli(auth_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", auth_db)
    runner = CliRunner()

    added = runner.invoke(
        user_app, ["add", "olivia", "--role", "admin", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert added.exit_code == 0, added.output
    assert "added admin 'olivia'" in added.output
    added = runner.invoke(user_app, ["add", "pat", "--password-stdin"], input=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert _users(auth_db) == [("olivia", "admin", False), ("pat", "reviewer", False)]

    duplicate = runner.invoke(
        user_app, ["add", "olivia", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert duplicate.exit_code == 1
    assert "exists" in duplicate.output
    short = runner.invoke(user_app, ["add", "quinn", "--password-stdin"], input="short\n")
    assert short.exit_code == 2
    assert "at least 12 characters" in short.output
    empty = runner.invoke(user_app, ["add", "quinn", "--password-stdin"], input="")
    assert empty.exit_code == 2
    bad_role = runner.invoke(
        user_app, ["add", "quinn", "--role", "root", "--password-stdin"], input=PASSWORD + "\n"
    )
    assert bad_role.exit_code == 2
    prompted = runner.invoke(user_app, ["add", "quinn"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert prompted.exit_code == 0, prompted.output
    assert PASSWORD not in prompted.output  # the prompt hides what is typed

    assert runner.invoke(user_app, ["disable", "pat"]).exit_code == 0
    assert ("pat", "reviewer", True) in _users(auth_db)
    listed = runner.invoke(user_app, ["list"])
    assert listed.exit_code == 0, listed.output
    assert "olivia" in listed.output and "disabled" in listed.output
    assert runner.invoke(user_app, ["enable", "pat"]).exit_code == 0
    assert ("pat", "reviewer", False) in _users(auth_db)
    missing = runner.invoke(user_app, ["disable", "nobody"])
    assert missing.exit_code == 1
    assert "no user named 'nobody'" in missing.output

    passwd = runner.invoke(
        user_app, ["passwd", "pat", "--password-stdin"], input="a brand new password\n"
    )
    assert passwd.exit_code == 0, passwd.output

    async def check() -> tuple[bool, bool, list[str]]:
        engine = make_async_engine(auth_db)
        store = AuthStore(engine)
        old = await store.authenticate("pat", PASSWORD, ADDR) is not None
        new = await store.authenticate("pat", "a brand new password", ADDR) is not None
        actions = [r.action for r in reversed(await store.audit_trail())]
        await engine.dispose()
        return old, new, actions

    old, new, actions = asyncio.run(check())
    assert (old, new) == (False, True)
    assert actions == [
        "user_add",
        "user_add",
        "user_add",
        "user_disable",
        "user_enable",
        "user_password",
    ]
