"""The service boundaries hold in the code: a service imports the wire contracts and the core, never another
service's package, and the core and the contracts import no service at all (read with ast, not by running)."""

import ast
import re
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "services" / "salad"
SERVICES = ("shared", "master", "worker")
LAUNCHER = "cli"  # starts the services (it may import them); none of them imports it
COMMON = ("core", "contracts")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, absolute, with its line: `from . import x` is resolved too."""
    package = ".".join(("salad", *path.relative_to(PACKAGE).parent.parts))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def salad_package(module: str) -> str | None:
    """The top-level part of salad a module is in ("master" for salad.master.tasks); None outside salad."""
    parts = module.split(".")
    return parts[1] if parts[0] == "salad" and len(parts) > 1 else None


def foreign_imports(part: str, allowed: set[str]) -> list[str]:
    problems = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        for line, module in imported_modules(path):
            other = salad_package(module)
            if other is not None and other not in allowed and (PACKAGE / other).is_dir():
                problems.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    return sorted(set(problems))


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_imports_only_itself_the_core_and_the_contracts(service):
    assert (PACKAGE / service).is_dir()
    assert foreign_imports(service, {service, *COMMON}) == []


@pytest.mark.parametrize("part", COMMON)
def test_the_core_and_the_contracts_import_no_service(part):
    forbidden = {*SERVICES, LAUNCHER}
    assert foreign_imports(part, {p.name for p in PACKAGE.iterdir() if p.is_dir()} - forbidden) == []


def test_the_check_sees_a_cross_service_import(tmp_path, monkeypatch):
    """The walk itself works: planted imports of Master from Shared, absolute and relative, are reported."""
    for part in ("shared", "master"):
        (tmp_path / part).mkdir()
    (tmp_path / "shared" / "leak.py").write_text("from salad.master.tasks import claim\nfrom ..master import api\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    found = [problem.split(" imports ")[1] for problem in foreign_imports("shared", {"shared", *COMMON})]
    assert found == ["salad.master.tasks", "salad.master.tasks.claim", "salad.master", "salad.master.api"]


MASTER_TABLES = {"tasks": "Task", "salads": "Salad", "outbox": "Outbox", "task_failures": "TaskFailure",
                 "workers": "RegisteredWorker", "reaper_runs": "ReaperRun"}


def test_shared_reads_no_table_of_masters():
    """Neither Shared's SQL nor its code names a table of Master's: what it shows of them comes from Master's
    API (docs/architecture.md, "Service boundary")."""
    sql = (PACKAGE / "shared" / "queries.sql").read_text()
    code = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    named = {table for table in MASTER_TABLES
             if any(re.search(rf"\b(FROM|JOIN|UPDATE|INTO)\s+{table}\b", line, re.IGNORECASE) for line in code)}
    assert named == set(), f"shared/queries.sql reads Master's tables {named}"
    models = [module for path in (PACKAGE / "shared").rglob("*.py") for _, module in imported_modules(path)
              if module.removeprefix("salad.core.models.") in MASTER_TABLES.values()
              and module.startswith("salad.core.models.")]
    assert models == [], f"Shared imports Master's table models: {models}"
