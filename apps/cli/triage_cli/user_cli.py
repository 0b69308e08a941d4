"""Review UI user commands: add, disable, enable, list and set a password.

The database is TRIAGE_DATABASE_URL. Passwords are read with a hidden prompt (typed twice) or,
for scripts, as one line from stdin with --password-stdin; they are never taken as arguments,
which would leave them in shell history and the process list. Every change is written to the
audit log with the actor ``cli:<OS user>``.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from triage_cli.console import console, stdout
from triage_cli.database import run_on_database

if TYPE_CHECKING:
    from triage_runtime.accounts.store import AuthStore

user_app = typer.Typer(
    help="Review UI users (only scrypt hashes of their passwords are stored).",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")


class RoleName(StrEnum):
    """The roles a user can have."""

    REVIEWER = "reviewer"
    ADMIN = "admin"


UsernameArgument = Annotated[str, typer.Argument(help="The user's sign-in name.")]
PasswordStdinOption = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password as one line from stdin (for scripts)."
    ),
]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]{escape(message)}[/red]", highlight=False)
    return typer.Exit(code)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise _fail("--password-stdin: nothing on stdin", 2)
        return line.rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _run(action: Callable[[AuthStore], Awaitable[T]]) -> T:
    """Run ``action`` against the store on TRIAGE_DATABASE_URL; a refused name or password
    exits with 2, any other store error with 1."""
    from triage_runtime.accounts.credentials import InvalidUsernameError, PasswordPolicyError
    from triage_runtime.accounts.store import AuthStore, AuthStoreError

    try:
        return run_on_database(
            AuthStore, action, refused=(InvalidUsernameError, PasswordPolicyError), code=2
        )
    except AuthStoreError as exc:
        raise _fail(str(exc)) from exc


@user_app.command("add")
def user_add(
    username: UsernameArgument,
    role: Annotated[RoleName, typer.Option(help="What the user may do.")] = RoleName.REVIEWER,
    password_stdin: PasswordStdinOption = False,
) -> None:
    """Add a user; the password is prompted for (twice) or read from stdin."""
    from triage_runtime.accounts.credentials import (
        InvalidUsernameError,
        PasswordPolicyError,
        check_password_policy,
        check_username,
    )

    try:
        check_username(username)
    except InvalidUsernameError as exc:
        raise _fail(str(exc), 2) from exc
    password = _read_password(password_stdin)
    try:
        check_password_policy(password)
    except PasswordPolicyError as exc:
        raise _fail(str(exc), 2) from exc

    async def add(store: AuthStore) -> None:
        await store.create_user(username, password, role.value)
        await store.audit(_actor(), "user_add", detail={"username": username, "role": role.value})

    _run(add)
    console.print(f"added {role.value} {escape(repr(username))}", highlight=False)


@user_app.command("passwd")
def user_passwd(username: UsernameArgument, password_stdin: PasswordStdinOption = False) -> None:
    """Set a user's password (their sessions end); prompted for or read from stdin."""
    from triage_runtime.accounts.credentials import PasswordPolicyError, check_password_policy

    password = _read_password(password_stdin)
    try:
        check_password_policy(password)
    except PasswordPolicyError as exc:
        raise _fail(str(exc), 2) from exc

    async def passwd(store: AuthStore) -> None:
        await store.set_password(username, password)
        await store.audit(_actor(), "user_password", detail={"username": username})

    _run(passwd)
    console.print(f"password set for {escape(repr(username))}", highlight=False)


@user_app.command("disable")
def user_disable(username: UsernameArgument) -> None:
    """Disable a user at once: their sessions end and they can no longer sign in.

    The last enabled admin is never disabled: make or enable another admin first.
    """

    async def disable(store: AuthStore) -> None:
        await store.disable_user(username)
        await store.audit(_actor(), "user_disable", detail={"username": username})

    _run(disable)
    console.print(f"disabled {escape(repr(username))}", highlight=False)


@user_app.command("enable")
def user_enable(username: UsernameArgument) -> None:
    """Let a disabled user sign in again."""

    async def enable(store: AuthStore) -> None:
        await store.enable_user(username)
        await store.audit(_actor(), "user_enable", detail={"username": username})

    _run(enable)
    console.print(f"enabled {escape(repr(username))}", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """List users with their role, state, creation and last sign-in."""
    from triage_runtime.accounts.store import User

    async def everyone(store: AuthStore) -> list[User]:
        return await store.list_users()

    table = Table("username", "role", "state", "created", "last login")
    for user in _run(everyone):
        table.add_row(
            escape(user.username),
            user.role.value,
            "disabled" if user.disabled else "active",
            f"{user.created_at:%Y-%m-%d %H:%M}",
            f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "",
        )
    stdout.print(table)
