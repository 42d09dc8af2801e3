"""requirements.lock, the pinned dependencies the images install: in step with pyproject.toml. (The image
build's `pip check` catches a missing transitive dependency; this catches a stale lock in a second.)"""

import re
import tomllib

from packaging.requirements import Requirement

from .manifests import REPO


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not pinned with =="
            pins[normalize(name)] = version
    return pins


def test_every_dependency_is_locked_at_an_allowed_version():
    pins = locked()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = normalize(requirement.name)
        assert name in pins, f"{requirement.name} is not in requirements.lock: run scripts/update-lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {name}=={pins[name]}, pyproject wants {requirement.specifier}"


def test_lock_holds_no_tool_or_test_package():
    assert not {"pip", "setuptools", "wheel", "pytest", "salad"} & set(locked())
