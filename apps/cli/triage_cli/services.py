"""One-line errors for what a command cannot reach (PostgreSQL, Kafka) or was given wrong
(an option, a ``TRIAGE_*`` setting).

Every ``triage`` command runs inside :class:`TriageGroup`, so this is the one place where an
unreachable server or a bad option value becomes a line on stderr and an exit status instead
of a traceback, whichever code opened the connection. It is also where a command's spans are
recorded and exported when ``TRIAGE_OTLP_ENDPOINT`` is set (``triage_runtime.tracing``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from triage_cli.console import console
from triage_cli.exit_codes import UNREACHABLE, USAGE

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    # typer vendors click; its Context is what a group's invoke receives.
    from typer._click.core import Context

    from triage_runtime.kafka_start import BootstrapFailures


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what caused it, and the members of exception groups, once each."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _reason(text: str, *, secret: str | None) -> str:
    """The driver's own words, cut to their first line and without the password."""
    first = text.strip().splitlines()[0] if text.strip() else "no reason given"
    reason = first.rsplit("failed: ", 1)[-1].strip()
    return reason.replace(secret, "***") if secret else reason


def database_unreachable(exc: BaseException) -> str | None:
    """The line to print when ``exc`` says TRIAGE_DATABASE_URL could not be connected to."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

    from triage_runtime.settings import CommonSettings

    for cause in _causes(exc):
        # A failed connect carries no statement; a failed query does, and is not this.
        if isinstance(cause, OperationalError | InterfaceError) and cause.statement is None:
            assert isinstance(cause, DBAPIError)
            try:
                url = make_url(CommonSettings().database_url)
                where, secret = f"{url.host or 'localhost'}:{url.port or 5432}", url.password
            except ArgumentError:
                where, secret = "(an unparsable URL)", None
            reason = _reason(str(cause.orig or cause), secret=secret)
            return f"cannot reach the database at {where} (TRIAGE_DATABASE_URL): {reason}"
    return None


def kafka_unreachable(exc: BaseException, *, why: str | None = None) -> str | None:
    """The line to print when ``exc`` says TRIAGE_KAFKA_BOOTSTRAP could not be reached;
    ``why`` is aiokafka's reason for the last server it could not connect to, if known."""
    from aiokafka.errors import KafkaConnectionError

    from triage_runtime.kafka_start import cannot_reach
    from triage_runtime.settings import CommonSettings

    for cause in _causes(exc):
        if isinstance(cause, KafkaConnectionError):
            return cannot_reach(CommonSettings(), why)
    return None


def unreachable(exc: BaseException, *, kafka_why: str | None = None) -> str | None:
    """The one-line message for a server a command could not reach, or None."""
    return database_unreachable(exc) or kafka_unreachable(exc, why=kafka_why)


@contextmanager
def _traced() -> Iterator[Span]:
    """The command's spans, exported when TRIAGE_OTLP_ENDPOINT is set (as for the services)."""
    from triage_runtime.tracing import TracingUnavailableError, traced_command

    endpoint = None
    if os.environ.get("TRIAGE_OTLP_ENDPOINT"):  # the settings are read only when it is set
        from triage_runtime.settings import CommonSettings

        endpoint = CommonSettings().otlp_endpoint
    with ExitStack() as stack:
        try:
            span = stack.enter_context(traced_command("cli", otlp_endpoint=endpoint))
        except TracingUnavailableError as exc:
            console.print(f"[red]error: {escape(str(exc))}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from exc
        yield span


class TriageGroup(TyperGroup):
    """The ``triage`` command group: runs a sub-command and turns an unreachable server into
    one line and exit status ``UNREACHABLE``, and a bad option value or an invalid
    ``TRIAGE_*`` setting into one line (per setting) and ``USAGE``."""

    def invoke(self, ctx: Context) -> Any:
        """Run the sub-command, translating what it could not reach or was given wrong."""
        # aiokafka logs a refused bootstrap before raising it; the raised error is said here,
        # in one line, so that record would only repeat it as noise.
        # A sub-group (``triage dlq``) runs inside its parent's invoke: one filter serves both.
        from triage_runtime.kafka_start import bootstrap_failures

        with bootstrap_failures() as failures:
            # The outermost invoke (not a sub-group's) traces the command.
            return self._invoke(ctx, failures, outermost=failures.users == 1)

    def _invoke(self, ctx: Context, failures: BootstrapFailures, *, outermost: bool) -> Any:
        try:
            if not outermost:
                return super().invoke(ctx)
            with _traced() as span:
                try:
                    return super().invoke(ctx)
                finally:
                    span.update_name(f"triage {ctx.invoked_subcommand or ''}".strip())
        except typer.BadParameter as exc:
            message = escape(exc.format_message())
            console.print(f"[red]error: {message}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(USAGE) from exc
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # the command has said what went wrong
        except Exception as exc:
            from triage_runtime.setting_errors import settings_problem

            problems = next(filter(None, map(settings_problem, _causes(exc))), None)
            if problems is not None:
                for problem in problems:
                    console.print(
                        f"[red]error: {escape(problem)}[/red]", highlight=False, soft_wrap=True
                    )
                raise typer.Exit(USAGE) from exc
            line = unreachable(exc, kafka_why=failures.last)
            if line is None:
                raise
            console.print(f"[red]{escape(line)}[/red]", highlight=False, soft_wrap=True)
            raise typer.Exit(UNREACHABLE) from exc
