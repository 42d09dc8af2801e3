"""The three images, built with a real Docker engine and run as the stack against PostgreSQL.

Builds the base image (scripts/base-image.sh, kept by tag) and salad-shared, salad-master, salad-worker
(layers cached between runs; tests/deploy/docker.py), reports their sizes, then runs migrate, Shared, Master
and two workers as containers the way the chart runs them: read-only root filesystem, the image's numeric
user, no capabilities. Checks that a salad completes, that the probes the chart declares answer, and that
SIGTERM stops a busy worker within its grace period without losing its tasks.

The containers run on a private Docker network of their own, beside a PostgreSQL container (the chart's
image, or its local stand-in), find each other by network alias on the chart's ports, and are reached from
the host at their addresses: no host network, no published port.
SALAD_SKIP_DOCKER=1 skips this module; otherwise a Docker engine that cannot be reached is a failure.
Set SALAD_TEST_BASE_IMAGE to build from another base (e.g. python:3.11-slim-bookworm where it can be pulled).
"""

import json
import os
import re
import time
import uuid

import httpx
import pytest

from .docker import SERVICES, Docker, remove_runs, run_labels, wait_postgres
from .manifests import component, parse, render_chart

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("SALAD_SKIP_DOCKER") == "1", reason="SALAD_SKIP_DOCKER=1"),
]

LABEL = "salad.test.images"  # on every container and network of a run: its id (see remove_runs)
MAX_IMAGE_MB = 400
# Fruits take 2-4 s here, and a stopping worker may take 10 s to finish them.
MASTER_ENV = {"SALAD_EXECUTION_TIME_MIN": "2", "SALAD_EXECUTION_TIME_MAX": "4", "SALAD_LEASE_SECONDS": "60"}
WORKER_ENV = {"SALAD_SLOTS": "2", "SALAD_GRACE_SECONDS": "10", "SALAD_CLAIM_WAIT": "2",
              "SALAD_HEARTBEAT_INTERVAL": "2", "SALAD_TIME_SCALE": "1.0"}
GRACE_SECONDS = float(WORKER_ENV["SALAD_GRACE_SECONDS"])


@pytest.fixture(scope="session")
def chart_pods() -> dict[str, dict]:
    """component -> container spec, as the chart's default values render them."""
    deployments = parse(render_chart({})["salad/templates/deployment.yaml"])
    return {component(d): d["spec"]["template"]["spec"]["containers"][0] for d in deployments}


def chart_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


# --- The images ------------------------------------------------------------------------------------------
def test_image_sizes(images, docker, capsys):
    with capsys.disabled():
        print()
        for image in images.values():
            size_mb = image["inspect"]["Size"] / 1e6
            print(f"  {image['tag']:<20} {size_mb:6.0f} MB   built in {image['seconds']:5.1f} s")
    for service, image in images.items():
        assert image["inspect"]["Size"] / 1e6 < MAX_IMAGE_MB, f"{service} image is over {MAX_IMAGE_MB} MB"


def test_images_share_their_layers(images):
    """The three images differ only in metadata: one copy of the virtualenv serves all three. (Editing
    services/ while the three build makes them differ.)"""
    layers = {s: image["inspect"]["RootFS"]["Layers"] for s, image in images.items()}
    assert layers["shared"] == layers["master"] == layers["worker"]


@pytest.mark.parametrize("service", SERVICES)
def test_image_metadata(images, chart_pods, service):
    config = images[service]["inspect"]["Config"]
    user = config["User"]
    assert re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user), f"USER {user!r} is not a numeric non-root user"
    assert config["Entrypoint"] == ["salad"] and config["Cmd"] == [service], "exec form, no shell"
    assert config.get("Healthcheck") is None, "Kubernetes ignores HEALTHCHECK: the chart's probes check"
    declared = {f"{p['containerPort']}/tcp" for p in chart_pods[service]["ports"]}
    assert set(config["ExposedPorts"]) == declared
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == f"salad-{service}"
    for key in ("version", "revision", "licenses", "description", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"no OCI label {key}"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin") and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_runtime_installs_nothing(images, docker):
    """pip and setuptools are gone from the runtime virtualenv; salad and its dependencies import."""
    result = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python3",
                    images["worker"]["tag"], "-c",
                    "import importlib.util as u, salad.worker.main, salad.shared.app, salad.master.app; "
                    "print(u.find_spec('pip'), u.find_spec('setuptools'))")
    assert result.stdout.split() == ["None", "None"]


# --- The stack in containers -----------------------------------------------------------------------------
class Stack:
    """Containers of one test run on a private network: started with the chart's hardening and the bearer
    tokens the chart gives each service, found by each other under their network alias (their key) on the
    chart's ports, reached from the host at their addresses; removed at the end."""

    def __init__(self, docker: Docker, images: dict, chart_pods: dict):
        self.docker, self.images, self.chart_pods = docker, images, chart_pods
        self.run_id = uuid.uuid4().hex[:8]
        self.network = f"salad-test-images-{self.run_id}"
        self.names: dict[str, str] = {}
        self.tokens = {role: uuid.uuid4().hex for role in ("CLIENT", "MASTER", "WORKER")}
        self.token_env = {  # service -> the SALAD_*_TOKEN variables its chart container gets
            service: {v["name"]: self.tokens[v["name"].removeprefix("SALAD_").removesuffix("_TOKEN")]
                      for v in pod.get("env", []) if v["name"].endswith("_TOKEN")}
            for service, pod in chart_pods.items()}
        self.auth = {"Authorization": f"Bearer {self.tokens['CLIENT']}"}
        self.database_url = ""

    def create_network(self) -> None:
        self.docker("network", "create", "--internal", *run_labels(LABEL, self.run_id), self.network)

    def start_database(self, image: str) -> None:
        """PostgreSQL on the network as `postgres`, with a database and a password of its own."""
        password = uuid.uuid4().hex
        name = f"salad-test-postgres-{self.run_id}"
        self.docker("run", "--detach", "--name", name, "--network", self.network,
                    "--network-alias", "postgres", *run_labels(LABEL, self.run_id),
                    "--env", "POSTGRES_USER=salad", "--env", "POSTGRES_DB=salad",
                    "--env", f"POSTGRES_PASSWORD={password}", image)
        wait_postgres(self.docker, name)
        self.database_url = f"postgresql://salad:{password}@postgres:5432/salad"

    def hardening(self, service: str) -> list[str]:
        user = self.images[service]["inspect"]["Config"]["User"]
        return ["--network", self.network, "--read-only", "--tmpfs", "/tmp:rw,size=16m", "--user", user,
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges", *run_labels(LABEL, self.run_id)]

    def run(self, key: str, service: str, env: dict, *args: str) -> str:
        name = f"salad-test-{key}-{self.run_id}"
        flags = [f"--env={k}={v}" for k, v in {**self.token_env[service], **env}.items()]
        self.docker("run", "--detach", "--name", name, "--network-alias", key, *self.hardening(service),
                    *flags, self.images[service]["tag"], *args)
        self.names[key] = name
        return name

    def url(self, key: str, port: int) -> str:
        """The container's address as the host reaches it."""
        return f"http://{self.docker.ip(self.names[key], self.network)}:{port}"

    def migrate(self) -> None:
        result = self.docker("run", "--rm", *self.hardening("master"),
                             "--env", f"SALAD_DATABASE_URL={self.database_url}",
                             self.images["master"]["tag"], "migrate", timeout=180)
        assert "up to date" in result.stdout + result.stderr

    def logs(self) -> str:
        return "\n".join(f"--- {key}:\n{self.docker('logs', '--tail', '40', name, check=False).stderr}"
                         for key, name in self.names.items())

    def remove(self) -> None:
        remove_runs(self.docker, LABEL, self.run_id)


def wait_ready(url: str, stack: Stack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not ready within {timeout} s\n{stack.logs()}")


@pytest.fixture(scope="module")
def ports(chart_pods) -> dict[str, int]:
    """The chart's ports: each container has an address of its own, so two workers share theirs."""
    return {s: chart_port(chart_pods[s], "http") for s in SERVICES}


@pytest.fixture(scope="module")
def stack(docker, private_network, images, postgres_image, ports, chart_pods):
    remove_runs(docker, LABEL)  # what interrupted runs left
    stack = Stack(docker, images, chart_pods)
    try:
        stack.create_network()
        stack.start_database(postgres_image)
        stack.migrate()
        shared_url, master_url = f"http://shared:{ports['shared']}", f"http://master:{ports['master']}"
        database = {"SALAD_DATABASE_URL": stack.database_url}
        stack.run("shared", "shared", {**database, "SALAD_PORT": ports["shared"],
                                       "SALAD_MASTER_URL": master_url})
        stack.run("master", "master", {**database, "SALAD_PORT": ports["master"],
                                       "SALAD_SHARED_URL": shared_url, **MASTER_ENV})
        for key in ("worker-a", "worker-b"):
            stack.run(key, "worker", {"SALAD_MASTER_URL": master_url, "SALAD_PORT": ports["worker"],
                                      "SALAD_WORKER_NAME": key, **WORKER_ENV})
        stack.master_internal_url = master_url
        stack.endpoints = {key: stack.url(key, ports["worker" if key.startswith("worker") else key])
                           for key in stack.names}
        for url in stack.endpoints.values():
            wait_ready(f"{url}/readyz", stack)
        stack.shared_url, stack.master_url = stack.endpoints["shared"], stack.endpoints["master"]
        yield stack
    finally:
        stack.remove()


def order(stack: Stack, fruits: list[str]) -> int:
    response = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": fruits}, headers=stack.auth,
                          timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_order(stack: Stack, order_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = httpx.get(f"{stack.shared_url}/v1/orders/{order_id}", headers=stack.auth, timeout=10).json()
        if current["status"] in {"completed", "failed"}:
            return current
        time.sleep(0.5)
    pytest.fail(f"order {order_id} not finished within {timeout} s: {current}\n{stack.logs()}")


def test_a_salad_completes(stack):
    anonymous = httpx.post(f"{stack.shared_url}/v1/orders", json={"fruits": ["apple"]}, timeout=10)
    assert anonymous.status_code == 401, "the chart's tokens turn authentication on"
    final = wait_order(stack, order(stack, ["apple", "banana", "kiwi"]), timeout=60)
    assert final["status"] == "completed", final
    assert final["preparation_time"] > 0
    stats = httpx.get(f"{stack.master_url}/v1/stats", timeout=5).json()
    # KEDA's metrics-api scaler reads "queued".
    assert set(stats) >= {"queued", "running", "live_workers", "oldest_queued_age_seconds"}
    assert stats["live_workers"] == 2


def test_containers_run_as_their_user_on_a_read_only_root(stack, images):
    for key, name in stack.names.items():
        service = "worker" if key.startswith("worker") else key
        inspect = json.loads(stack.docker("inspect", name).stdout)[0]
        assert inspect["State"]["Running"], f"{key} is not running\n{stack.logs()}"
        assert inspect["HostConfig"]["ReadonlyRootfs"] is True
        expected_uid = images[service]["inspect"]["Config"]["User"].split(":")[0]
        uid = stack.docker("exec", name, "id", "-u").stdout.strip()
        assert uid == expected_uid != "0"
        for path in ("/probe", "/opt/venv/probe"):
            touch = stack.docker("exec", name, "touch", path, check=False)
            assert touch.returncode != 0, f"{key} can write {path}"
            assert "Read-only file system" in touch.stderr
        assert stack.docker("exec", name, "touch", "/tmp/probe", check=False).returncode == 0


def test_probes_the_chart_declares_answer(stack, chart_pods):
    """Every probe path and port of the chart's Deployments, and /metrics, answer 200 in the containers."""
    for service in SERVICES:
        container = chart_pods[service]
        address = stack.docker.ip(stack.names["worker-a" if service == "worker" else service], stack.network)
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            url = f"http://{address}:{chart_port(container, get['port'])}{get['path']}"
            assert httpx.get(url, timeout=5).status_code == 200, f"{service} {probe}: {url}"
        metrics = httpx.get(f"http://{address}:{chart_port(container, 'http')}/metrics", timeout=5)
        assert metrics.status_code == 200 and "salad_" in metrics.text


def busy_slots(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    match = re.search(r"^salad_worker_busy_slots(?:\{[^}]*\})? ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def stop(stack: Stack, key: str) -> tuple[float, int]:
    """docker stop (SIGTERM, SIGKILL only after a generous timeout): seconds taken and the exit code."""
    started = time.monotonic()
    stack.docker("stop", "--time", str(int(GRACE_SECONDS) + 30), stack.names[key], timeout=120)
    elapsed = time.monotonic() - started
    state = json.loads(stack.docker("inspect", stack.names[key]).stdout)[0]["State"]
    return elapsed, state["ExitCode"]


def test_sigterm_lets_a_busy_worker_finish_its_tasks(stack, ports):
    """A worker stopped while it prepares fruits finishes them within its grace period and exits cleanly;
    the order completes with every fruit prepared once (no lease left to expire)."""
    elapsed, code = stop(stack, "worker-a")  # idle: leaves worker-b alone with the next order
    assert code == 0 and elapsed < GRACE_SECONDS, f"idle worker: exit {code} after {elapsed:.1f} s"

    order_id = order(stack, ["mango", "pear", "plum", "grape"])
    deadline = time.monotonic() + 30
    slots = int(WORKER_ENV["SALAD_SLOTS"])
    while busy_slots(stack.endpoints["worker-b"]) < slots:  # both slots busy: no claim is in flight
        assert time.monotonic() < deadline, f"worker-b never got busy\n{stack.logs()}"
        time.sleep(0.2)

    elapsed, code = stop(stack, "worker-b")
    assert code == 0, f"worker-b exited {code} (137 means killed)\n{stack.logs()}"
    assert elapsed < GRACE_SECONDS, f"worker-b took {elapsed:.1f} s to stop, grace is {GRACE_SECONDS} s"

    stack.run("worker-c", "worker", {"SALAD_MASTER_URL": stack.master_internal_url,
                                     "SALAD_PORT": ports["worker"],
                                     "SALAD_WORKER_NAME": "worker-c", **WORKER_ENV})
    final = wait_order(stack, order_id, timeout=60)
    assert final["status"] == "completed", final
    by_worker = {t["fruit"]: (t["worker"], t["attempts"]) for t in final["tasks"]}
    assert [w for w, _ in by_worker.values()].count("worker-b") == slots, by_worker
    assert all(attempts == 1 for _, attempts in by_worker.values()), f"a task was retried: {by_worker}"
