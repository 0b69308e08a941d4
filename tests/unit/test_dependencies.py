"""What each package pulls in, as locked: ingest, the router and the review UI never bring
torch, scikit-learn or matplotlib; the classifier and the CLI bring torch only with their
embeddings extra.

These tests read uv.lock, not the installed environment: the dev environment has every extra
installed, so importing there proves nothing about a service installed alone. A second test
checks that uv.lock still records what each pyproject.toml declares, so a dependency added
without relocking cannot hide from the first. bench/install_footprint.py installs each
service alone and measures it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "scikit-learn", "matplotlib", "sentence-transformers"}


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(lock: Mapping[str, Any], name: str, extras: Iterable[str] = ()) -> set[str]:
    """Every package that ``name`` installed with ``extras`` needs as locked, itself included.

    Follows each package's ``dependencies`` and, for each extra asked of it, its
    ``optional-dependencies``; a dependency entry's ``extra = [...]`` asks those extras of the
    package it names. A dependency entry with a ``version`` picks that one of several locked
    versions. Markers are ignored: a dependency on any platform counts, which makes "never in
    the closure" the stricter claim.
    """
    locked: dict[str, list[Mapping[str, Any]]] = {}
    for package in lock["package"]:
        locked.setdefault(normalize(package["name"]), []).append(package)

    def find(entry: Mapping[str, Any]) -> Mapping[str, Any]:
        candidates = locked[normalize(entry["name"])]
        if "version" in entry:
            candidates = [each for each in candidates if each["version"] == entry["version"]]
        if len(candidates) != 1:
            raise ValueError(f"{len(candidates)} locked packages match {dict(entry)}")
        return candidates[0]

    root = find({"name": name})
    unknown = set(extras) - set(root.get("optional-dependencies", {}))
    if unknown:
        raise KeyError(f"{name} has no extra {sorted(unknown)} in the lock")
    todo: list[tuple[Mapping[str, Any], str | None]] = [(root, None)]
    todo += [(root, extra) for extra in extras]
    seen: set[tuple[str, str, str | None]] = set()
    while todo:
        package, extra = todo.pop()
        key = (normalize(package["name"]), package["version"], extra)
        if key in seen:
            continue
        seen.add(key)
        if extra is None:
            entries = package.get("dependencies", [])
        else:
            entries = package.get("optional-dependencies", {}).get(extra, [])
        for entry in entries:
            dependency = find(entry)
            todo.append((dependency, None))
            todo += [(dependency, wanted) for wanted in entry.get("extra", [])]
    return {name for name, _version, _extra in seen}


# The closure itself, on a lock small enough to read.

FAKE_LOCK: dict[str, Any] = {
    "package": [
        {
            "name": "App",
            "version": "1",
            "dependencies": [{"name": "lib"}, {"name": "web", "extra": ["fast"]}],
            "optional-dependencies": {"gpu": [{"name": "big_model"}]},
        },
        {"name": "lib", "version": "1", "dependencies": [{"name": "app"}]},  # a cycle
        {
            "name": "web",
            "version": "1",
            "dependencies": [{"name": "winonly", "marker": "sys_platform == 'win32'"}],
            "optional-dependencies": {"fast": [{"name": "speedups"}], "slow": [{"name": "x"}]},
        },
        {"name": "speedups", "version": "1"},
        {"name": "winonly", "version": "1"},
        {"name": "x", "version": "1"},
        {"name": "big-model", "version": "1", "dependencies": [{"name": "blas", "version": "2"}]},
        {"name": "blas", "version": "1"},
        {"name": "blas", "version": "2", "dependencies": [{"name": "fortran"}]},
        {"name": "fortran", "version": "1"},
    ]
}


def test_closure_follows_dependencies_and_the_extras_entries_ask_for() -> None:
    # web's "fast" extra is asked for, "slow" is not; winonly counts whatever its marker says.
    assert closure(FAKE_LOCK, "app") == {"app", "lib", "web", "speedups", "winonly"}


def test_closure_takes_optional_dependencies_only_for_the_extras_asked() -> None:
    with_gpu = closure(FAKE_LOCK, "app", ["gpu"])
    assert with_gpu - closure(FAKE_LOCK, "app") == {"big-model", "blas", "fortran"}


def test_closure_picks_the_version_an_entry_names() -> None:
    assert closure(FAKE_LOCK, "big_model") == {"big-model", "blas", "fortran"}
    with pytest.raises(ValueError, match="2 locked packages match"):
        closure(FAKE_LOCK, "blas")  # two versions locked, none named


def test_closure_refuses_an_extra_the_package_does_not_have() -> None:
    with pytest.raises(KeyError, match="no extra"):
        closure(FAKE_LOCK, "app", ["gpus"])


# The project's lock.

LOCK = tomllib.loads((ROOT / "uv.lock").read_text())


@pytest.mark.parametrize("service", ["triage-ingest", "triage-router", "triage-review-ui"])
def test_light_services_lock_no_torch_scikit_learn_or_matplotlib(service: str) -> None:
    needs = closure(LOCK, service)
    assert {"triage-runtime", "fastapi"} <= needs  # the closure found the real dependencies
    assert needs & (HEAVY | {"triage-ml"}) == set()


@pytest.mark.parametrize("library", ["triage-text", "triage-runtime"])
def test_text_and_runtime_lock_no_torch_or_scikit_learn(library: str) -> None:
    needs = closure(LOCK, library)
    assert "triage-contracts" in needs
    assert needs & (HEAVY | {"numpy", "triage-ml"}) == set()


def test_classifier_without_extras_has_scikit_learn_but_not_torch() -> None:
    needs = closure(LOCK, "triage-classifier")
    assert {"scikit-learn", "numpy", "triage-ml"} <= needs
    assert needs & {"torch", "sentence-transformers", "matplotlib"} == set()


def test_classifier_with_embeddings_has_torch() -> None:
    needs = closure(LOCK, "triage-classifier", ["embeddings"])
    assert {"torch", "sentence-transformers", "scikit-learn"} <= needs
    assert "matplotlib" not in needs


def test_cli_without_extras_has_no_torch() -> None:
    # The image for jobs (migrations, the starter model) installs it so.
    needs = closure(LOCK, "triage-cli")
    assert {"scikit-learn", "matplotlib", "triage-ml"} <= needs
    assert needs & {"torch", "sentence-transformers"} == set()
    assert {"torch", "sentence-transformers"} <= closure(LOCK, "triage-cli", ["embeddings"])


def _declared(requirements: Iterable[str], extra: str = "") -> set[tuple[str, str, str]]:
    """(name, its extras, the extra of ours it belongs to) of each requirement string."""
    declared = set()
    for line in requirements:
        requirement = Requirement(line)
        declared.add((normalize(requirement.name), ",".join(sorted(requirement.extras)), extra))
    return declared


def _recorded(member: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """The same, from a workspace member's ``metadata.requires-dist`` in uv.lock."""
    recorded = set()
    for entry in member["metadata"]["requires-dist"]:
        extra = re.search(r"extra == '([^']+)'", entry.get("marker", ""))
        extras = ",".join(sorted(entry.get("extras", [])))
        recorded.add((normalize(entry["name"]), extras, extra.group(1) if extra else ""))
    return recorded


MEMBERS = [each for each in LOCK["package"] if each["name"] in LOCK["manifest"]["members"]]


@pytest.mark.parametrize("member", MEMBERS, ids=lambda member: member["name"])
def test_the_lock_records_what_each_member_declares(member: Mapping[str, Any]) -> None:
    source = member["source"].get("editable") or member["source"]["virtual"]
    project = tomllib.loads((ROOT / source / "pyproject.toml").read_text())["project"]
    declared = _declared(project.get("dependencies", []))
    for extra, requirements in project.get("optional-dependencies", {}).items():
        declared |= _declared(requirements, extra)
    assert declared == _recorded(member), f"uv.lock is stale for {member['name']}: run uv lock"


def test_every_member_is_checked() -> None:
    assert len(MEMBERS) == len(LOCK["manifest"]["members"]) == 10
