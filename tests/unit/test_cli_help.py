"""Every ``triage`` command's --help reads at 80 columns: whole lines, whole option names."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from triage_cli.main import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    # Typer carries its own click, so groups are recognised by their sub-commands.
    for name, command in sorted(group.commands.items()):
        yield (*path, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_group(app)))


def test_every_command_is_listed() -> None:
    assert ("model", "train") in COMMANDS and ("replay",) in COMMANDS
    assert len(COMMANDS) > 40


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "triage")
def test_help_fits_80_columns_without_cutting_anything(path: tuple[str, ...]) -> None:
    shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines and lines[0].startswith("Usage: "), shown.output
    assert max(len(line) for line in lines) <= 80, shown.output
    assert "…" not in shown.output, shown.output  # nothing cut to fit a column
    command: Any = typer.main.get_group(app)
    for name in path:
        command = command.commands[name]
    for param in command.params:  # every option is named in full
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in shown.output, f"{opt} missing from {' '.join(path)} --help"
