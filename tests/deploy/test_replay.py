"""The user's cluster path, replayed with real containers (tests/deploy/replay.py): `helm install --wait`
and `helm test`, a salad ordered while `kubectl scale` takes the workers 1 -> 4 -> 1, then `helm upgrade`
with a new client token and a worker setting; for the bundled PostgreSQL (the stand-in image under the
chart's reference), an external database (a stand-in container answering as db.example.com), and the
monitoring values (custom resources rendered, no operator: KEDA's Deployment starts with 1 replica).

Timings are shortened through values only (shorter fruits, one Shared and one Master); the probes stay as
the chart declares them. One more test shows the replay catching the defect of migrations run as a
post-install hook: `--wait` never sees Shared and Master ready.

SALAD_SKIP_DOCKER=1 skips this module; otherwise a Docker engine that cannot be reached is a failure.
"""

import copy
import os
import shutil
import time
from urllib.parse import urlsplit

import httpx
import pytest

from .docker import wait_postgres
from .manifests import CHART, load_values
from .replay import Replay, ReplayError

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("SALAD_SKIP_DOCKER") == "1", reason="SALAD_SKIP_DOCKER=1"),
]

RELEASE, NAMESPACE = "demo", "salad"
SECRET = f"{RELEASE}-salad"
SHARED, WORKER = f"{RELEASE}-salad-shared", f"deployment/{RELEASE}-salad-worker"
# Values the chart generates when left empty, and where it keeps them: what Helm's `lookup` reads back on
# every later render (the offline SDK's `lookup` finds nothing; see Replay.render).
GENERATED = {"auth.clientToken": (SECRET, "client-token"), "auth.masterToken": (SECRET, "master-token"),
             "auth.workerToken": (SECRET, "worker-token"),
             "postgresql.auth.password": (SECRET, "postgres-password")}
# Quick salads: fruits of 1-3 s, one Shared and one Master, one worker of one slot at install (scaled
# by the test).
FAST = {
    "image": {"tag": "test"},
    "shared": {"replicaCount": 1},
    "master": {"replicaCount": 1, "config": {"executionTimeMin": 1, "executionTimeMax": 3}},
    "worker": {"replicaCount": 1, "config": {"slots": 1, "graceSeconds": 10}},
}
VALUE_SETS = ["default", "external-database", "monitoring"]
INSTALL_TIMEOUT = 240
DEFECT_TIMEOUT = 90  # a healthy install is ready in 10-20 s here, 75 s on a machine 15 times oversubscribed
FRUITS = ["apple", "banana", "kiwi", "mango", "pear", "plum", "grape", "melon", "cherry", "lemon", "lime",
          "peach", "apricot", "fig", "guava", "papaya", "orange", "quince", "date", "lychee", "mandarin",
          "nectarine", "raspberry", "blueberry"]


def merged(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        nested = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if nested else value
    return out


def start_external_database(replay: Replay, image: str, url: str) -> None:
    """The database of database.url, outside the release: a stand-in PostgreSQL container on the replay's
    network under the URL's host name, with its user, password and database."""
    parts = urlsplit(url)
    container = replay.run_outside("external-db", image, env={
        "POSTGRES_USER": parts.username, "POSTGRES_PASSWORD": parts.password,
        "POSTGRES_DB": parts.path.lstrip("/")}, aliases=[parts.hostname])
    wait_postgres(replay.docker, container)


class Release:
    """A replayed release and what the tests learn on the way, for the report."""

    def __init__(self, replay: Replay, values: dict, name: str):
        self.replay, self.values, self.name = replay, values, name
        self.timings: dict[str, float] = {}

    def shared_url(self) -> str:
        pods = self.replay.service_pods(SHARED)
        assert pods, f"no ready pod behind Service {SHARED}"
        port = next(p["port"] for p in self.replay.objects[("Service", NAMESPACE, SHARED)]["spec"]["ports"])
        return f"http://{pods[0].ip}:{port}"

    def auth(self, token: str | None = None) -> dict:
        return {"Authorization": f"Bearer {token or self.replay.secret(SECRET)['client-token']}"}

    def order(self, fruits: list[str], token: str | None = None) -> int:
        response = httpx.post(f"{self.shared_url()}/v1/orders", json={"fruits": fruits},
                              headers=self.auth(token), timeout=10)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def get(self, order_id: int) -> dict:
        return httpx.get(f"{self.shared_url()}/v1/orders/{order_id}", headers=self.auth(), timeout=10).json()

    def wait_order(self, order_id: int, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            current = self.get(order_id)
            if current["status"] in {"completed", "failed"}:
                return current
            time.sleep(0.5)
        raise AssertionError(f"order {order_id} not finished within {timeout} s: {current}")


@pytest.fixture(scope="module", params=VALUE_SETS)
def release(request, docker, private_network, images, postgres_image, base_image):
    """`helm install --wait` of one value set, replayed; removed after the module's tests of that set."""
    values = merged(load_values(request.param), FAST)
    replay = Replay(docker, CHART, pause_image=base_image, release=RELEASE, namespace=NAMESPACE,
                    lookups=GENERATED)
    try:
        if not values.get("postgresql", {}).get("enabled", True):
            start_external_database(replay, postgres_image, values["database"]["url"])
        started = time.monotonic()
        replay.install(values, timeout=INSTALL_TIMEOUT)
        installed = Release(replay, values, request.param)
        installed.timings["install"] = time.monotonic() - started
        yield installed
    finally:
        replay.cleanup()


def test_install_waits_then_helm_test_passes(release, capsys):
    replay = release.replay
    for workload in replay.workloads.values():
        assert workload.settled(), workload.describe(0)
    if release.name == "monitoring":  # rendered, kept, acted on by no operator
        assert {"ServiceMonitor", "PrometheusRule", "ScaledObject"} <= {kind for kind, _, _ in replay.objects}
        # KEDA owns the worker replicas: none rendered, so Kubernetes' default of 1
        assert "replicas" not in replay.workload(WORKER).obj["spec"] and replay.workload(WORKER).replicas == 1
    started = time.monotonic()
    results = replay.test(timeout=180)
    release.timings["helm test"] = time.monotonic() - started
    assert results, "the chart ships a helm test"
    for pod, result in results.items():
        assert result["phase"] == "Succeeded" and set(result["exit_codes"].values()) == {0}, (pod, result)
    with capsys.disabled():
        print(f"\n  [{release.name}] install --wait {release.timings['install']:.1f} s, "
              f"helm test {release.timings['helm test']:.1f} s; notes: {replay.notes or 'none'}")


def test_salad_completes_while_workers_scale(release, capsys):
    """kubectl scale 1 -> 4 -> 1 during a salad: the new workers take fruits; once every fruit is taken, the
    three new ones are scaled down while they prepare theirs, finish them and exit 0 (not killed); every
    fruit succeeds at its first attempt."""
    replay = release.replay
    order_id = release.order(FRUITS)  # one worker with one slot alone would need 24 x 1-3 s
    started = time.monotonic()
    replay.scale(WORKER, 4, timeout=180)
    original = {p.name for p in replay.workload(WORKER).pods[:1]}
    added = {p.name for p in replay.workload(WORKER).pods} - original
    deadline = time.monotonic() + 120
    while (current := release.get(order_id))["counts"]["queued"]:
        assert time.monotonic() < deadline, f"fruits still queued after 120 s: {current}"
        time.sleep(0.2)
    busy = {t["worker"] for t in current["tasks"] if t["status"] == "running"} & added
    stopped = replay.scale(WORKER, 1, timeout=120)
    final = release.wait_order(order_id)
    assert final["status"] == "completed", final
    assert {t["status"] for t in final["tasks"]} == {"succeeded"}, final["tasks"]
    assert all(t["attempts"] == 1 for t in final["tasks"]), f"a fruit was retried: {final['tasks']}"
    by_worker = {w: sum(t["worker"] == w for t in final["tasks"]) for w in original | added}
    assert all(by_worker[w] for w in added), f"a new worker took no fruit: {by_worker}"
    assert busy, f"no new worker was preparing a fruit when scaled down: {current['tasks']}"
    assert {p.name for p in stopped} == added, "scale-down deletes the newest pods"
    exits = {p.name: p.exit_codes for p in stopped}
    assert all(codes and set(codes.values()) == {0} for codes in exits.values()), f"killed or failed: {exits}"
    with capsys.disabled():
        print(f"  [{release.name}] {len(FRUITS)} fruits in {time.monotonic() - started:.1f} s while scaling; "
              f"fruits per worker {sorted(by_worker.values(), reverse=True)}; {len(busy)} scaled down busy; "
              f"exit codes {sorted(c for codes in exits.values() for c in codes.values())}")


def test_upgrade_with_a_new_token_and_worker_setting(release, capsys):
    """helm upgrade: a new client token and worker.config.slots. The new token works, the old one gets 401,
    a salad completes; the workloads whose pod template changed roll."""
    replay = release.replay
    old_token = replay.secret(SECRET)["client-token"]
    new_token = "replay-client-token-" + os.urandom(8).hex()
    values = merged(release.values, {"auth": {"clientToken": new_token}, "worker": {"config": {"slots": 3}}})
    started = time.monotonic()
    rolled = replay.upgrade(values, timeout=INSTALL_TIMEOUT)
    seconds = time.monotonic() - started
    assert replay.secret(SECRET)["client-token"] == new_token
    assert WORKER in rolled, rolled
    worker_config = replay.objects[("ConfigMap", NAMESPACE, f"{RELEASE}-salad-worker")]["data"]
    assert worker_config["SALAD_SLOTS"] == "3"
    refused = httpx.post(f"{release.shared_url()}/v1/orders", json={"fruits": ["apple"]},
                         headers=release.auth(old_token), timeout=10)
    assert refused.status_code == 401, refused.text
    final = release.wait_order(release.order(["apple", "banana", "kiwi"], token=new_token))
    assert final["status"] == "completed", final
    with capsys.disabled():
        print(f"  [{release.name}] upgrade --wait {seconds:.1f} s; rolled: {', '.join(rolled)}")


# --- The defect the replay must catch --------------------------------------------------------------------
def migrations_after_install(objects: list[dict]) -> list[dict]:
    """A post-renderer making the chart migrate the way it did before its init containers: the `migrate`
    init container taken out of every Deployment, and run once as a post-install (and pre-upgrade) hook Job.
    A chart that still has such a hook Job is left as it is."""
    hooks = [o["metadata"].get("annotations", {}).get("helm.sh/hook", "")
             for o in objects if o["kind"] == "Job"]
    if any("post-install" in hook for hook in hooks):
        return objects
    job = None
    for obj in objects:
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else {}
        migrate = [c for c in spec.get("initContainers", []) if c["name"] == "migrate"]
        if not migrate:
            continue
        spec["initContainers"] = [c for c in spec["initContainers"] if c["name"] != "migrate"] or None
        if spec["initContainers"] is None:
            del spec["initContainers"]
        if job is None:
            mounts = {m["name"] for m in migrate[0].get("volumeMounts", [])}
            job = {"apiVersion": "batch/v1", "kind": "Job",
                   "metadata": {"name": f"{obj['metadata']['name']}-migrate",
                                "namespace": obj["metadata"]["namespace"],
                                "annotations": {"helm.sh/hook": "post-install,pre-upgrade"}},
                   "spec": {"backoffLimit": 6, "template": {"metadata": {"labels": {}}, "spec": {
                       "restartPolicy": "Never", "securityContext": spec.get("securityContext", {}),
                       "containers": migrate,
                       "volumes": [v for v in spec.get("volumes", []) if v["name"] in mounts]}}}}
    assert job is not None, "the chart neither migrates in init containers nor in a post-install hook"
    return [*objects, job]


def test_post_install_migrations_fail_the_wait(docker, private_network, images, postgres_image, base_image,
                                               tmp_path, capsys):
    """Migrations in a post-install hook run only after --wait, which waits for Shared and Master to be
    ready, which they are not before the schema exists: the install fails at --wait, naming them."""
    chart = tmp_path / "salad"
    shutil.copytree(CHART, chart)
    replay = Replay(docker, chart, pause_image=base_image, release=RELEASE, namespace=NAMESPACE,
                    lookups=GENERATED, post_render=migrations_after_install)
    try:
        with pytest.raises(ReplayError) as failure:
            replay.install(merged(load_values("default"), FAST), timeout=DEFECT_TIMEOUT)
    finally:
        replay.cleanup()
    message = str(failure.value)
    assert message.startswith("--wait: "), message
    for component in ("shared", "master"):
        expected = f"deployment {RELEASE}-salad-{component} 0/1 ready after {DEFECT_TIMEOUT} s"
        assert expected in message, message
    assert "readiness GET /readyz -> 503" in message, message
    with capsys.disabled():
        print(f"\n  post-install migrations: {message.splitlines()[0][:300]}")
