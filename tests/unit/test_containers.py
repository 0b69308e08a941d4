"""The per-service images as deploy/containers/Dockerfile declares them, read without building.

Each service has a target that runs its console script from a venv synced for that package
alone, and the CLI one for jobs; torch is locked into the classifier-embeddings image and
no other; the build stage
copies every workspace member's manifest (``uv sync --frozen`` fails without one); and
build.sh builds exactly the Dockerfile's targets. deploy/containers/check.sh checks the
built images themselves (docs/containers.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass, field

import pytest

from tests.unit.test_dependencies import LOCK, ROOT, closure

DOCKERFILE = ROOT / "deploy" / "containers" / "Dockerfile"
BUILD_SH = ROOT / "deploy" / "containers" / "build.sh"
SERVICES = ("ingest", "router", "review_ui", "classifier")
WORKSPACE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]


@dataclass
class Stage:
    """One ``FROM … AS name`` stage: what it is built from and what it does."""

    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every instruction with this keyword, in order."""
        return [arguments for each, arguments in self.instructions if each == keyword]


def stages(text: str) -> dict[str, Stage]:
    """The Dockerfile's named stages (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, arguments = line.partition(" ")
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", arguments.strip())
            assert match, f"every stage is named: {line}"
            current = found[match[2]] = Stage(match[2], match[1])
        elif current is not None:
            current.instructions.append((keyword, arguments.strip()))
    return found


STAGES = stages(DOCKERFILE.read_text())
FINAL = {name: stage for name, stage in STAGES.items() if stage.base == "runtime"}
FINAL.pop("build")


def synced(target: str) -> tuple[str, list[str]]:
    """The package and extras the target's venv stage syncs (its last, complete sync)."""
    source = re.fullmatch(r"--from=(\S+) /app/\.venv /app/\.venv", FINAL[target].all("COPY")[0])
    assert source, f"{target} copies a venv from a stage"
    command = STAGES[source[1]].all("RUN")[-1]
    assert "--no-install-workspace" not in command, "the last sync installs the workspace"
    package = re.search(r"--package (\S+)", command)
    assert package
    return package[1], re.findall(r"--extra (\S+)", command)


def test_each_service_and_the_cli_have_a_target_that_runs_their_console_script() -> None:
    scripts = {}
    for package in [*(f"services/{service}" for service in SERVICES), "apps/cli"]:
        project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())
        scripts.update(project["project"]["scripts"])
    entrypoints = {
        target: json.loads(stage.all("ENTRYPOINT")[-1]) for target, stage in FINAL.items()
    }
    assert {command for command, *_ in entrypoints.values()} == set(scripts)
    for target, (command, *_) in entrypoints.items():
        package, _extras = synced(target)
        assert scripts[command].split(".")[0] == package.replace("-", "_"), target


def test_only_the_embeddings_classifier_image_has_torch() -> None:
    with_torch = set()
    for target in FINAL:
        package, extras = synced(target)
        needs = closure(LOCK, package, extras)
        assert "triage-runtime" in needs  # the closure found the real dependencies
        if "torch" in needs:
            with_torch.add(target)
    assert with_torch == {"classifier-embeddings"}
    assert synced("classifier") == ("triage-classifier", [])


def test_every_image_runs_as_the_unprivileged_user_with_data_a_volume() -> None:
    for target, stage in FINAL.items():
        assert stage.all("USER") == ["triage"], target
        assert stage.all("VOLUME") == ['["/data"]'], target
        host = [each for each in stage.all("ENV") if re.search(r"TRIAGE_\w+_HOST=0\.0\.0\.0", each)]
        assert bool(host) == (target != "cli"), f"{target} listens on every address"


def test_the_build_stage_copies_every_workspace_members_manifest() -> None:
    copied = {
        arguments.split()[0]
        for arguments in STAGES["build"].all("COPY")
        if arguments.split()[0].endswith("pyproject.toml")
    }
    members = {
        str(path.relative_to(ROOT))
        for pattern in WORKSPACE["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    assert len(members) == 9
    assert copied == members | {"pyproject.toml"}


def test_build_sh_builds_exactly_the_dockerfiles_targets() -> None:
    listed = re.search(r"^ALL_TARGETS=\(([^)]*)\)", BUILD_SH.read_text(), re.MULTILINE)
    assert listed
    assert sorted(listed[1].split()) == sorted(FINAL)


def test_build_sh_refuses_an_unknown_target_in_one_line() -> None:
    result = subprocess.run(
        ["bash", str(BUILD_SH), "classifer"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown target classifer "
        "(one of: ingest router review-ui classifier classifier-embeddings cli)"
    ]


@pytest.mark.parametrize("script", ["build.sh", "check.sh", "setup.sh"])
def test_each_script_explains_itself(script: str) -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "deploy" / "containers" / script), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Usage: deploy/containers/{script}")
