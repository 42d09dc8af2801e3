"""The README documents every setting the services read, and shows the same metrics table as the docs."""

import re
from pathlib import Path

import pytest
from salad.core.settings import MasterSettings, SharedSettings, WorkerSettings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_every_setting_is_in_the_readme_configuration_table():
    documented = set(re.findall(r"^\| `(SALAD_\w+)` \|", README, re.MULTILINE))
    read = {f"SALAD_{name.upper()}" for cls in (SharedSettings, MasterSettings, WorkerSettings)
            for name in cls.model_fields}
    assert documented == read


@pytest.mark.parametrize("document", ["helm/salad/README.md"])
def test_the_metrics_table_is_the_one_in_docs_metrics(document):
    docs = (REPO / "docs" / "metrics.md").read_text()
    table = docs[docs.index("| name | type | labels | meaning |"):]
    table = table[:table.index("\n\n")]
    assert table in (REPO / document).read_text()


def test_the_readme_commands_exist():
    for script in re.findall(r"^(scripts/\S+\.sh)", README, re.MULTILINE):
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is executable"


SETTINGS = {"shared": SharedSettings, "master": MasterSettings, "worker": WorkerSettings}


def documented_defaults() -> dict[tuple[str, str], str]:
    """(variable, service) -> the default the README's configuration table gives."""
    defaults = {}
    for name, services, default in re.findall(r"^\| `(SALAD_\w+)` \| ([\w, ]+) \| ([^|]+) \|", README, re.MULTILINE):
        default = default.strip().strip("`")
        per_service = dict(re.findall(r"(\S+) \((\w+)\)", default))  # "8001 (shared), 8000 (master)"
        for service in services.split(", "):
            defaults[(name, service)] = {v: k for k, v in per_service.items()}.get(service, default)
    return defaults


def test_the_configuration_tables_defaults_are_the_settings_defaults():
    wrong = []
    for (name, service), documented in documented_defaults().items():
        field = SETTINGS[service].model_fields[name.removeprefix("SALAD_").lower()]
        if documented == "(required)":  # an empty default is refused by the settings' validator
            ok = field.is_required() or field.default == ""
        elif documented.startswith(("(unset)", "unset")):
            ok = field.default is None and field.default_factory is None
        elif field.default_factory is not None:  # computed at start, e.g. the host name
            ok = not re.fullmatch(r"[\d.]+", documented)
        else:
            ok = documented == str(field.default) or (
                isinstance(field.default, int | float) and float(documented) == field.default)
        if not ok:
            wrong.append(f"{name} ({service}): README says {documented!r}, the code {field.default!r}")
    assert not wrong, "\n".join(wrong)
