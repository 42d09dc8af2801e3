"""The kustomize tree: both overlays render with `kubectl kustomize` (see test_manifests.py for the checks
every rendering passes), carry the same objects as the chart, and differ only where they mean to."""

import os
import subprocess

import pytest

from .manifests import REPO, kubectl, parse

SERVICES = {"salad-shared", "salad-master", "salad-worker"}


def names(mset, kind):
    return {o["metadata"]["name"] for o in mset.of_kind(kind)}


@pytest.mark.parametrize("overlay", ["kind", "minikube"])
def test_overlay_holds_the_whole_stack(kustomize_sets, overlay):
    mset = kustomize_sets[overlay]
    assert names(mset, "Deployment") == SERVICES
    assert names(mset, "StatefulSet") == {"salad-postgresql"}
    assert names(mset, "Job") == set(), "Shared and Master migrate in their init containers"
    for name in ("salad-shared", "salad-master"):
        (init,) = mset.get("Deployment", name)["spec"]["template"]["spec"]["initContainers"]
        assert init["args"][:2] == ["migrate", "--wait"] and init["image"].startswith(name)
    assert SERVICES | {"salad-postgresql"} <= names(mset, "Service")
    assert names(mset, "PodDisruptionBudget") == SERVICES
    assert all(o["metadata"].get("namespace") == "salad" for o in mset.objects)
    # The generated ConfigMaps and Secret carry a content hash, and every reference follows it.
    assert all(n.rsplit("-", 1)[0] in SERVICES | {"salad-database", "salad-tokens"}
               for n in names(mset, "ConfigMap") | names(mset, "Secret"))


@pytest.mark.parametrize("overlay", ["kind", "minikube"])
def test_overlay_tunes_for_a_laptop(kustomize_sets, overlay):
    mset = kustomize_sets[overlay]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in mset.of_kind("Deployment")}
    assert replicas == {"salad-shared": 1, "salad-master": 1, "salad-worker": 3}
    configs = mset.of_kind("ConfigMap")
    (worker_config,) = [c for c in configs if c["metadata"]["name"].startswith("salad-worker")]
    assert worker_config["data"]["SALAD_TIME_SCALE"] == "0.25"
    shared = mset.get("Service", "salad-shared")
    assert shared["spec"]["type"] == ("NodePort" if overlay == "minikube" else "ClusterIP")


def test_labels_never_touch_selectors(kustomize_sets):
    """`labels:` (not commonLabels) adds part-of to objects and pods but leaves selectors alone."""
    for d in kustomize_sets["kind"].of_kind("Deployment"):
        assert "app.kubernetes.io/part-of" not in d["spec"]["selector"]["matchLabels"]
        assert d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "salad"


def test_kustomize_and_chart_deploy_the_same_kinds(kustomize_sets, chart_sets):
    chart_kinds = {o["kind"] for o in chart_sets["default"].objects} - {"Pod"}  # the helm test pod
    assert {o["kind"] for o in kustomize_sets["kind"].objects} == chart_kinds


def test_monitoring_component_composes(tmp_path):
    """The opt-in monitoring component adds a ServiceMonitor to an overlay."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    # kustomize takes bases and components by relative path only.
    kind = os.path.relpath(REPO / "k8s" / "overlays" / "kind", overlay)
    monitoring = os.path.relpath(REPO / "k8s" / "components" / "monitoring", overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: salad\n"
        f"resources: [{kind}]\ncomponents: [{monitoring}]\n")
    out = subprocess.run([kubectl(), "kustomize", str(overlay)], capture_output=True, text=True,
                         check=True).stdout
    (monitor,) = [o for o in parse(out) if o["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["namespace"] == "salad"
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
