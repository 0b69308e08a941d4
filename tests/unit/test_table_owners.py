"""One writer per fact: every table is written by one module (or package) of the project.

The check reads the source: ``insert(Model)``, ``update(Model)``, ``delete(Model)`` and
``Model(...)`` rows are writes. Retention may delete expired rows of any table it names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Table

from tests.helpers import REPO_ROOT
from triage_runtime.db.models import Base

OWNERS = {
    "document": "triage_ingest.store",
    "idempotency_record": "triage_ingest.store",
    "imap_cursor": "triage_ingest.store",
    "imap_attempt": "triage_ingest.store",
    "document_raw": "triage_ingest.store",
    "dead_letter_blob": "triage_ingest.store",
    "pending_blob": "triage_ingest.store",
    "email_identity": "triage_ingest.store",
    "email_raw_seen": "triage_ingest.store",
    "document_outcome": "triage_runtime.outcomes",
    "routing_decision": "triage_runtime.outcomes",
    "review_item": "triage_runtime.outcomes",
    "routing_correction": "triage_runtime.outcomes",
    "review_comment": "triage_runtime.outcomes",
    "document_purge": "triage_runtime.retention",
    "api_key": "triage_runtime.apikeys",
    "model_version": "triage_runtime.registry",
    "model_alias": "triage_runtime.registry",
    "model_alias_history": "triage_runtime.registry",
    "routing_policy": "triage_runtime.policy_store",
    "app_user": "triage_runtime.accounts",
    "web_session": "triage_runtime.accounts",
    "login_attempt": "triage_runtime.accounts",
    "known_device": "triage_runtime.accounts",
    "audit_log": "triage_runtime.audit",
    "outbox": "triage_runtime.outbox",
    "document_status": "",  # a view: nobody writes it
    "blob_sweep_floor": "",  # written once, by its migration
}
PURGER = "triage_runtime.retention"
# Statements imported under another name (``from sqlalchemy.dialects.postgresql import
# insert as pg_insert``).
STATEMENTS = {"pg_insert": "insert"}
SOURCES = ("libs", "services", "apps")
TABLES = {
    m.class_.__name__: m.local_table.name
    for m in Base.registry.mappers
    if isinstance(m.local_table, Table)
}


def writes(tree: ast.AST) -> Iterator[tuple[str, str, int]]:
    """(kind, table, line) of every write to a mapped table in a module's syntax tree."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = STATEMENTS.get(node.func.id, node.func.id)
        if name in {"insert", "update", "delete"} and node.args:
            target = node.args[0]
            if isinstance(target, ast.Name) and target.id in TABLES:
                yield name, TABLES[target.id], node.lineno
        elif name in TABLES:
            yield "insert", TABLES[name], node.lineno


def module_of(path: Path) -> str:
    """The dotted module name of a project source file."""
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts[2:]
    return ".".join(part for part in parts if part != "__init__")


@cache
def _project_writes() -> list[tuple[str, str, str, int]]:
    found = []
    for top in SOURCES:
        for path in sorted((REPO_ROOT / top).glob("*/triage_*/**/*.py")):
            if "migrations" in path.parts or path.name == "models.py":
                continue
            for kind, table, line in writes(ast.parse(path.read_text())):
                found.append((module_of(path), kind, table, line))
    return found


def test_every_table_has_an_owner() -> None:
    assert set(TABLES.values()) == set(OWNERS)


def test_the_check_sees_writes() -> None:
    found = _project_writes()
    # Enough writes that a broken scan (no files, wrong names) cannot pass unnoticed.
    assert {table for _, _, table, _ in found} >= {t for t, owner in OWNERS.items() if owner}
    assert len(found) > 30


@pytest.mark.parametrize("table", sorted(t for t, owner in OWNERS.items() if owner))
def test_each_table_is_written_by_its_owner_only(table: str) -> None:
    owner = OWNERS[table]
    strangers = [
        f"{module}:{line} {kind}s {table}"
        for module, kind, written, line in _project_writes()
        if written == table
        and not (module == owner or module.startswith(owner + "."))
        and not (kind == "delete" and module == PURGER)
    ]
    assert not strangers, f"{table} belongs to {owner}; also written by {strangers}"


def test_the_view_and_the_migrations_rows_are_never_written() -> None:
    assert not [w for w in _project_writes() if not OWNERS[w[2]]]


def test_a_stray_write_is_caught() -> None:
    stray = ast.parse("async def f(s):\n    await s.execute(update(ReviewItem).values(x=1))\n")
    assert list(writes(stray)) == [("update", "review_item", 2)]
    assert list(writes(ast.parse("s.add(AuditLog(actor='x', action='y'))"))) == [
        ("insert", "audit_log", 1)
    ]
