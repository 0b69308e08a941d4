"""Review UI users, login attempts, sessions and the audit log in PostgreSQL.

Logins are rate-limited: after MAX_FAILURES failed attempts within FAILURE_WINDOW for a user
name, or from an address, further attempts are refused (and recorded) until the window has
passed. Nothing here logs a password or a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from triage_runtime import audit
from triage_runtime.accounts.credentials import (
    PasswordPolicyError,
    Role,
    burn_verification_time,
    check_username,
    hash_password,
    needs_rehash,
    new_csrf_token,
    new_session_token,
    token_sha256,
    verify_password,
)
from triage_runtime.db.models import AppUser, AuditLog, LoginAttempt, WebSession

log = logging.getLogger(__name__)

MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
DEFAULT_SESSION_TTL = timedelta(hours=8)
# Namespace of the advisory locks that serialise logins per user name and per address.
_LOCK_NAMESPACE = 0x7472


class AuthStoreError(Exception):
    """A user-management request the store refuses."""


class UserExistsError(AuthStoreError):
    """A user with that name exists already."""


class UnknownUserError(AuthStoreError):
    """No user has that name."""


class RateLimitedError(AuthStoreError):
    """Too many failed logins for the user name or the address; try again later."""

    def __init__(self, *, retry_after: timedelta) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after}")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class User:
    """A review UI user as the application sees it (never with its password hash)."""

    id: int
    username: str
    role: Role
    disabled: bool
    created_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session: whose it is, its CSRF token and when it ends."""

    user: User
    csrf_token: str
    expires_at: datetime


def _user(row: AppUser) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        disabled=row.disabled,
        created_at=row.created_at,
        last_login_at=row.last_login_at,
    )


def _lock_key(kind: str, value: str) -> int:
    # A signed 32-bit key, as pg_advisory_xact_lock(int, int) takes.
    return zlib.crc32(f"{kind}:{value}".encode()) - 2**31


class AuthStore:
    """Users, login attempts, sessions and audit rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- users ---------------------------------------------------------------------------

    async def create_user(self, username: str, password: str, role: Role | str) -> User:
        """Create a user; raise UserExistsError, PasswordPolicyError or InvalidUsernameError."""
        check_username(username)
        role = Role(role)
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self._sessions() as session:
            row = AppUser(username=username, password_hash=password_hash, role=role.value)
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise UserExistsError(f"a user named {username!r} exists") from exc
            await session.refresh(row)
            log.info("created user %s with role %s", username, role.value)
            return _user(row)

    async def get_user(self, username: str) -> User | None:
        """Return the user named ``username``, or None."""
        async with self._sessions() as session:
            row = await session.scalar(select(AppUser).where(AppUser.username == username))
            return _user(row) if row is not None else None

    async def list_users(self) -> list[User]:
        """Return every user, by name."""
        async with self._sessions() as session:
            rows = (await session.scalars(select(AppUser).order_by(AppUser.username))).all()
            return [_user(r) for r in rows]

    async def set_password(self, username: str, password: str) -> None:
        """Replace a user's password and end their sessions; raise UnknownUserError."""
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self._sessions() as session, session.begin():
            user_id = await session.scalar(
                update(AppUser)
                .where(AppUser.username == username)
                .values(password_hash=password_hash)
                .returning(AppUser.id)
            )
            if user_id is None:
                raise UnknownUserError(f"no user named {username!r}")
            await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
        log.info("password changed for user %s; their sessions ended", username)

    async def disable_user(self, username: str) -> None:
        """Disable a user and end their sessions; raise UnknownUserError."""
        await self._set_disabled(username, disabled=True)

    async def enable_user(self, username: str) -> None:
        """Enable a disabled user; raise UnknownUserError."""
        await self._set_disabled(username, disabled=False)

    async def _set_disabled(self, username: str, *, disabled: bool) -> None:
        async with self._sessions() as session, session.begin():
            user_id = await session.scalar(
                update(AppUser)
                .where(AppUser.username == username)
                .values(disabled=disabled)
                .returning(AppUser.id)
            )
            if user_id is None:
                raise UnknownUserError(f"no user named {username!r}")
            if disabled:
                await session.execute(delete(WebSession).where(WebSession.user_id == user_id))
        log.info("user %s %s", username, "disabled" if disabled else "enabled")

    # -- logins --------------------------------------------------------------------------

    async def authenticate(self, username: str, password: str, remote_addr: str) -> User | None:
        """Check a login and record the attempt; None if refused, RateLimitedError if limited."""
        username = username[:80]
        remote_addr = remote_addr[:64]
        async with self._sessions() as session, session.begin():
            await self._lock_login(session, username, remote_addr)
            retry_after = await self._rate_limited(session, username, remote_addr)
            if retry_after is None:
                return await self._check_login(session, username, password, remote_addr)
            # Recorded as a failure (and committed before raising), so an ongoing attack
            # keeps the limit in place.
            await self._record(session, username, remote_addr, success=False)
        log.warning("login rate-limited for user %s from %s", username, remote_addr)
        raise RateLimitedError(retry_after=retry_after)

    async def _check_login(
        self, session: AsyncSession, username: str, password: str, remote_addr: str
    ) -> User | None:
        row = await session.scalar(select(AppUser).where(AppUser.username == username))
        if row is None:
            await asyncio.to_thread(burn_verification_time, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, row.password_hash)
        if row is None or not ok or row.disabled:
            await self._record(session, username, remote_addr, success=False)
            log.info("login refused for user %s from %s", username, remote_addr)
            return None
        if needs_rehash(row.password_hash):
            # Stronger parameters from now on; a password today's policy refuses keeps its hash.
            with contextlib.suppress(PasswordPolicyError):
                row.password_hash = await asyncio.to_thread(hash_password, password)
        row.last_login_at = await session.scalar(select(func.now()))
        await self._record(session, username, remote_addr, success=True)
        log.info("login for user %s from %s", username, remote_addr)
        return _user(row)

    @staticmethod
    async def _lock_login(session: AsyncSession, username: str, remote_addr: str) -> None:
        # Concurrent attempts for one name or address take turns, so none slips past the count.
        # The two locks are always taken in key order, so two logins never deadlock.
        keys = sorted({_lock_key("user", username), _lock_key("addr", remote_addr)})
        for key in keys:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:ns, :key)"),
                {"ns": _LOCK_NAMESPACE, "key": key},
            )

    @staticmethod
    async def _rate_limited(
        session: AsyncSession, username: str, remote_addr: str
    ) -> timedelta | None:
        since = func.now() - FAILURE_WINDOW
        failed = LoginAttempt.success.is_(False) & (LoginAttempt.at > since)
        counts = (
            await session.execute(
                select(
                    func.count().filter(LoginAttempt.username == username),
                    func.count().filter(LoginAttempt.remote_addr == remote_addr),
                    func.now(),
                ).where(
                    failed,
                    or_(LoginAttempt.username == username, LoginAttempt.remote_addr == remote_addr),
                )
            )
        ).one()
        by_user, by_addr, now = int(counts[0]), int(counts[1]), counts[2]
        limited = []
        if by_user >= MAX_FAILURES:
            limited.append(LoginAttempt.username == username)
        if by_addr >= MAX_FAILURES:
            limited.append(LoginAttempt.remote_addr == remote_addr)
        if not limited:
            return None
        # Free again once the MAX_FAILURES-th most recent failure leaves the window.
        oldest_counted = await session.scalar(
            select(LoginAttempt.at)
            .where(failed, or_(*limited))
            .order_by(LoginAttempt.at.desc())
            .offset(MAX_FAILURES - 1)
            .limit(1)
        )
        if oldest_counted is None:
            return FAILURE_WINDOW
        return max(oldest_counted + FAILURE_WINDOW - now, timedelta(seconds=1))

    @staticmethod
    async def _record(
        session: AsyncSession, username: str, remote_addr: str, *, success: bool
    ) -> None:
        await session.execute(
            insert(LoginAttempt).values(username=username, remote_addr=remote_addr, success=success)
        )

    # -- sessions ------------------------------------------------------------------------

    async def start_session(
        self, user_id: int, ttl: timedelta = DEFAULT_SESSION_TTL
    ) -> tuple[str, str]:
        """Start a session for ``user_id``; return (token for the cookie, CSRF token)."""
        token, csrf = new_session_token(), new_csrf_token()
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(WebSession).values(
                    token_sha256=token_sha256(token),
                    user_id=user_id,
                    csrf_token=csrf,
                    expires_at=func.now() + ttl,
                )
            )
        return token, csrf

    async def session_user(self, token: str) -> SessionInfo | None:
        """Return the live session ``token`` names; None if unknown, expired or disabled."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(AppUser, WebSession.csrf_token, WebSession.expires_at)
                    .join(WebSession, WebSession.user_id == AppUser.id)
                    .where(
                        WebSession.token_sha256 == token_sha256(token),
                        WebSession.expires_at > func.now(),
                        AppUser.disabled.is_(False),
                    )
                )
            ).first()
        if found is None:
            return None
        row, csrf, expires_at = found
        return SessionInfo(user=_user(row), csrf_token=csrf, expires_at=expires_at)

    async def end_session(self, token: str) -> bool:
        """End the session ``token`` names; say whether there was one."""
        async with self._sessions() as session, session.begin():
            ended = await session.scalar(
                delete(WebSession)
                .where(WebSession.token_sha256 == token_sha256(token))
                .returning(WebSession.user_id)
            )
        return ended is not None

    async def purge_expired(self) -> int:
        """Delete expired sessions and login attempts older than the window; return how many."""
        async with self._sessions() as session, session.begin():
            sessions = await session.execute(
                delete(WebSession).where(WebSession.expires_at <= func.now())
            )
            attempts = await session.execute(
                delete(LoginAttempt).where(LoginAttempt.at < func.now() - FAILURE_WINDOW)
            )
        return int(getattr(sessions, "rowcount", 0)) + int(getattr(attempts, "rowcount", 0))

    # -- audit ---------------------------------------------------------------------------

    async def audit(
        self,
        actor: str,
        action: str,
        document_id: str | None = None,
        review_item_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Append a row to the audit log; return its id."""
        async with self._sessions() as session, session.begin():
            return await audit.record(
                session,
                actor=actor,
                action=action,
                document_id=document_id,
                review_item_id=review_item_id,
                detail=detail,
            )

    async def audit_trail(
        self, *, document_id: str | None = None, limit: int = 100
    ) -> Sequence[AuditLog]:
        """Return the newest audit rows first, optionally only those about ``document_id``."""
        query = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
        if document_id is not None:
            query = query.where(AuditLog.document_id == document_id)
        async with self._sessions() as session:
            return (await session.scalars(query)).all()
