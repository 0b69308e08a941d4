"""The one way a service process starts: settings from the environment, JSON logs, uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import uvicorn

STARTUP_FAILURE = 3  # uvicorn's exit status when the server could not start


class ServiceSettings(Protocol):
    """What serving needs of a service's settings."""

    host: str
    port: int
    log_level: str
    log_json: bool
    header_timeout_seconds: float
    otlp_endpoint: str | None


S = TypeVar("S", bound=ServiceSettings)


def serve(
    *,
    service: str,
    settings_class: Callable[[], S],
    create_app: Callable[[S], Any],
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``--host``/``--port``, build the app and run it until SIGTERM or Ctrl-C."""
    args = arguments(service).parse_args(argv)

    import uvicorn
    from pydantic import ValidationError

    from triage_runtime.logs import configure_logging
    from triage_runtime.setting_errors import setting_errors
    from triage_runtime.tracing import TracingUnavailableError, configure_tracing

    try:
        settings = settings_class()
    except ValidationError as exc:  # one line per setting, not a traceback
        for line in setting_errors(exc, settings_class):
            sys.stderr.write(f"error: {line}\n")
        raise SystemExit(STARTUP_FAILURE) from None
    # Before the app is built, so that what building it logs is JSON too.
    configure_logging(service=service, level=settings.log_level, json_lines=settings.log_json)
    problem = None
    try:
        configure_tracing(service=service, otlp_endpoint=settings.otlp_endpoint)
    except TracingUnavailableError as exc:
        problem = str(exc)
    if problem is not None:  # one log line, not a traceback
        logging.getLogger("triage_runtime.serve").error(problem)
        raise SystemExit(STARTUP_FAILURE)
    application = create_app(settings)
    server = uvicorn.Server(
        server_config(application, settings, service=service, host=args.host, port=args.port)
    )
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, raised again after the shutdown
        server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)


def server_config(
    application: Any,
    settings: ServiceSettings,
    *,
    service: str,
    host: str | None = None,
    port: int | None = None,
) -> uvicorn.Config:
    """How a service's HTTP server runs (``serve`` and the tests that need a real server)."""
    import uvicorn

    from triage_runtime.headertimeout import header_timeout_protocol
    from triage_runtime.metrics import HEADER_TIMEOUTS

    return uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        # X-Forwarded-* are believed only from the proxies an app is told to trust (the review
        # UI's TRIAGE_REVIEW_UI_TRUSTED_PROXIES), never from any local caller.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
        # A request's headers are due within TRIAGE_HEADER_TIMEOUT_SECONDS (uvicorn has no
        # such deadline); this also pins the h11 protocol, whose internals it extends.
        http=header_timeout_protocol(
            settings.header_timeout_seconds, HEADER_TIMEOUTS.labels(service).inc
        ),
    )


def arguments(service: str) -> argparse.ArgumentParser:
    """The command line of ``triage-<service>``."""
    parser = argparse.ArgumentParser(
        prog=f"triage-{service}",
        description=(
            f"Run the Triage {service} service in the foreground until SIGTERM or Ctrl-C. "
            "Settings come from TRIAGE_* environment variables (see README.md, Configuration)."
        ),
    )
    parser.add_argument("--host", help="listen address (default: the service's settings)")
    parser.add_argument("--port", type=int, help="listen port (default: the service's settings)")
    return parser
