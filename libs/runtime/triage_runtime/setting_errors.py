"""Invalid ``TRIAGE_*`` settings as one line each, naming the variable, never a traceback.

Both entry points use it: ``triage_runtime.serve`` (a service refuses to start) and the
CLI's command group (a command refuses to run).
"""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_settings import BaseSettings


def settings_class_named(name: str) -> type[BaseSettings] | None:
    """The settings class called ``name`` (a ValidationError's ``title``), if exactly one is."""
    found: list[type[BaseSettings]] = []
    todo: list[type[BaseSettings]] = [BaseSettings]
    while todo:
        cls = todo.pop()
        if cls.__name__ == name and cls not in found:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found[0] if len(found) == 1 else None


def variable(settings_class: type[BaseSettings] | None, field: str) -> str:
    """The environment variable a field of ``settings_class`` is read from."""
    if field.startswith("TRIAGE_") or settings_class is None:  # an alias, as pydantic says it
        return field
    info = settings_class.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    return f"{prefix}{field}".upper()


def setting_errors(exc: ValidationError, settings_class: object = None) -> list[str]:
    """One ``TRIAGE_X: what is wrong`` line per error of ``settings_class`` (when it is not
    a settings class, the one named as ``exc``'s model); a rule across several settings names
    them itself. The value given is not repeated: it may be a secret."""
    known = (
        settings_class
        if isinstance(settings_class, type) and issubclass(settings_class, BaseSettings)
        else settings_class_named(exc.title)
    )
    lines = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"]
        if not loc:
            lines.append(message)
            continue
        where = variable(known, str(loc[0])) + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]
        )
        lines.append(f"{where}: {message}")
    return lines


def settings_problem(exc: BaseException) -> list[str] | None:
    """The lines for ``exc`` when it is a settings class refusing the environment, else None."""
    if not isinstance(exc, ValidationError):
        return None
    settings_class = settings_class_named(exc.title)
    return setting_errors(exc, settings_class) if settings_class is not None else None
