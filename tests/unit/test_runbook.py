"""Every `triage` command in docs/runbook.md exists and its options parse."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import typer

from tests.helpers import REPO_ROOT
from triage_cli.main import app

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def _commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(), re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            words = shlex.split(line)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # environment assignments before the command
            if words and words[0] == "triage":
                commands.append(words[1:])
    return commands


def _parse(command: Any, args: list[str], parent: Any) -> None:
    """Parse args as the CLI would, down to the leaf command, without running anything.

    (Typer carries its own copy of click, so the command classes are duck-typed here.)
    """
    ctx = command.make_context(command.name or "triage", list(args), parent=parent)
    if hasattr(command, "resolve_command"):
        name, sub, rest = command.resolve_command(ctx, ctx._protected_args + ctx.args)
        assert sub is not None, f"no command {name!r}"
        _parse(sub, rest, ctx)


def test_the_runbook_has_commands() -> None:
    assert len(_commands()) >= 15


@pytest.mark.parametrize("args", _commands(), ids=" ".join)
def test_runbook_command_parses(args: list[str]) -> None:
    _parse(typer.main.get_command(app), args, None)


def test_a_wrong_option_is_caught() -> None:
    with pytest.raises(Exception, match="No such option"):
        _parse(typer.main.get_command(app), ["replay", "--sinse", "2h"], None)
    with pytest.raises(Exception, match="No such command"):
        _parse(typer.main.get_command(app), ["model", "rollbak", "champion"], None)
