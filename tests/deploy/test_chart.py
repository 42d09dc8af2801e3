"""The chart on its own: strict lint, the values schema, the refusals, and what each ci/*-values.yaml turns
on (hooks, autoscaling, KEDA, monitoring, NetworkPolicies, Ingress)."""

import base64
import json

import pytest
import yaml

from .manifests import (CHART, NAMESPACE, RELEASE, VALUE_SETS, component, load_values, parse, render_chart,
                        workloads)

helm = pytest.importorskip("helm_python", reason="helm-python-sdk renders the chart")

WORKER = f"{RELEASE}-salad-worker"
MASTER = f"{RELEASE}-salad-master"
SHARED = f"{RELEASE}-salad-shared"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(value_set):
    """`helm lint --strict` with each value set: no warning, no error (info such as "icon is recommended"
    is allowed)."""
    report = helm.lint(CHART, load_values(value_set), strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], json.dumps(report, indent=1)


# --- values.yaml and values.schema.json ------------------------------------------------------------------
def leaf_paths(values: dict, prefix=()):
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from leaf_paths(value, prefix + (key,))
        else:
            yield prefix + (key,)


def test_schema_describes_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    undocumented = []
    for path in leaf_paths(values):
        node = schema
        for key in path:
            if "properties" not in node:
                break  # a free-form object: a Kubernetes structure (securityContext, affinity, ...) or a map
            props = node["properties"]
            if key not in props:
                if node.get("additionalProperties") in (None, False):
                    undocumented.append(".".join(path))
                break
            node = props[key]
        else:
            if "description" not in node:
                undocumented.append(".".join(path) + " (no description)")
    assert not undocumented, undocumented


def schema_node(schema: dict, path: tuple) -> dict | None:
    """The schema of a value the chart defines itself, or None inside a free-form object or a list."""
    node = schema
    for key in path:
        if key not in node.get("properties", {}):
            return None
        node = node["properties"][key]
    return node


def test_every_value_is_commented():
    """values.yaml documents each setting the chart defines in a comment right above it."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    stack: list[tuple[int, str]] = []  # (indent, key) of the enclosing mappings
    missing = []
    lines = (CHART / "values.yaml").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("-") or ":" not in stripped:
            stack.append((indent, "[]"))  # list items: free-form
            continue
        key = stripped.split(":", 1)[0]
        path = tuple(k for _, k in stack) + (key,)
        stack.append((indent, key))
        node = schema_node(schema, path)
        if node is None or "properties" in node or "resources" in path[:-1]:
            continue  # free-form content, a group whose settings carry the comments, or resource quantities
        if not lines[number - 2].strip().startswith("#"):
            missing.append(f"{number}: {'.'.join(path)}")
    assert not missing, missing


@pytest.mark.parametrize("bad", [
    {"image": {"tag": "latest"}},
    {"worker": {"replicas": 3}},
    {"worker": {"keda": {"source": "redis"}}},
    {"shared": {"service": {"type": "ExternalName"}}},
    {"logLevel": "LOUD"},
    {"tests": {"fruits": []}},
])
def test_schema_rejects(bad):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


@pytest.mark.parametrize("values, message", [
    ({"postgresql": {"enabled": False}}, "no database"),
    ({"worker": {"autoscaling": {"enabled": True}, "keda": {"enabled": True}}}, "enable one"),
    ({"worker": {"config": {"graceSeconds": 10}}}, "longest task"),
    ({"worker": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds"),
])
def test_refuses_values_that_cannot_work(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render_chart(values)


# --- Each value set --------------------------------------------------------------------------------------
def hook(obj) -> str:
    return obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")


def test_default_release(chart_sets):
    mset = chart_sets["default"]
    worker = mset.get("Deployment", WORKER)
    assert worker["spec"]["replicas"] == 2, "without autoscaling the chart sets the worker count at install"
    assert mset.get("StatefulSet", f"{RELEASE}-salad-postgresql")["spec"]["volumeClaimTemplates"]
    for kind in ("HorizontalPodAutoscaler", "ScaledObject", "NetworkPolicy", "Ingress", "ServiceMonitor"):
        assert not mset.of_kind(kind), f"{kind} is opt-in"
    assert {p["metadata"]["name"] for p in mset.of_kind("PodDisruptionBudget")} == {SHARED, MASTER, WORKER}


def test_bundled_database_url_carries_the_generated_password(chart_sets):
    secret = chart_sets["default"].get("Secret", f"{RELEASE}-salad")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(data["postgres-password"]) >= 24
    assert data["database-url"] == (f"postgresql://salad:{data['postgres-password']}"
                                    f"@{RELEASE}-salad-postgresql:5432/salad")


def test_each_service_gets_the_tokens_of_its_callers(chart_sets):
    """Generated tokens, one per kind of caller, all different; each pod gets only those it uses."""
    mset = chart_sets["default"]
    secret = mset.get("Secret", f"{RELEASE}-salad")
    tokens = {k: base64.b64decode(v).decode() for k, v in secret["data"].items() if k.endswith("-token")}
    assert set(tokens) == {"client-token", "master-token", "worker-token"}
    assert len(set(tokens.values())) == 3 and all(len(t) >= 32 for t in tokens.values())
    expected = {"shared": {"CLIENT", "MASTER"}, "master": {"CLIENT", "MASTER", "WORKER"},
                "worker": {"WORKER"}, "test": {"CLIENT"}}
    for obj, spec in workloads(mset):
        got = {v["name"].removeprefix("SALAD_").removesuffix("_TOKEN")
               for v in spec["containers"][0].get("env", []) if v["name"].endswith("_TOKEN")}
        assert got == expected.get(component(obj), set()), obj["metadata"]["name"]


def test_tokens_from_an_existing_secret():
    objects = [o for p, text in render_chart({"auth": {"existingSecret": "salad-tokens"}}).items()
               if p.endswith(".yaml") for o in yaml.safe_load_all(text) if o]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert not any(key.endswith("-token") for key in secret["data"])
    refs = {v["valueFrom"]["secretKeyRef"]["name"] for o in objects if o["kind"] == "Deployment"
            for v in o["spec"]["template"]["spec"]["containers"][0]["env"] if v["name"].endswith("_TOKEN")}
    assert refs == {"salad-tokens"}


def test_given_tokens_are_used():
    rendered = render_chart({"auth": {"clientToken": "c" * 32}})["salad/templates/secret.yaml"]
    secret = yaml.safe_load(rendered)
    assert base64.b64decode(secret["data"]["client-token"]).decode() == "c" * 32


def test_shared_and_master_migrate_before_they_start(chart_sets):
    """No hook Job: a post-install hook waits for `--wait`, which waits for pods that need the schema. Each
    Shared and Master pod runs `salad migrate --wait` first, with the database URL its service reads."""
    for name, mset in chart_sets.items():
        assert not mset.of_kind("Job"), f"{name}: a migrations Job is back"
        for obj in mset.of_kind("Deployment"):
            spec = obj["spec"]["template"]["spec"]
            inits = spec.get("initContainers", [])
            if component(obj) == "worker":
                assert not inits, "workers reach no database"
                continue
            (migrate,) = [c for c in inits if c["name"] == "migrate"]
            assert migrate["args"][:2] == ["migrate", "--wait"] and float(migrate["args"][2]) > 0
            assert migrate["image"] == spec["containers"][0]["image"]
            url = next(e for e in spec["containers"][0]["env"] if e["name"] == "SALAD_DATABASE_URL")
            assert url in migrate["env"], f"{name}: migrate reads another database than {component(obj)}"
    off = parse(render_chart({"migrations": {"enabled": False}})["salad/templates/deployment.yaml"])
    assert all("initContainers" not in d["spec"]["template"]["spec"] for d in off)


def test_helm_test_orders_a_salad_from_the_release(chart_sets):
    mset = chart_sets["default"]
    (pod,) = [o for o in mset.of_kind("Pod") if hook(o) == "test"]
    c = pod["spec"]["containers"][0]
    assert c["args"][0] == "order" and "--wait" in c["args"]
    assert {"apple", "banana", "kiwi"} <= set(c["args"])
    env = {v["name"]: v for v in c["env"]}
    port = mset.get("Service", SHARED)["spec"]["ports"][0]["port"]
    assert env["SALAD_SHARED_URL"]["value"] == f"http://{SHARED}:{port}"
    token = env["SALAD_CLIENT_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": f"{RELEASE}-salad", "key": "client-token"}
    assert pod["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("value_set", ["autoscaling", "keda", "monitoring"])
def test_autoscaled_workers_have_no_replicas(chart_sets, value_set):
    """The autoscaler owns the count: a replicas field would make every helm upgrade reset it."""
    assert "replicas" not in chart_sets[value_set].get("Deployment", WORKER)["spec"]


def test_hpa_targets_the_workers(chart_sets):
    (hpa,) = chart_sets["autoscaling"].of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER}
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60


def test_keda_scales_workers_on_masters_queue_depth(chart_sets):
    (scaled,) = chart_sets["keda"].of_kind("ScaledObject")
    spec = scaled["spec"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert spec["scaleTargetRef"]["name"] == WORKER
    assert spec["minReplicaCount"] == 0 and spec["maxReplicaCount"] == 30
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    master_port = chart_sets["keda"].get("Service", MASTER)["spec"]["ports"][0]["port"]
    assert trigger["metadata"]["url"] == f"http://{MASTER}.{NAMESPACE}.svc:{master_port}/v1/stats"
    assert trigger["metadata"]["valueLocation"] == "queued"
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), "KEDA metadata values are strings"
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]


def test_keda_can_read_the_queue_depth_from_prometheus(chart_sets):
    (scaled,) = chart_sets["monitoring"].of_kind("ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert trigger["metadata"]["query"] == f'max(salad_queue_depth{{namespace="{NAMESPACE}"}})'
    assert trigger["metadata"]["serverAddress"].startswith("http://")


def test_service_monitor_scrapes_every_service(chart_sets):
    mset = chart_sets["monitoring"]
    (monitor,) = mset.of_kind("ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]
    (expression,) = selector["matchExpressions"]
    scraped = [s for s in mset.of_kind("Service")
               if selector["matchLabels"].items() <= s["metadata"]["labels"].items()
               and s["metadata"]["labels"]["app.kubernetes.io/component"] in expression["values"]]
    assert {s["metadata"]["name"] for s in scraped} == {SHARED, MASTER, WORKER}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in scraped)


def test_prometheus_rule_holds_the_rule_file(chart_sets):
    rules_file = CHART / "rules" / "salad-rules.yaml"
    if not rules_file.exists():
        pytest.skip("helm/salad/rules/salad-rules.yaml is not there yet")
    (rule,) = chart_sets["monitoring"].of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(rules_file.read_text())["groups"]
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r) and r["expr"]


def test_dashboards_ship_for_the_grafana_sidecar(chart_sets):
    files = sorted((CHART / "dashboards").glob("*.json"))
    if not files:
        pytest.skip("helm/salad/dashboards/ holds no dashboard yet")
    maps = chart_sets["monitoring"].of_kind("ConfigMap")
    dashboards = [cm for cm in maps if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    shipped = {key: json.loads(value) for cm in dashboards for key, value in cm["data"].items()}
    assert shipped == {f.name: json.loads(f.read_text()) for f in files}
    assert all(cm["metadata"]["namespace"] == "monitoring" for cm in dashboards)


def test_network_policies_cover_every_pod(chart_sets):
    mset = chart_sets["network-policy"]
    policies = mset.of_kind("NetworkPolicy")
    for obj, _ in workloads(mset):
        if component(obj) == "test":
            continue
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert any(p["spec"]["podSelector"]["matchLabels"].items() <= labels.items() for p in policies), \
            f"no NetworkPolicy selects {obj['metadata']['name']}"
    by_name = {p["metadata"]["name"]: p for p in policies}
    postgres_from = by_name[f"{RELEASE}-salad-postgresql"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert set(postgres_from["matchExpressions"][0]["values"]) == {"shared", "master"}
    master_peers = by_name[MASTER]["spec"]["ingress"][0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in master_peers
    shared_peers = by_name[SHARED]["spec"]["ingress"][0]["from"]
    ingress_nginx = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    assert ingress_nginx in shared_peers
    assert all("Egress" in p["spec"]["policyTypes"] for n, p in by_name.items() if "postgresql" not in n)


def test_ingress_routes_to_shared(chart_sets):
    mset = chart_sets["ingress"]
    (ingress,) = mset.of_kind("Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["salad.example.com"], "secretName": "salad-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == SHARED
    assert backend["port"]["name"] in {p["name"] for p in mset.get("Service", SHARED)["spec"]["ports"]}


def test_notes_tell_how_to_scale_and_test():
    notes = render_chart({})["salad/templates/NOTES.txt"]
    assert f"kubectl --namespace {NAMESPACE} scale deployment/{WORKER} --replicas=8" in notes
    assert f"helm test {RELEASE}" in notes


def test_worker_replicas_survive_upgrades_without_autoscaling():
    """With keepScaledReplicas the template reads the live count (lookup): offline it falls back to values."""
    template = (CHART / "templates" / "deployment.yaml").read_text()
    assert 'lookup "apps/v1" "Deployment"' in template
    rendered = render_chart({"worker": {"replicaCount": 5}})["salad/templates/deployment.yaml"]
    worker = next(d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] == WORKER)
    assert worker["spec"]["replicas"] == 5


def test_config_changes_roll_the_pods():
    def checksum(values):
        rendered = render_chart(values)["salad/templates/deployment.yaml"]
        worker = next(d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] == WORKER)
        return worker["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"worker": {"config": {"slots": 8}}})
