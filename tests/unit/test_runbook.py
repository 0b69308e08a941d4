"""Every `triage` and `triage-<service>` command in docs/runbook.md exists and parses."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest
import typer

from tests.helpers import REPO_ROOT
from triage_cli.main import app
from triage_runtime.serve import arguments

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def _command_lines() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(), re.DOTALL)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            words = shlex.split(line)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # environment assignments before the command
            if words:
                commands.append(words)
    return commands


def _commands() -> list[list[str]]:
    return [words[1:] for words in _command_lines() if words[0] == "triage"]


def _service_commands() -> list[list[str]]:
    return [words for words in _command_lines() if words[0].startswith("triage-")]


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


@pytest.mark.parametrize("words", _service_commands(), ids=" ".join)
def test_runbook_service_command_exists_and_parses(words: list[str]) -> None:
    scripts = {
        name
        for path in REPO_ROOT.glob("services/*/pyproject.toml")
        for name in tomllib.loads(path.read_text())["project"]["scripts"]
    }
    assert words[0] in scripts
    arguments(words[0].removeprefix("triage-")).parse_args(words[1:])


def test_the_runbook_starts_services_with_their_own_commands() -> None:
    assert ["triage-classifier"] in _service_commands()


def test_a_wrong_option_is_caught() -> None:
    with pytest.raises(Exception, match="No such option"):
        _parse(typer.main.get_command(app), ["replay", "--sinse", "2h"], None)
    with pytest.raises(Exception, match="No such command"):
        _parse(typer.main.get_command(app), ["model", "rollbak", "champion"], None)
