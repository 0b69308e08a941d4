"""Shared rich consoles: messages to stderr, results to stdout (so output can be piped)."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True)
stdout = Console(width=None if sys.stdout.isatty() else 140)
