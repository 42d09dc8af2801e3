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


@pytest.mark.parametrize("document", ["README.md", "helm/salad/README.md"])
def test_the_metrics_table_is_the_one_in_docs_metrics(document):
    docs = (REPO / "docs" / "metrics.md").read_text()
    table = docs[docs.index("| name | type | labels | meaning |"):]
    table = table[:table.index("\n\n")]
    assert table in (REPO / document).read_text()


def test_the_readme_commands_exist():
    for script in re.findall(r"^(scripts/\S+\.sh)", README, re.MULTILINE):
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is executable"
