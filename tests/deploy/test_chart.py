"""The chart on its own: strict lint, the values schema, the refusals, and what each ci/*-values.yaml turns
on (hooks, autoscaling, KEDA, monitoring, NetworkPolicies, Ingress)."""

import base64
import json
import re

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
    ({"ingress": {"enabled": True, "hosts": []}}, r"ingress.hosts is empty: list at least one host"),
    ({"shared": {"resources": {"limits": {"cpu": "lots"}}}},
     r'shared.resources.limits.cpu is "lots", not a Kubernetes quantity: write e.g. 500m'),
    ({"worker": {"resources": {"requests": {"memory": "1 GB"}}}},
     r"worker.resources.requests.memory is \"1 GB\""),
    ({"migrations": {"resources": {"requests": {"memory": "-1Gi"}}}},
     r"migrations.resources.requests.memory"),
    ({"postgresql": {"resources": {"limits": {"memory": "512MB"}}}}, r"postgresql.resources.limits.memory"),
    ({"tests": {"resources": {"limits": {"cpu": "1.5 cores"}}}}, r"tests.resources.limits.cpu"),
    ({"worker": {"autoscaling": {"enabled": True, "minReplicas": 12, "maxReplicas": 4}}},
     r"worker.autoscaling.minReplicas \(12\) is above maxReplicas \(4\): "
     r"raise maxReplicas or lower minReplicas"),
    ({"worker": {"keda": {"enabled": True, "minReplicaCount": 5, "maxReplicaCount": 2}}},
     r"worker.keda.minReplicaCount \(5\) is above maxReplicaCount \(2\): raise maxReplicaCount"),
    ({"worker": {"config": {"heartbeatInterval": 15}}},
     r"worker.config.heartbeatInterval \(15\) must be below half of master.config.leaseSeconds \(15 s\)"),
    ({"master": {"config": {"leaseSeconds": 8}}}, r"below half of master.config.leaseSeconds \(4 s\)"),
    ({"master": {"config": {"reaperInterval": 15}}},
     r"master.config.reaperInterval \(15\) must be below half of master.config.leaseSeconds \(15 s\)"),
    ({"postgresql": {"enabled": False}, "database": {"url": "mysql://salad:secret@db:3306/salad"}},
     r'database.url must be a PostgreSQL URL starting with postgresql://, postgres:// or '
     r'postgresql\+psycopg://.*; it starts with "mysql://"'),
    ({"postgresql": {"enabled": False}, "database": {"url": "db.example.com:5432/salad"}},
     r"database.url must be a PostgreSQL URL.*; it has no scheme"),
])
def test_refuses_values_that_cannot_work(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render_chart(values)


def test_refusals_do_not_print_the_database_password():
    with pytest.raises(helm.HelmError) as refused:
        render_chart({"postgresql": {"enabled": False}, "database": {"url": "mysql://salad:s3cr3t@db/salad"}})
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize("values, message", [
    ({"shared": {"service": {"type": "NodePort", "nodePort": 80}}},
     r"at '/shared/service/nodePort': minimum: got 80, want 30,?000"),
    ({"shared": {"service": {"type": "NodePort", "nodePort": 40000}}},
     r"at '/shared/service/nodePort': maximum: got 40,?000, want 32,?767"),
    ({"shared": {"pdb": {"maxUnavailable": -1}}},
     r"at '/shared/pdb/maxUnavailable': minimum: got -1, want 0"),
    ({"master": {"pdb": {"maxUnavailable": "half"}}},
     r"at '/master/pdb/maxUnavailable': 'half' does not match pattern '\^\[0-9\]\+%\$'"),
])
def test_schema_refuses_with_the_allowed_range(values, message):
    """The schema's own message names the value and what is allowed, and `helm install` shows it."""
    with pytest.raises(helm.HelmValuesError, match=message):
        render_chart(values)


@pytest.mark.parametrize("values", [
    {"shared": {"service": {"type": "NodePort", "nodePort": 30080}}},
    {"shared": {"pdb": {"maxUnavailable": "25%"}}, "worker": {"pdb": {"maxUnavailable": 0}}},
    {"shared": {"resources": {"requests": {"cpu": 0.5, "memory": "1.5Gi"},
                              "limits": {"cpu": 2, "memory": "2e9"}}}},
    {"worker": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 3}}},
    {"postgresql": {"enabled": False}, "database": {"url": "postgresql+psycopg://salad:x@db:5432/salad"}},
    {"postgresql": {"enabled": False}, "database": {"url": "postgres://salad:x@db:5432/salad"}},
])
def test_accepts_values_at_the_limits(values):
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
    # Shared reads from Master what it shows of tasks and workers: Master admits it, and Shared may reach it.
    shared_pod = mset.get("Deployment", SHARED)["spec"]["template"]["metadata"]["labels"]
    master_pod = mset.get("Deployment", MASTER)["spec"]["template"]["metadata"]["labels"]
    assert any(peer.get("podSelector", {}).get("matchLabels", {"-": "-"}).items() <= shared_pod.items()
               for peer in master_peers), "Master's ingress must admit Shared"
    assert any(peer.get("podSelector", {}).get("matchLabels", {"-": "-"}).items() <= master_pod.items()
               for rule in by_name[SHARED]["spec"]["egress"] for peer in rule.get("to", [])), \
        "Shared's egress must reach Master"
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


def pod_annotations(values: dict) -> dict[str, dict]:
    """Component -> annotations of its Deployment's pod template."""
    rendered = render_chart(values)["salad/templates/deployment.yaml"]
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]:
            d["spec"]["template"]["metadata"]["annotations"]
            for d in yaml.safe_load_all(rendered) if d}


def rolled(before: dict, after: dict, annotation: str) -> set[str]:
    """Components whose pod template annotation differs between two renderings (pods that would roll)."""
    old, new = pod_annotations(before), pod_annotations(after)
    return {c for c in old if old[c][annotation] != new[c][annotation]}


FIXED_SECRETS = {"auth": {"clientToken": "c" * 40, "masterToken": "m" * 40, "workerToken": "w" * 40},
                 "postgresql": {"auth": {"password": "p" * 32}}}


def with_values(base: dict, **changes) -> dict:
    """A deep copy of base with dotted paths set, e.g. with_values(v, **{"auth.workerToken": "x"})."""
    values = json.loads(json.dumps(base))
    for path, value in changes.items():
        node = values
        *parents, leaf = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return values


@pytest.mark.parametrize("key, readers", [
    ("auth.clientToken", {"shared", "master"}),
    ("auth.masterToken", {"shared", "master"}),
    ("auth.workerToken", {"master", "worker"}),
    ("postgresql.auth.password", {"shared", "master"}),  # in the database URL
])
def test_a_rotated_secret_rolls_exactly_the_pods_that_read_it(key, readers):
    assert rolled(FIXED_SECRETS, FIXED_SECRETS, "checksum/secrets") == set()
    assert rolled(FIXED_SECRETS, with_values(FIXED_SECRETS, **{key: "x" * 40}), "checksum/secrets") == readers


def test_a_new_external_database_url_rolls_shared_and_master():
    external = with_values(FIXED_SECRETS, **{"postgresql.enabled": False,
                                             "database.url": "postgresql://salad:a@db:5432/salad"})
    moved = with_values(external, **{"database.url": "postgresql://salad:b@db:5432/salad"})
    assert rolled(external, moved, "checksum/secrets") == {"shared", "master"}


def test_secret_checksums_hash_the_values_in_the_rendered_secret():
    """Generated tokens are drawn once per rendering: the worker's checksum is that of the worker token in the
    Secret, the one a rendering given that token as a value computes; a regenerated token rolls the pods."""
    def generated():
        rendered = render_chart({})
        secret = yaml.safe_load(rendered["salad/templates/secret.yaml"])
        worker = yaml.safe_load_all(rendered["salad/templates/deployment.yaml"])
        (annotations,) = [d["spec"]["template"]["metadata"]["annotations"] for d in worker
                          if d and d["metadata"]["name"] == WORKER]
        return base64.b64decode(secret["data"]["worker-token"]).decode(), annotations["checksum/secrets"]

    (token, checksum), (other_token, other_checksum) = generated(), generated()
    assert token != other_token and checksum != other_checksum, "a regenerated token must roll the workers"
    assert pod_annotations({"auth": {"workerToken": token}})["worker"]["checksum/secrets"] == checksum


@pytest.mark.parametrize("change, readers", [
    ({"worker.config.slots": 8}, {"worker"}),
    ({"shared.config.maxFruits": 50}, {"shared"}),
    ({"master.config.leaseSeconds": 40}, {"master"}),
    ({"shared.service.port": 8080}, {"master"}),  # Master's SALAD_SHARED_URL
    ({"master.service.port": 8080}, {"shared", "worker"}),  # their SALAD_MASTER_URL
    ({"logLevel": "DEBUG"}, {"shared", "master", "worker"}),
])
def test_a_setting_rolls_exactly_the_pods_that_read_it(change, readers):
    assert rolled({}, {}, "checksum/config") == set()
    assert rolled({}, with_values({}, **change), "checksum/config") == readers


def test_retention_batch_and_interval_are_settings_of_shared_and_master():
    """SALAD_PRUNE_BATCH and SALAD_PRUNE_INTERVAL come from <component>.config, not only from extraEnv."""
    def config_maps(values):
        return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["data"]
                for d in yaml.safe_load_all(render_chart(values)["salad/templates/configmap.yaml"]) if d}

    defaults = config_maps({})
    for comp in ("shared", "master"):
        assert (defaults[comp]["SALAD_PRUNE_BATCH"], defaults[comp]["SALAD_PRUNE_INTERVAL"]) == ("100", "10")
    assert not {"SALAD_PRUNE_BATCH", "SALAD_PRUNE_INTERVAL"} & set(defaults["worker"]), \
        "workers prune nothing"
    tuned = config_maps({"shared": {"config": {"pruneBatch": 500, "pruneInterval": 2.5}},
                         "master": {"config": {"pruneBatch": 1000}}})
    assert (tuned["shared"]["SALAD_PRUNE_BATCH"], tuned["shared"]["SALAD_PRUNE_INTERVAL"]) == ("500", "2.5")
    assert tuned["master"]["SALAD_PRUNE_BATCH"] == "1000"


@pytest.mark.parametrize("bad", [
    {"shared": {"config": {"pruneBatch": 0}}},
    {"master": {"config": {"pruneInterval": 0}}},
])
def test_schema_rejects_retention_settings_the_services_refuse(bad):
    with helm.Chart.load(CHART) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


def test_chart_metadata():
    """An icon that renders offline (inline SVG), the maintainers, and no placeholder link."""
    from urllib.parse import urlsplit
    from xml.etree import ElementTree

    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert {"name": "salad maintainers"} in [{"name": m["name"]} for m in meta.get("maintainers", [])]
    prefix = "data:image/svg+xml;base64,"
    assert meta.get("icon", "").startswith(prefix), "an inline SVG: the chart has no public host for an image"
    svg = ElementTree.fromstring(base64.b64decode(meta["icon"].removeprefix(prefix)))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and len(svg)
    for url in [meta.get("home"), *meta.get("sources", [])]:
        if url:
            host = urlsplit(url).hostname or ""
            assert not re.search(r"(^|\.)(example\.(com|org|net)|example|invalid|localhost|test)$", host), url
    report = helm.lint(CHART, {}, strict=True, namespace=NAMESPACE)
    assert not [m for m in report["messages"] if "icon" in m["error"]], report


def test_extra_objects_are_rendered_with_tpl():
    """extraObjects: maps or strings, each a manifest, templated against the release."""
    values = {"extraObjects": [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": "{{ include \"salad.fullname\" . }}-extra",
                      "namespace": "{{ .Release.Namespace }}"},
         "data": {"release": "{{ .Release.Name }}"}},
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {{ .Release.Name }}-reader\n",
    ]}
    objects = [o for path, text in render_chart(values).items() if path.endswith(".yaml")
               for o in yaml.safe_load_all(text) if o]
    extra = next(o for o in objects if o["metadata"]["name"] == f"{RELEASE}-salad-extra")
    assert extra["kind"] == "ConfigMap" and extra["data"] == {"release": RELEASE}
    assert extra["metadata"]["namespace"] == NAMESPACE
    assert any(o["kind"] == "ServiceAccount" and o["metadata"]["name"] == f"{RELEASE}-reader"
               for o in objects)
    assert not [p for p, text in render_chart({}).items() if "extra" in p and text.strip()], \
        "nothing by default"



def test_extra_volumes_mounts_and_init_containers_per_component():
    import kubernetes_validate

    init = {"name": "wait", "image": "docker.io/library/busybox:1.37",
            "command": ["sh", "-c",
                        "until nslookup {{ include \"salad.fullname\" . }}-master; do sleep 2; done"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                          "limits": {"cpu": "50m", "memory": "32Mi"}},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    values = {"worker": {
        "extraVolumes": [{"name": "fruit-list", "configMap": {"name": "{{ .Release.Name }}-fruits"}}],
        "extraVolumeMounts": [{"name": "fruit-list", "mountPath": "/etc/fruits", "readOnly": True}],
        "initContainers": [init],
    }}
    rendered = render_chart(values)["salad/templates/deployment.yaml"]
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
                   for d in yaml.safe_load_all(rendered) if d}
    spec = deployments["worker"]["spec"]["template"]["spec"]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                               {"name": "fruit-list", "configMap": {"name": f"{RELEASE}-fruits"}}]
    assert spec["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"},
                                                     {"name": "fruit-list", "mountPath": "/etc/fruits",
                                                      "readOnly": True}]
    (wait,) = spec["initContainers"]
    assert wait["command"][-1] == f"until nslookup {RELEASE}-salad-master; do sleep 2; done"
    for comp in ("shared", "master"):
        other = deployments[comp]["spec"]["template"]["spec"]
        assert [c["name"] for c in other.get("initContainers", [])] == ["migrate"], f"{comp}: init containers"
        assert len(other["volumes"]) == 1, f"{comp} got the worker's extras"
    for deployment in deployments.values():
        kubernetes_validate.validate(deployment, "1.27.0", strict=True)


# --- CloudNativePG --------------------------------------------------------------------------------------
CLUSTER = f"{RELEASE}-salad-postgresql"


def database_url_ref(deployment: dict) -> dict | None:
    env = deployment["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return next((v["valueFrom"]["secretKeyRef"] for v in env if v["name"] == "SALAD_DATABASE_URL"), None)


def test_cloudnative_pg_cluster(chart_sets):
    """postgresql.mode cloudnative-pg: a Cluster instead of the StatefulSet; the services and the migrations
    read the operator's app Secret (its "uri" points at the <cluster>-rw Service)."""
    mset = chart_sets["cloudnative-pg"]
    cnpg = load_values("cloudnative-pg")["postgresql"]["cnpg"]
    (cluster,) = mset.of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["metadata"]["name"] == CLUSTER
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert spec["bootstrap"] == {"initdb": {"database": "salad", "owner": "salad"}}
    assert spec["storage"] == {"size": cnpg["storage"]["size"],
                               "storageClass": cnpg["storage"]["storageClass"]}
    assert spec["backup"] == cnpg["backup"], "backup is passed through as given"
    assert spec["postgresql"]["parameters"] == cnpg["parameters"]
    assert spec["resources"] == mset.values["postgresql"]["cnpg"]["resources"]
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not mset.of_kind("StatefulSet"), "no bundled PostgreSQL beside the Cluster"
    assert {p["metadata"]["name"] for p in mset.of_kind("PodDisruptionBudget")} == {SHARED, MASTER, WORKER}, \
        "the operator makes the Cluster's PodDisruptionBudgets"
    (secret,) = mset.of_kind("Secret")
    assert set(secret["data"]) == {"client-token", "master-token", "worker-token"}
    app = {"name": f"{CLUSTER}-app", "key": "uri"}
    for name in (SHARED, MASTER):
        deployment = mset.get("Deployment", name)
        assert database_url_ref(deployment) == app
        (migrate,) = deployment["spec"]["template"]["spec"]["initContainers"]
        assert {"name": "SALAD_DATABASE_URL", "valueFrom": {"secretKeyRef": app}} in migrate["env"]
    assert database_url_ref(mset.get("Deployment", WORKER)) is None
    assert not mset.of_kind("Job"), "no migrations hook"


def test_cloudnative_pg_defaults():
    """mode is the only value to set: database.secretKey names the key of the chart's Secret or an
    existingSecret, never of the operator's."""
    objects = [o for path, text in render_chart({"postgresql": {"mode": "cloudnative-pg"}}).items()
               if path.endswith(".yaml") for o in yaml.safe_load_all(text) if o]
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["storage"]["size"] and "storageClass" not in cluster["spec"]["storage"]
    assert "backup" not in cluster["spec"] and "imageName" not in cluster["spec"]
    app = {"name": f"{CLUSTER}-app", "key": "uri"}
    for d in (o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] != WORKER):
        pod = d["spec"]["template"]["spec"]
        assert database_url_ref(d) == app
        migrate = pod["initContainers"][0]
        assert {"name": "SALAD_DATABASE_URL", "valueFrom": {"secretKeyRef": app}} in migrate["env"]


def test_cloudnative_pg_rolls_on_its_secret_reference_only():
    """The URL lives in the operator's Secret: the bundled password means nothing, and the reference is all
    the chart sees (rotating the operator's password needs a restart)."""
    cnpg = with_values(FIXED_SECRETS, **{"postgresql.mode": "cloudnative-pg"})
    other_password = with_values(cnpg, **{"postgresql.auth.password": "other"})
    assert rolled(cnpg, other_password, "checksum/secrets") == set()
    assert rolled(FIXED_SECRETS, cnpg, "checksum/secrets") == {"shared", "master"}


def test_cloudnative_pg_behind_network_policies():
    """With egress restricted, Shared and Master may reach the Cluster's instances (the operator's pods, which
    carry cnpg.io/cluster, not the release's labels); workers may not."""
    values = {"postgresql": {"mode": "cloudnative-pg"},
              "networkPolicy": {"enabled": True, "egress": {"enabled": True}}}
    policies = {p["metadata"]["name"]: p
                for p in yaml.safe_load_all(render_chart(values)["salad/templates/networkpolicy.yaml"]) if p}
    assert f"{RELEASE}-salad-postgresql" not in policies, "the operator must reach its instances"
    to_cluster = {"to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": CLUSTER}}}],
                  "ports": [{"port": 5432, "protocol": "TCP"}]}
    for name in (SHARED, MASTER):
        assert to_cluster in policies[name]["spec"]["egress"]
    assert to_cluster not in policies[WORKER]["spec"]["egress"]


def test_notes_name_the_cloudnative_pg_cluster():
    notes = render_chart({"postgresql": {"mode": "cloudnative-pg"}})
    assert f"CloudNativePG Cluster {CLUSTER}" in notes["salad/templates/NOTES.txt"]


@pytest.mark.parametrize("values, message", [
    ({"postgresql": {"mode": "cloudnative-pg"}, "fullnameOverride": "s" * 40},
     r"CloudNativePG Cluster name .* must be a DNS label of at most 50 characters"),
    ({"postgresql": {"mode": "cloudnative-pg"}, "fullnameOverride": "1salad"},
     r"CloudNativePG Cluster name \"1salad-postgresql\" must be a DNS label"),
    ({"postgresql": {"mode": "cloudnative-pg", "cnpg": {"resources": {"requests": {"memory": "1 GB"}}}}},
     r"postgresql.cnpg.resources.requests.memory is \"1 GB\""),
])
def test_refuses_cloudnative_pg_values_that_cannot_work(values, message):
    with pytest.raises(helm.HelmError, match=message):
        render_chart(values)


def test_every_custom_resource_kind_is_rendered_and_schema_checked(chart_sets):
    """Each kind in CRD_KINDS appears in some ci/*-values.yaml, so that
    test_custom_resources_match_their_crd_schemas checks it."""
    from .manifests import CRD_KINDS

    rendered = {o["kind"] for mset in chart_sets.values() for o in mset.objects}
    assert "Cluster" in CRD_KINDS
    assert CRD_KINDS <= rendered, f"no value set renders {CRD_KINDS - rendered}"
