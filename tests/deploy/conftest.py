"""Rendered manifests, once per session: the chart with each helm/salad/ci/*-values.yaml, and each
kustomize overlay. Tests taking `manifest_set` run once per rendering; `chart_sets` and `kustomize_sets`
give them all."""

import pytest

from .docker import base_image, docker, images, postgres_image, private_network  # noqa: F401 (fixtures)
from .manifests import OVERLAYS, VALUE_SETS, ManifestSet, chart_set, kustomize_set

SET_IDS = [f"chart:{name}" for name in VALUE_SETS] + [f"kustomize:{name}" for name in OVERLAYS]


@pytest.fixture(scope="session")
def rendered() -> dict[str, ManifestSet]:
    sets = {}
    for set_id in SET_IDS:
        kind, name = set_id.split(":", 1)
        sets[set_id] = chart_set(name) if kind == "chart" else kustomize_set(name)
    return sets


@pytest.fixture(scope="session")
def chart_sets(rendered) -> dict[str, ManifestSet]:
    return {k.split(":", 1)[1]: v for k, v in rendered.items() if k.startswith("chart:")}


@pytest.fixture(scope="session")
def kustomize_sets(rendered) -> dict[str, ManifestSet]:
    return {k.split(":", 1)[1]: v for k, v in rendered.items() if k.startswith("kustomize:")}


@pytest.fixture
def manifest_set(request, rendered) -> ManifestSet:
    return rendered[request.param]


def pytest_generate_tests(metafunc):
    if "manifest_set" in metafunc.fixturenames:
        metafunc.parametrize("manifest_set", SET_IDS, indirect=True)


def pytest_configure(config):
    config.addinivalue_line("markers", "docker: builds and runs the container images (needs a Docker engine; "
                                       "SALAD_SKIP_DOCKER=1 skips)")
