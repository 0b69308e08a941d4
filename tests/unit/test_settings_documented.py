"""Every environment variable a settings class reads is documented: in README.md's
configuration table, or by its full name somewhere in docs/."""

from __future__ import annotations

import re

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from tests.helpers import REPO_ROOT
from triage_classifier.settings import Settings as ClassifierSettings
from triage_ingest.settings import Settings as IngestSettings
from triage_ml.scoring import ScoringSettings
from triage_review_ui.settings import Settings as ReviewUiSettings
from triage_router.settings import Settings as RouterSettings
from triage_runtime.settings import CommonSettings

SETTINGS: tuple[type[BaseSettings], ...] = (
    CommonSettings,
    ScoringSettings,
    ClassifierSettings,
    IngestSettings,
    ReviewUiSettings,
    RouterSettings,
)
SERVICES = ("INGEST", "CLASSIFIER", "ROUTER", "REVIEW_UI")
NAME = re.compile(r"TRIAGE_[A-Z0-9_<>]+|…_[A-Z0-9_]+")


def env_names(cls: type[BaseSettings]) -> set[str]:
    """The variables ``cls`` reads: each field's alias, else its env prefix and name."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {str(choice).upper() for choice in alias.choices}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def readme_table_names() -> set[str]:
    """Names in the first column of README.md's configuration table, abbreviations expanded:
    ``…_X`` after ``TRIAGE_<SVC>_…`` (or ``TRIAGE_KAFKA_…``) is ``TRIAGE_<SVC>_X``;
    ``<SERVICE>`` is each service."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if not line.startswith("| `TRIAGE_"):
            continue
        first = line.split("|")[1]
        found = NAME.findall(first)
        service = re.match(
            r"TRIAGE_(INGEST|CLASSIFIER|ROUTER|REVIEW_UI|<SERVICE>|KAFKA)_", found[0]
        )
        for written in found:
            name = written
            if written.startswith("…_"):
                assert service, f"an abbreviation follows no service's variable: {line}"
                name = service.group(0) + written.removeprefix("…_")
            if "<SERVICE>" in name:
                names |= {name.replace("<SERVICE>", s) for s in SERVICES}
            else:
                names.add(name)
    return names


def docs_names() -> set[str]:
    """Full variable names written anywhere in docs/."""
    return {
        name
        for path in (REPO_ROOT / "docs").glob("*.md")
        for name in NAME.findall(path.read_text())
        if not name.startswith("…")
    }


def test_every_setting_is_documented() -> None:
    read = set().union(*(env_names(cls) for cls in SETTINGS))
    assert len(read) > 50  # the collection itself works
    undocumented = sorted(read - readme_table_names() - docs_names())
    assert not undocumented, "not in README.md's configuration table or docs/: " + ", ".join(
        undocumented
    )


def test_the_readme_table_names_only_settings_that_exist() -> None:
    read = set().union(*(env_names(cls) for cls in SETTINGS))
    # Read outside the settings classes: the CLI's API key and the embedding model's path.
    elsewhere = {"TRIAGE_API_KEY", "TRIAGE_EMBEDDING_MODEL_PATH"}
    unknown = sorted(readme_table_names() - read - elsewhere)
    assert not unknown, "README.md documents variables nothing reads: " + ", ".join(unknown)
