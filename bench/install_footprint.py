"""Install footprint per service: what each package brings with it when installed on its own.

For ingest, the router, the review UI, the classifier (without and with its embeddings extra)
and the CLI: a fresh virtual environment in a temporary directory (outside the checkout),
the package installed from the workspace with exactly the versions in uv.lock (`uv export
--locked --no-editable`, then `uv pip install --no-deps` of that list, the workspace members
as built wheels), then:

- the size of the files under site-packages (MiB, before anything has run, so no bytecode)
  and the number of distributions installed;
- whether torch, scikit-learn, matplotlib, sentence-transformers and numpy are installed;
- whether every installed version is the one in uv.lock and `uv pip check` passes;
- whether the console script answers --help (exit 0);
- whether `import triage_<name>.app` and `create_app()` work in that environment (nothing
  connects yet), and which of torch, sklearn, matplotlib and sentence_transformers are in
  sys.modules after them.

Prints one table, a progress line per target on stderr. Exits 1 if ingest, the router or the
review UI has torch, scikit-learn or matplotlib installed (or imports one), or if any
environment differs from uv.lock, any console script fails --help or any import fails.
Needs only the standard library and uv (installs come from uv's cache when it is warm).

    python bench/install_footprint.py [--only router] [--offline] [--keep] [--uv PATH]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Distributions the table reports, and those the three light services must not have.
REPORTED = ("torch", "scikit-learn", "matplotlib", "sentence-transformers", "numpy")
FORBIDDEN = ("torch", "scikit-learn", "matplotlib")
# Top-level modules looked for in sys.modules after importing the app.
HEAVY_MODULES = ("torch", "sklearn", "matplotlib", "sentence_transformers")

# Run inside the target environment with -I (no PYTHON* variables, no cwd on sys.path).
PROBE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
if hasattr(module, "create_app"):
    module.create_app()  # routes are registered here: a missing dependency shows now
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:]))))
"""


@dataclass(frozen=True)
class Target:
    """One package to install alone: its name, extras, console script and app module."""

    label: str
    package: str
    script: str
    module: str
    extras: tuple[str, ...] = ()
    light: bool = False  # must hold none of FORBIDDEN


TARGETS = (
    Target("ingest", "triage-ingest", "triage-ingest", "triage_ingest.app", light=True),
    Target("router", "triage-router", "triage-router", "triage_router.app", light=True),
    Target("review-ui", "triage-review-ui", "triage-review-ui", "triage_review_ui.app", light=True),
    Target("classifier", "triage-classifier", "triage-classifier", "triage_classifier.app"),
    Target(
        "classifier[embeddings]",
        "triage-classifier",
        "triage-classifier",
        "triage_classifier.app",
        extras=("embeddings",),
    ),
    Target("cli", "triage-cli", "triage", "triage_cli.main"),
    Target("cli[embeddings]", "triage-cli", "triage", "triage_cli.main", extras=("embeddings",)),
)


@dataclass
class Footprint:
    """What one target's environment holds and whether it works."""

    target: Target
    install_seconds: float
    mib: float
    dists: dict[str, str]
    python: str
    as_locked: bool
    help_ok: bool
    import_ok: bool
    imported: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Every check this environment fails, in words."""
        found = []
        if self.target.light:
            found += [f"{name} installed" for name in FORBIDDEN if name in self.dists]
            found += [f"{name} imported" for name in self.imported]
        if not self.as_locked:
            found.append("differs from uv.lock")
        if not self.help_ok:
            found.append(f"{self.target.script} --help failed")
        if not self.import_ok:
            found.append(f"import {self.target.module} failed")
        return [f"{self.target.label}: {problem}" for problem in found]


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def find_uv(given: str | None) -> str:
    """The uv to use: --uv, else on PATH, else the one ./dev installs into the stack dir."""
    stack = Path(os.environ.get("TRIAGE_STACK_DIR", ROOT / ".stack"))
    for candidate in (given, shutil.which("uv"), stack / "tools" / "bin" / "uv"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("uv not found: put it on PATH or pass --uv PATH")


def run(command: list[str], *, cwd: Path) -> None:
    """Run a uv command from the workspace root; on failure show its output and stop."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"failed: {' '.join(command)}")


def tree_mib(path: Path) -> float:
    """Size of the regular files under ``path`` in MiB (apparent sizes, symlinks not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            info = os.lstat(Path(folder) / name)
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total / (1024 * 1024)


def locked_versions() -> dict[str, str]:
    """Every package's version in uv.lock, by normalized name."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {normalize(package["name"]): package["version"] for package in lock["package"]}


def clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the dev environment."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PYTHON") and key not in {"VIRTUAL_ENV", "CONDA_PREFIX"}
    }


def measure(target: Target, work: Path, *, uv: str, offline: bool) -> Footprint:
    """Install ``target`` into a new environment under ``work`` and look at it."""
    venv = work / "venv"
    requirements = work / "requirements.txt"
    flags = ["--offline"] if offline else []
    extras = [arg for extra in target.extras for arg in ("--extra", extra)]
    started = time.perf_counter()
    run([uv, "venv", "--quiet", "--python", "3.11", *flags, str(venv)], cwd=ROOT)
    export = [uv, "export", "--quiet", "--locked", "--no-dev", "--no-editable", *flags]
    run([*export, "--package", target.package, *extras, "-o", str(requirements)], cwd=ROOT)
    # The workspace members appear as ./libs/... paths, relative to the workspace root.
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "--quiet", "--no-deps", *flags, "--python", str(python)]
    run([*install, "--requirement", str(requirements)], cwd=ROOT)
    install_seconds = time.perf_counter() - started

    config = (venv / "pyvenv.cfg").read_text()
    python_version = re.search(r"^version_info\s*=\s*(\S+)", config, re.MULTILINE)
    site = next(venv.glob("lib/python*/site-packages"))
    mib = tree_mib(site)
    dists = {
        normalize(dist.metadata["Name"]): dist.version
        for dist in importlib.metadata.distributions(path=[str(site)])
    }
    locked = locked_versions()
    consistent = subprocess.run(
        [uv, "pip", "check", "--python", str(python)],
        capture_output=True,
        check=False,
    )
    as_locked = consistent.returncode == 0 and all(
        locked.get(name) == version for name, version in dists.items()
    )

    env = clean_env()
    helped = subprocess.run(
        [str(venv / "bin" / target.script), "--help"],
        cwd=work,
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    probe = subprocess.run(
        [str(python), "-I", "-c", PROBE, target.module, *HEAVY_MODULES],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    imported = json.loads(probe.stdout) if probe.returncode == 0 else []
    if probe.returncode != 0:
        sys.stderr.write(probe.stderr)
    return Footprint(
        target=target,
        install_seconds=install_seconds,
        mib=mib,
        dists=dists,
        python=python_version.group(1) if python_version else "?",
        as_locked=as_locked,
        help_ok=helped.returncode == 0,
        import_ok=probe.returncode == 0,
        imported=imported,
    )


def yes_no(flag: bool) -> str:
    """The table's spelling of a boolean."""
    return "yes" if flag else "no"


def print_table(rows: list[Footprint]) -> None:
    """One row per target, then the verdict."""
    pythons = ", ".join(sorted({row.python for row in rows}))
    print(
        f"each package installed alone into a fresh venv, versions from uv.lock; "
        f"Python {pythons}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs; MiB = files under site-packages, no bytecode"
    )
    header = f"{'target':<24} {'MiB':>8} {'dists':>5}"
    header += "".join(f"  {name}" for name in REPORTED)
    header += f"  {'as locked':<9}  {'--help':<6}  {'import':<6}  heavy modules after import"
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row.target.label:<24} {row.mib:>8.1f} {len(row.dists):>5}"
        line += "".join(f"  {yes_no(name in row.dists):<{len(name)}}" for name in REPORTED)
        line += f"  {yes_no(row.as_locked):<9}  {yes_no(row.help_ok):<6}"
        line += f"  {yes_no(row.import_ok):<6}  {', '.join(row.imported) or 'none'}"
        print(line)
    problems = [problem for row in rows for problem in row.problems()]
    light = ", ".join(row.target.label for row in rows if row.target.light)
    if problems:
        print("FAILED: " + "; ".join(problems))
    elif light:
        print(
            f"ok: {light} install none of {', '.join(FORBIDDEN)} and import none of "
            f"{', '.join(HEAVY_MODULES)}; every environment matches uv.lock, every console "
            "script answers --help and every app imports"
        )


def main() -> None:
    """Install each target, measure it, print the table; exit 1 on a failed check."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[target.label for target in TARGETS],
        help="measure only this target (repeatable; default: all)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="pass --offline to uv: install from its cache only"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the environments (their directory is printed)"
    )
    parser.add_argument("--uv", help="the uv executable (default: on PATH, else .stack/tools)")
    args = parser.parse_args()
    uv = find_uv(args.uv)
    targets = [target for target in TARGETS if not args.only or target.label in args.only]

    scratch = Path(tempfile.mkdtemp(prefix="triage-footprint-")).resolve()
    if scratch.is_relative_to(ROOT):
        shutil.rmtree(scratch)
        raise SystemExit(f"the temporary directory {scratch} is inside the checkout; set TMPDIR")
    rows = []
    try:
        for number, target in enumerate(targets, start=1):
            print(
                f"[{number}/{len(targets)}] {target.label}: installing", file=sys.stderr, flush=True
            )
            work = scratch / re.sub(r"\W+", "-", target.label).strip("-")
            work.mkdir()
            row = measure(target, work, uv=uv, offline=args.offline)
            print(
                f"[{number}/{len(targets)}] {target.label}: {len(row.dists)} distributions, "
                f"{row.mib:.1f} MiB, installed in {row.install_seconds:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    finally:
        if args.keep:
            print(f"environments kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(rows)
    if any(row.problems() for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
