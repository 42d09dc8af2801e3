"""Checks every rendering (chart with each ci/*-values.yaml, each kustomize overlay) must pass: Kubernetes
schemas, the container policy, references between objects, grace periods and the SALAD_* variables."""

import json
import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest

from .manifests import (
    CRD_KINDS,
    CRD_SCHEMAS,
    component,
    containers,
    crd_schema,
    env_of,
    is_hook_or_test,
    pod_labels,
    settings_env_names,
    workloads,
)

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas available.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]


# --- Kubernetes schemas ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_objects_match_kubernetes_schemas(manifest_set, kube_version):
    """Every object validates strictly (no unknown field); custom resources are checked in test_chart.py."""
    errors = []
    for obj in manifest_set.objects:
        if obj["kind"] in CRD_KINDS:
            continue  # kubernetes-validate has no schema for the operators' custom resources
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            caught = exc.caught
            where = f"{obj['kind']}/{obj['metadata']['name']} at {list(caught.absolute_path)}"
            errors.append(f"{where}: {caught.message}")
    assert not errors, "\n".join(errors)


def test_every_object_has_a_known_kind(manifest_set):
    unknown = set()
    for obj in manifest_set.objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, KUBE_VERSIONS[-1], strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unknown.add(obj["kind"])
        except kubernetes_validate.ValidationError:
            pass  # reported by test_objects_match_kubernetes_schemas
    assert not unknown, f"kinds neither in Kubernetes' schemas nor in CRD_KINDS: {unknown}"


def test_custom_resources_match_their_crd_schemas(manifest_set):
    """The operators' custom resources validate against their CRDs' JSON schemas (closed objects: a misspelt
    field is an error)."""
    if not CRD_SCHEMAS.is_dir():
        pytest.skip(f"no CRD schemas at {CRD_SCHEMAS}: CI checks shared/crd-schemas out beside the "
                    "repository")
    from jsonschema import Draft202012Validator

    errors = []
    for obj in manifest_set.objects:
        if obj["kind"] not in CRD_KINDS:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        path = crd_schema(obj)
        assert path.is_file(), f"{where}: no schema for {obj['apiVersion']} at {path}"
        # iter_errors, not validate(): one schema holds a Go-only regex that Python compiles only when used.
        for error in Draft202012Validator(json.loads(path.read_text())).iter_errors(obj):
            errors.append(f"{where} at {'/'.join(map(str, error.absolute_path))}: {error.message}")
    assert not errors, "\n".join(errors)


# --- Container policy ------------------------------------------------------------------------------------
def effective(spec: dict, container: dict, key: str):
    """A securityContext setting of the container, falling back to the pod's."""
    value = container.get("securityContext", {}).get(key)
    return spec.get("securityContext", {}).get(key) if value is None else value


def test_container_policy(manifest_set):
    """Resources, probes, non-root, read-only root, no capabilities, seccomp, pinned image: everywhere."""
    problems = []
    for obj, spec in workloads(manifest_set):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        for c in containers(spec):
            at = f"{where} container {c['name']}"
            resources = c.get("resources", {})
            for section in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(section, {}):
                        problems.append(f"{at}: no {section}.{resource}")
            # Long-running containers need probes; init containers (Kubernetes refuses probes on them), a hook
            # Job or a test pod run to completion instead.
            if not is_hook_or_test(obj) and c not in spec.get("initContainers", []):
                for probe in ("livenessProbe", "readinessProbe"):
                    if probe not in c:
                        problems.append(f"{at}: no {probe}")
            if effective(spec, c, "runAsNonRoot") is not True:
                problems.append(f"{at}: runAsNonRoot is not true")
            if effective(spec, c, "runAsUser") in (0, None):
                problems.append(f"{at}: no numeric non-root runAsUser")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{at}: capabilities do not drop ALL")
            if (effective(spec, c, "seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{at}: seccompProfile is not RuntimeDefault")
            image = c.get("image", "")
            tag = image.rpartition(":")[2] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                problems.append(f"{at}: image {image!r} has no pinned tag")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token it never uses")
    assert not problems, "\n".join(problems)


def test_probes_use_declared_ports(manifest_set):
    for obj, spec in workloads(manifest_set):
        for c in containers(spec):
            declared = c.get("ports", [])
            ports = {p.get("name") for p in declared} | {p["containerPort"] for p in declared}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if http := c.get(probe, {}).get("httpGet"):
                    where = f"{obj['metadata']['name']}: {probe}"
                    assert http["port"] in ports, f"{where} port {http['port']} not declared"


def test_tmp_is_writable_where_root_is_not(manifest_set):
    """A read-only root filesystem needs somewhere to write: every salad container mounts /tmp."""
    for obj, spec in workloads(manifest_set):
        for c in containers(spec):
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{obj['metadata']['name']}/{c['name']}: no /tmp volume"


# --- References between objects --------------------------------------------------------------------------
def test_services_and_budgets_select_pods(manifest_set):
    templates = [(pod_labels(obj), spec) for obj, spec in workloads(manifest_set)]
    for svc in manifest_set.of_kind("Service"):
        selector = svc["spec"]["selector"]
        matching = [spec for labels, spec in templates if selector.items() <= labels.items()]
        assert matching, f"Service {svc['metadata']['name']} selects no pod"
        port_names = {p.get("name") for spec in matching for c in spec["containers"]
                      for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert not isinstance(target, str) or target in port_names, \
                f"Service {svc['metadata']['name']}: targetPort {target} names no container port"
    for pdb in manifest_set.of_kind("PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels, _ in templates), \
            f"PodDisruptionBudget {pdb['metadata']['name']} selects no pod"


def test_referenced_config_exists(manifest_set):
    """ConfigMaps and Secrets the pods use are rendered too, except existingSecrets and the Secrets an
    operator makes (CloudNativePG's <cluster>-app)."""
    external = {f"{c['metadata']['name']}-app" for c in manifest_set.of_kind("Cluster")}
    if manifest_set.is_chart:
        external |= {manifest_set.values[group]["existingSecret"] for group in ("database", "auth")} - {""}
    for obj, spec in workloads(manifest_set):
        for c in containers(spec):
            for source in c.get("envFrom", []):
                if ref := source.get("configMapRef"):
                    assert manifest_set.get("ConfigMap", ref["name"]), f"missing ConfigMap {ref['name']}"
            for var in c.get("env", []):
                if ref := var.get("valueFrom", {}).get("secretKeyRef"):
                    if ref["name"] in external:
                        continue
                    secret = manifest_set.get("Secret", ref["name"])
                    assert secret, f"{obj['metadata']['name']}: missing Secret {ref['name']}"
                    keys = set(secret.get("data", {})) | set(secret.get("stringData", {}))
                    assert ref["key"] in keys, f"Secret {ref['name']} has no key {ref['key']}"


def test_service_urls_point_at_services(manifest_set):
    """SALAD_*_URL settings name a rendered Service and one of its ports."""
    services = {s["metadata"]["name"]: s for s in manifest_set.of_kind("Service")}
    for obj, spec in workloads(manifest_set):
        for c in containers(spec):
            for name, value in env_of(manifest_set, c).items():
                if not (name.startswith("SALAD_") and name.endswith("_URL")) or name == "SALAD_DATABASE_URL":
                    continue
                url = urlsplit(value)
                host = url.hostname.split(".")[0]
                assert host in services, f"{obj['metadata']['name']}: {name}={value} names no Service"
                service_ports = {p["port"] for p in services[host]["spec"]["ports"]}
                assert url.port in service_ports, f"{name}={value}: wrong port"


# --- SALAD_* variables against the services' settings ----------------------------------------------------
def settings_for(comp: str):
    """The settings class (or the set of variables) a component's container reads."""
    from salad.core import settings

    classes = {"shared": settings.SharedSettings, "master": settings.MasterSettings,
               "worker": settings.WorkerSettings}
    if comp in classes:
        return classes[comp]
    if comp == "migrations":  # `salad migrate` reads the database settings
        return getattr(settings, "DatabaseSettings", settings.SharedSettings)
    return None


def cli_env_vars(command: str) -> set[str]:
    """Variables a `salad <command>` option reads (typer envvar=...)."""
    import typer.main
    from salad.cli.main import app

    click_command = typer.main.get_command(app).commands[command]
    names = set()
    for param in click_command.params:
        envvar = getattr(param, "envvar", None)
        names.update([envvar] if isinstance(envvar, str) else envvar or [])
    return names


def required_fields(settings_class) -> set[str]:
    """Fields with no default (the database URL), or one that only makes sense on one machine (loopback URLs,
    host-derived values), and secrets (bearer tokens: without them authentication is off)."""
    from pydantic import SecretStr

    required = set()
    for name, info in settings_class.model_fields.items():
        default = info.default
        host_bound = isinstance(default, str) and re.search(r"127\.0\.0\.1|localhost", default)
        secret = SecretStr in getattr(info.annotation, "__args__", (info.annotation,))
        if info.default_factory is not None or default == "" or host_bound or secret:
            required.add(name)
    return required


def test_salad_variables_are_settings_the_service_reads(manifest_set):
    """Every SALAD_* a container gets is a field of its service's settings (or an option of its command),
    the required ones are all there, and the literal values pass the settings' own validation."""
    seen = set()
    for obj, spec in workloads(manifest_set):
        comp = component(obj)
        for c in containers(spec):
            env = {k: v for k, v in env_of(manifest_set, c).items() if k.startswith("SALAD_")}
            if comp == "test":
                command = c["args"][0]
                allowed = cli_env_vars(command)
                assert set(env) <= allowed, f"`salad {command}` reads none of {set(env) - allowed}"
                assert "SALAD_SHARED_URL" in env
                continue
            settings_class = settings_for("migrations" if c["name"] == "migrate" else comp)
            if settings_class is None:
                assert not env, f"{obj['metadata']['name']} ({comp}) gets SALAD_* variables it cannot read"
                continue
            seen.add("migrations" if c["name"] == "migrate" else comp)
            known = settings_env_names(settings_class)
            unknown = set(env) - set(known)
            where = obj["metadata"]["name"]
            assert not unknown, f"{where}: {sorted(unknown)} are not {settings_class.__name__} fields"
            missing = {f"SALAD_{f.upper()}" for f in required_fields(settings_class)} - set(env)
            assert not missing, f"{obj['metadata']['name']}: required {sorted(missing)} not set"
            literal = {known[k]: v for k, v in env.items() if v is not None}
            if "SALAD_DATABASE_URL" in env and "database_url" not in literal:  # from a Secret: a stand-in
                literal["database_url"] = "postgresql://salad:password@database:5432/salad"
            settings_class(**literal)  # raises if a value does not parse or breaks a constraint
    assert {"shared", "master", "worker", "migrations"} <= seen


def effective_setting(manifest_set, obj, container, name: str):
    comp = component(obj)
    settings_class = settings_for(comp)
    env = env_of(manifest_set, container)
    value = env.get(f"SALAD_{name.upper()}")
    if value is None:
        return settings_class.model_fields[name].default
    return type(settings_class.model_fields[name].default)(value)


def test_container_port_is_the_port_the_service_listens_on(manifest_set):
    for obj, spec in workloads(manifest_set):
        if component(obj) not in {"shared", "master", "worker"}:
            continue
        c = spec["containers"][0]
        port = effective_setting(manifest_set, obj, c, "port")
        declared = {p["containerPort"] for p in c["ports"] if p.get("name") == "http"}
        assert declared == {port}, f"{obj['metadata']['name']}: listens on {port}, declares {declared}"


def pre_stop_seconds(container: dict) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return float(command[1]) if command[:1] == ["sleep"] else 0.0


def by_component(manifest_set, comp):
    return next((obj, spec) for obj, spec in workloads(manifest_set) if component(obj) == comp)


def test_worker_grace_period_covers_the_longest_task(manifest_set):
    """Kubernetes waits longer than the worker's own grace, which covers the longest fruit."""
    obj, spec = by_component(manifest_set, "worker")
    c = spec["containers"][0]
    grace = effective_setting(manifest_set, obj, c, "grace_seconds")
    time_scale = effective_setting(manifest_set, obj, c, "time_scale")
    m_obj, m_spec = by_component(manifest_set, "master")
    longest = time_scale * effective_setting(manifest_set, m_obj, m_spec["containers"][0],
                                             "execution_time_max")
    assert grace >= longest, f"worker grace {grace}s < longest task {longest}s"
    assert spec["terminationGracePeriodSeconds"] > grace + pre_stop_seconds(c)


def test_master_grace_period_covers_its_graceful_shutdown(manifest_set):
    from salad.cli import main

    waits_for = getattr(main, "MASTER_GRACEFUL_SECONDS", None)
    if waits_for is None:
        pytest.skip("salad.cli.main has no MASTER_GRACEFUL_SECONDS")
    _, spec = by_component(manifest_set, "master")
    assert spec["terminationGracePeriodSeconds"] > waits_for + pre_stop_seconds(spec["containers"][0])


def test_worker_name_is_the_pod_name(manifest_set):
    _, spec = by_component(manifest_set, "worker")
    (var,) = [v for v in spec["containers"][0]["env"] if v["name"] == "SALAD_WORKER_NAME"]
    assert var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
