"""Review UI users, login attempts, sessions and the audit log in PostgreSQL.

Sign-in failures slow further attempts without locking anyone out (``throttle``): per user
name and address, or per browser that signed in as that user before, with ceilings per user
name and per address far above honest use. Nothing here logs a password or a token.
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

from sqlalchemy import ColumnElement, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
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
from triage_runtime.accounts.throttle import LoginThrottle, friendly_wait
from triage_runtime.db.models import AppUser, AuditLog, KnownDevice, LoginAttempt, WebSession

log = logging.getLogger(__name__)

DEFAULT_SESSION_TTL = timedelta(hours=8)
# Namespace of the advisory locks that serialise sign-ins per back-off key.
_LOCK_NAMESPACE = 0x7472


class AuthStoreError(Exception):
    """A user-management request the store refuses."""


class UserExistsError(AuthStoreError):
    """A user with that name exists already."""


class UnknownUserError(AuthStoreError):
    """No user has that name."""


class OwnAccountError(AuthStoreError):
    """An admin may not disable their own account."""


class LastAdminError(AuthStoreError):
    """The change would leave no enabled admin."""


class RateLimitedError(AuthStoreError):
    """Too many failed sign-ins lately: this attempt must wait ``retry_after``."""

    def __init__(self, *, retry_after: timedelta) -> None:
        super().__init__(
            f"too many failed sign-ins; please try again in {friendly_wait(retry_after)}"
        )
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

    def __init__(self, engine: AsyncEngine, throttle: LoginThrottle | None = None) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._throttle = throttle or LoginThrottle()

    @property
    def throttle(self) -> LoginThrottle:
        """The sign-in back-off this store applies."""
        return self._throttle

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

    async def disable_user(self, username: str, *, by: str | None = None) -> None:
        """Disable a user and end their sessions; raise UnknownUserError, or
        LastAdminError rather than leave no admin, or OwnAccountError if ``by`` is the user."""
        if by == username:
            raise OwnAccountError("you cannot disable your own account; ask another admin")
        await self._set_disabled(username, disabled=True)

    async def enable_user(self, username: str) -> None:
        """Enable a disabled user; raise UnknownUserError."""
        await self._set_disabled(username, disabled=False)

    async def _set_disabled(self, username: str, *, disabled: bool) -> None:
        async with self._sessions() as session, session.begin():
            if disabled:
                # Locks every enabled admin, so two admins disabling each other take turns
                # and the second sees that only one is left.
                admins = (
                    await session.scalars(
                        select(AppUser.username)
                        .where(AppUser.role == Role.ADMIN.value, AppUser.disabled.is_(False))
                        .order_by(AppUser.id)
                        .with_for_update()
                    )
                ).all()
                if list(admins) == [username]:
                    raise LastAdminError(
                        f"{username!r} is the last enabled admin; make or enable another first"
                    )
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

    async def authenticate(
        self, username: str, password: str, remote_addr: str, device: str | None = None
    ) -> User | None:
        """Check a login and record it; None if refused, RateLimitedError while it must wait.

        ``device`` is the known-browser cookie's token, if the browser sent one: a browser
        that signed in as ``username`` before is held only to its own failures.
        """
        username = username[:80]
        remote_addr = remote_addr[:64]
        async with self._sessions() as session, session.begin():
            known = await self._known_device(session, username, device)
            # The key: this user name from this browser if it is known, else from this address.
            key = (LoginAttempt.username == username) & (
                LoginAttempt.device_sha256 == known
                if known
                else (LoginAttempt.remote_addr == remote_addr)
                & LoginAttempt.device_sha256.is_(None)
            )
            await self._lock_login(session, f"{username}:{known or remote_addr}")
            wait = await self._wait(session, key, username, remote_addr, known=known is not None)
            if not wait:
                return await self._check_login(session, username, password, remote_addr, known)
        # Not recorded: waiting out the back-off must not lengthen it.
        log.warning("login held back for user %s from %s for %s", username, remote_addr, wait)
        raise RateLimitedError(retry_after=wait)

    async def _check_login(
        self,
        session: AsyncSession,
        username: str,
        password: str,
        remote_addr: str,
        device: str | None,
    ) -> User | None:
        row = await session.scalar(select(AppUser).where(AppUser.username == username))
        if row is None:
            await asyncio.to_thread(burn_verification_time, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, row.password_hash)
        if row is None or not ok or row.disabled:
            await self._record(session, username, remote_addr, device, success=False)
            log.info("login refused for user %s from %s", username, remote_addr)
            return None
        if needs_rehash(row.password_hash):
            # Stronger parameters from now on; a password today's policy refuses keeps its hash.
            with contextlib.suppress(PasswordPolicyError):
                row.password_hash = await asyncio.to_thread(hash_password, password)
        row.last_login_at = await session.scalar(select(func.now()))
        await self._record(session, username, remote_addr, device, success=True)
        log.info("login for user %s from %s", username, remote_addr)
        return _user(row)

    async def _known_device(
        self, session: AsyncSession, username: str, device: str | None
    ) -> str | None:
        """The SHA-256 of ``device`` if that browser signed in as ``username`` lately."""
        if not device:
            return None
        digest = token_sha256(device)
        found = await session.scalar(
            select(KnownDevice.token_sha256)
            .join(AppUser, AppUser.id == KnownDevice.user_id)
            .where(
                KnownDevice.token_sha256 == digest,
                AppUser.username == username,
                KnownDevice.last_used_at > func.now() - timedelta(days=self._throttle.device_days),
            )
        )
        return digest if found else None

    async def remember_device(self, user: User, device: str | None) -> str:
        """Mark this browser as known for ``user`` after a sign-in; return its cookie's token.

        A token the browser already holds is kept if it is known (for anyone), so a shared
        browser is known for each of its users; otherwise a fresh one is made.
        """
        async with self._sessions() as session, session.begin():
            held = (
                device
                and await session.scalar(
                    select(KnownDevice.token_sha256)
                    .where(KnownDevice.token_sha256 == token_sha256(device))
                    .limit(1)
                )
                is not None
            )
            token = device if held and device else new_session_token()
            await session.execute(
                pg_insert(KnownDevice)
                .values(token_sha256=token_sha256(token), user_id=user.id)
                .on_conflict_do_update(
                    index_elements=[KnownDevice.token_sha256, KnownDevice.user_id],
                    set_={"last_used_at": func.now()},
                )
            )
        return token

    @staticmethod
    async def _lock_login(session: AsyncSession, key: str) -> None:
        # Concurrent attempts on one key take turns, so none slips past its count. The
        # ceilings are read without a lock: a burst may pass one by its own size.
        await session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, :key)"),
            {"ns": _LOCK_NAMESPACE, "key": _lock_key("login", key)},
        )

    async def _wait(
        self,
        session: AsyncSession,
        key: ColumnElement[bool],
        username: str,
        remote_addr: str,
        *,
        known: bool,
    ) -> timedelta:
        """How long this attempt must still wait: its key's back-off and, for a browser not
        known for the user name, the ceilings per user name and per address."""
        throttle = self._throttle
        now = await session.scalar(select(func.now()))
        assert now is not None
        since = now - throttle.window
        # A success on the key starts its count afresh; the ceilings count every failure.
        last_success = await session.scalar(
            select(func.max(LoginAttempt.at)).where(
                key, LoginAttempt.success, LoginAttempt.at > since
            )
        )
        checks = [(throttle.per_key, key, max(since, last_success or since))]
        if not known:
            unknown = LoginAttempt.device_sha256.is_(None)
            checks.append((throttle.per_user, (LoginAttempt.username == username) & unknown, since))
            checks.append(
                (throttle.per_address, (LoginAttempt.remote_addr == remote_addr) & unknown, since)
            )
        waits = [timedelta(0)]
        for backoff, where, after in checks:
            failures, last = (
                await session.execute(
                    select(func.count(), func.max(LoginAttempt.at)).where(
                        where, LoginAttempt.success.is_(False), LoginAttempt.at > after
                    )
                )
            ).one()
            waits.append(backoff.wait(int(failures), last, now))
        return max(waits)

    @staticmethod
    async def _record(
        session: AsyncSession,
        username: str,
        remote_addr: str,
        device: str | None,
        *,
        success: bool,
    ) -> None:
        await session.execute(
            insert(LoginAttempt).values(
                username=username, remote_addr=remote_addr, success=success, device_sha256=device
            )
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
