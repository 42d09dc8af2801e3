"""Render the chart (Helm's Go SDK through helm-python-sdk) and the kustomize overlays (kubectl kustomize)
into plain objects, and walk the pods, containers and environment variables inside them."""

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "salad"
VALUE_SETS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
OVERLAYS = sorted(p.name for p in (REPO / "k8s" / "overlays").iterdir() if p.is_dir())
RELEASE = "demo"  # release "demo" -> objects named demo-salad-*
NAMESPACE = "salad"

# Kinds whose schema kubernetes-validate does not ship (custom resources of optional operators); their JSON
# schemas (kubeconform's layout, see its README.md) sit beside the clone, in shared/crd-schemas.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject", "Cluster"}
CRD_SCHEMAS = REPO.parent / "shared" / "crd-schemas"
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


@dataclass
class ManifestSet:
    """The objects of one rendering: the chart with one ci/*-values.yaml, or one kustomize overlay."""

    name: str
    objects: list[dict]
    values: dict = field(default_factory=dict)  # the chart's merged values (chart sets only)

    @property
    def is_chart(self) -> bool:
        return self.name.startswith("chart:")

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)


def load_values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text()) or {}


def render_chart(values: dict, *, release: str = RELEASE, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce (NOTES.txt included)."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        return chart.render(values=values, name=release, namespace=namespace, is_install=True)


def parse(documents: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(documents) if d]


def chart_set(name: str) -> ManifestSet:
    import helm_python as helm

    values = load_values(name)
    rendered = render_chart(values)
    objects = [o for path, text in sorted(rendered.items()) if path.endswith(".yaml") for o in parse(text)]
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(values)
    return ManifestSet(f"chart:{name}", objects, merged)


def kubectl() -> str:
    path = shutil.which("kubectl")
    if not path:
        raise RuntimeError("kubectl is needed to render k8s/ (scripts/install-kubectl.sh installs one)")
    return path


def kustomize_set(overlay: str) -> ManifestSet:
    out = subprocess.run([kubectl(), "kustomize", str(REPO / "k8s" / "overlays" / overlay)],
                         capture_output=True, text=True, check=True).stdout
    return ManifestSet(f"kustomize:{overlay}", parse(out))


def crd_schema(obj: dict) -> Path:
    """The JSON schema file of a custom resource: <group>/<lowercase kind>_<version>.json."""
    group, _, version = obj["apiVersion"].rpartition("/")
    return CRD_SCHEMAS / group / f"{obj['kind'].lower()}_{version}.json"


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] in POD_OWNERS:
        return obj["spec"]["template"]["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def workloads(mset: ManifestSet) -> Iterator[tuple[dict, dict]]:
    """(object, pod spec) of everything that runs pods."""
    for obj in mset.objects:
        spec = pod_spec(obj)
        if spec is not None:
            yield obj, spec


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def component(obj: dict) -> str:
    return pod_labels(obj).get("app.kubernetes.io/component", "")


def is_hook_or_test(obj: dict) -> bool:
    hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return bool(hook) or obj["kind"] in {"Job", "Pod"}


def env_of(mset: ManifestSet, container: dict) -> dict[str, str | None]:
    """Variables a container gets: literal values, None where they come from a Secret, field or elsewhere."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if ref := source.get("configMapRef"):
            cm = mset.get("ConfigMap", ref["name"])
            assert cm is not None, f"{mset.name}: ConfigMap {ref['name']} is not rendered"
            env.update(cm.get("data", {}))
        elif ref := source.get("secretRef"):
            secret = mset.get("Secret", ref["name"])
            env.update({k: None for k in (secret or {}).get("data", {})})
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def settings_env_names(settings_class) -> dict[str, str]:
    """SALAD_* variable -> field name, for a pydantic-settings class."""
    prefix = settings_class.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper(): name for name in settings_class.model_fields}
