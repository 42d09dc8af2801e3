"""skaffold.yaml, checked without skaffold: its artifacts, the chart values it sets and the Services it
forwards all exist."""

import pytest
import yaml

from .manifests import CHART, REPO, parse, render_chart

CONFIG = yaml.safe_load((REPO / "skaffold.yaml").read_text())
RELEASE = CONFIG["deploy"]["helm"]["releases"][0]


def test_one_artifact_per_image():
    artifacts = {a["image"]: a["docker"]["dockerfile"] for a in CONFIG["build"]["artifacts"]}
    assert artifacts == {f"salad-{s}": f"Dockerfile.{s}" for s in ("shared", "master", "worker")}
    assert all((REPO / dockerfile).is_file() for dockerfile in artifacts.values())
    assert CONFIG["build"]["local"]["push"] is False


def test_release_values_exist_in_the_chart():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = list(RELEASE["setValueTemplates"]) + list(RELEASE["setValues"])
    for profile in CONFIG["profiles"]:
        patches = profile.get("patches", [])
        keys += [p["path"].rsplit("/", 1)[-1] for p in patches if "/setValues/" in p["path"]]
    for key in keys:
        node = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"skaffold sets {key}, unknown to values.yaml"
            node = node[part]
    assert (REPO / RELEASE["chartPath"] / "Chart.yaml").is_file()


def test_every_image_is_overridden():
    templates = RELEASE["setValueTemplates"]
    for service in ("shared", "master", "worker"):
        suffix = f"salad_{service}"
        assert templates[f"{service}.image.repository"] == f"{{{{.IMAGE_REPO_{suffix}}}}}"
        assert templates[f"{service}.image.tag"] == f"{{{{.IMAGE_TAG_{suffix}}}}}"


def test_port_forwards_name_the_release_services():
    values = dict(RELEASE["setValues"])
    nested: dict = {}
    for key, value in values.items():
        node = nested
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    rendered = render_chart(nested, release=RELEASE["name"], namespace=RELEASE["namespace"])
    services = {o["metadata"]["name"]: o for o in parse(rendered["salad/templates/service.yaml"])}
    assert CONFIG["portForward"]
    for forward in CONFIG["portForward"]:
        assert forward["namespace"] == RELEASE["namespace"]
        service = services[forward["resourceName"]]
        assert forward["port"] in {p["port"] for p in service["spec"]["ports"]}


@pytest.mark.parametrize("name", ["kind", "minikube", "kustomize"])
def test_profiles(name):
    profile = next(p for p in CONFIG["profiles"] if p["name"] == name)
    if name == "kustomize":
        paths = profile["manifests"]["kustomize"]["paths"]
        assert all((REPO / path / "kustomization.yaml").is_file() for path in paths)
    else:
        assert profile["activation"][0]["kubeContext"]
