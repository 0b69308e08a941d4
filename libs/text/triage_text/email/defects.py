"""How defects are named: short snake_case strings, sender text cut to a printable label."""

from __future__ import annotations

import re
from collections.abc import Iterable

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_UNSAFE_LABEL = re.compile(r"[^a-z0-9._+-]+")


def defect_names(defects: Iterable[object]) -> list[str]:
    return [snake_case(type(defect).__name__.removesuffix("Defect")) for defect in defects]


def snake_case(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower() or "defect"


def short_label(value: str) -> str:
    """Return a short, printable form of sender-supplied text for use inside a defect."""
    return _UNSAFE_LABEL.sub("_", value.strip().lower())[:40] or "_"


def unique(defects: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(defects))
