"""The three images, built with a real Docker engine and run as the stack against PostgreSQL.

Builds the base image (scripts/base-image.sh, kept by tag) and salad-shared, salad-master, salad-worker
(layers cached between runs), reports their sizes, then runs migrate, Shared, Master and two workers as
containers the way the chart runs them: read-only root filesystem, the image's numeric user, no
capabilities. Checks that a salad completes, that the probes the chart declares answer, and that SIGTERM
stops a busy worker within its grace period without losing its tasks.

Containers use the host network (PostgreSQL listens on 127.0.0.1) and the chart's ports, which must be free.
SALAD_SKIP_DOCKER=1 skips this module; otherwise a Docker engine that cannot be reached is a failure.
Set SALAD_TEST_BASE_IMAGE to build from another base (e.g. python:3.11-slim-bookworm where it can be pulled).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

import httpx
import psycopg
import pytest

from .manifests import REPO, component, parse, render_chart

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(os.environ.get("SALAD_SKIP_DOCKER") == "1", reason="SALAD_SKIP_DOCKER=1"),
]

SERVICES = ("shared", "master", "worker")
BASE_TAG = os.environ.get("SALAD_TEST_BASE_IMAGE", "salad-base:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABEL = "salad.test=images"  # every container this module starts carries it, for the clean-up
MAX_IMAGE_MB = 400
# Fruits take 2-4 s here, and a stopping worker may take 10 s to finish them.
MASTER_ENV = {"SALAD_EXECUTION_TIME_MIN": "2", "SALAD_EXECUTION_TIME_MAX": "4", "SALAD_LEASE_SECONDS": "60"}
WORKER_ENV = {"SALAD_SLOTS": "2", "SALAD_GRACE_SECONDS": "10", "SALAD_CLAIM_WAIT": "2",
              "SALAD_HEARTBEAT_INTERVAL": "2", "SALAD_TIME_SCALE": "1.0"}
GRACE_SECONDS = float(WORKER_ENV["SALAD_GRACE_SECONDS"])


# --- Docker ----------------------------------------------------------------------------------------------
class Docker:
    """A docker CLI able to use BuildKit: with the buildx plugin, or an engine-bundled client (< 23)."""

    def __init__(self, path: str):
        self.path = path
        self.env = {**os.environ, "DOCKER_BUILDKIT": "1"}

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([self.path, *args], capture_output=True, text=True, env=self.env,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args[:3])}... failed ({result.returncode}):\n"
                                 f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result

    @staticmethod
    def find() -> "Docker | None":
        candidates = [os.environ.get("SALAD_DOCKER"), shutil.which("docker"), "/usr/bin/docker"]
        for path in dict.fromkeys(c for c in candidates if c and os.path.exists(c)):
            def run(*args: str, cli: str = path) -> subprocess.CompletedProcess:
                return subprocess.run([cli, *args], capture_output=True, text=True, timeout=30, check=False)

            if run("buildx", "version").returncode == 0:
                return Docker(path)
            version = run("version", "--format", "{{.Client.Version}}").stdout.strip()
            if version and int(version.split(".")[0]) < 23:  # BuildKit built in, DOCKER_BUILDKIT=1
                return Docker(path)
        return None


def start_dockerd(docker: "Docker", log_path: str) -> subprocess.Popen | None:
    """As root with no engine running, start one for the session: no bridge network and no iptables rules
    (every container here uses the host network), images kept in the usual /var/lib/docker."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        return None
    with open(log_path, "w") as log:
        process = subprocess.Popen([dockerd, "--bridge=none", "--iptables=false", "--ip-masq=false"],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if docker("info", check=False, timeout=10).returncode == 0:
            return process
        time.sleep(0.5)
    process.terminate()
    return None


@pytest.fixture(scope="session")
def docker(tmp_path_factory):
    """The Docker CLI; if no engine answers, one started for the session (stopped at its end)."""
    found = Docker.find()
    if found is None:
        pytest.fail("no docker CLI able to build with BuildKit (docker buildx, or Debian's docker.io client)")
    started = None
    if found("info", check=False, timeout=30).returncode != 0:
        started = start_dockerd(found, str(tmp_path_factory.mktemp("dockerd") / "dockerd.log"))
        info = found("info", check=False, timeout=30)
        if info.returncode != 0:
            pytest.fail(f"cannot reach the Docker engine ({found.path}): {info.stderr.strip()}; start "
                        "dockerd (apt-get install docker.io), or set SALAD_SKIP_DOCKER=1 to skip these tests")
    yield found
    if started is not None:
        started.terminate()
        started.wait(timeout=60)


@pytest.fixture(scope="session")
def base_image(docker) -> str:
    if docker("image", "inspect", BASE_TAG, check=False).returncode != 0:
        if BASE_TAG != "salad-base:bookworm":
            docker("pull", BASE_TAG, timeout=600)
        else:
            result = subprocess.run(["bash", str(REPO / "scripts" / "base-image.sh")], capture_output=True,
                                    text=True, timeout=900, env={**docker.env, "DOCKER": docker.path},
                                    check=False)
            assert result.returncode == 0, \
                f"scripts/base-image.sh failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return BASE_TAG


@pytest.fixture(scope="session")
def images(docker, base_image) -> dict[str, dict]:
    """service -> {"tag", "seconds" (build time), "inspect"}; built one after the other, sharing layers."""
    assert (REPO / "requirements.lock").is_file(), "requirements.lock (pinned dependencies) is missing"
    built = {}
    for service in SERVICES:
        tag = f"salad-{service}:test"
        args = ["build", "--network", "host", "--file", str(REPO / f"Dockerfile.{service}"),
                "--build-arg", f"BASE_IMAGE={base_image}", "--tag", tag]
        if os.path.exists(CA_BUNDLE):  # pip behind a TLS-intercepting proxy
            args += ["--secret", f"id=pip_cert,src={CA_BUNDLE}"]
        started = time.monotonic()
        docker(*args, str(REPO), timeout=900)
        inspect = json.loads(docker("image", "inspect", tag).stdout)[0]
        built[service] = {"tag": tag, "seconds": time.monotonic() - started, "inspect": inspect}
    return built


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
    """Containers of one test session: started with the chart's hardening and the bearer tokens the chart
    gives each service, removed at the end."""

    def __init__(self, docker: Docker, images: dict, database_url: str, chart_pods: dict):
        self.docker, self.images, self.database_url = docker, images, database_url
        self.suffix = uuid.uuid4().hex[:6]
        self.names: dict[str, str] = {}
        self.tokens = {role: uuid.uuid4().hex for role in ("CLIENT", "MASTER", "WORKER")}
        self.token_env = {  # service -> the SALAD_*_TOKEN variables its chart container gets
            service: {v["name"]: self.tokens[v["name"].removeprefix("SALAD_").removesuffix("_TOKEN")]
                      for v in pod.get("env", []) if v["name"].endswith("_TOKEN")}
            for service, pod in chart_pods.items()}
        self.auth = {"Authorization": f"Bearer {self.tokens['CLIENT']}"}

    def hardening(self, service: str) -> list[str]:
        user = self.images[service]["inspect"]["Config"]["User"]
        return ["--network", "host", "--read-only", "--tmpfs", "/tmp:rw,size=16m", "--user", user,
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--label", LABEL]

    def run(self, key: str, service: str, env: dict, *args: str) -> str:
        name = f"salad-test-{key}-{self.suffix}"
        flags = [f"--env={k}={v}" for k, v in {**self.token_env[service], **env}.items()]
        self.docker("run", "--detach", "--name", name, *self.hardening(service), *flags,
                    self.images[service]["tag"], *args)
        self.names[key] = name
        return name

    def migrate(self) -> None:
        result = self.docker("run", "--rm", *self.hardening("master"),
                             "--env", f"SALAD_DATABASE_URL={self.database_url}",
                             self.images["master"]["tag"], "migrate", timeout=180)
        assert "up to date" in result.stdout + result.stderr

    def logs(self) -> str:
        return "\n".join(f"--- {key}:\n{self.docker('logs', '--tail', '40', name, check=False).stderr}"
                         for key, name in self.names.items())

    def remove(self) -> None:
        listed = self.docker("ps", "--all", "--quiet", "--filter", f"label={LABEL}", check=False)
        leftovers = listed.stdout.split()
        if leftovers:
            self.docker("rm", "--force", *leftovers, check=False)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


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
def database(postgres_admin_url) -> str:
    """An empty database of its own: the migrate container creates the schema."""
    name = f"salad_images_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return postgres_admin_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def ports(chart_pods) -> dict[str, int]:
    chosen = {s: chart_port(chart_pods[s], "http") for s in SERVICES}
    chosen["worker-b"] = chosen["worker"] + 1
    busy = [p for p in chosen.values() if not port_is_free(p)]
    if busy:
        pytest.fail(f"ports {busy} are taken: the containers use the host network and the chart's ports")
    return chosen


@pytest.fixture(scope="module")
def stack(docker, images, database, ports, chart_pods):
    stack = Stack(docker, images, database, chart_pods)
    stack.remove()  # containers left by an interrupted run
    try:
        stack.migrate()
        shared_url, master_url = f"http://127.0.0.1:{ports['shared']}", f"http://127.0.0.1:{ports['master']}"
        stack.run("shared", "shared", {"SALAD_DATABASE_URL": database, "SALAD_PORT": ports["shared"],
                                       "SALAD_MASTER_URL": master_url})
        stack.run("master", "master", {"SALAD_DATABASE_URL": database, "SALAD_PORT": ports["master"],
                                       "SALAD_SHARED_URL": shared_url, **MASTER_ENV})
        for key in ("worker-a", "worker-b"):
            port = ports["worker"] if key == "worker-a" else ports["worker-b"]
            stack.run(key, "worker", {"SALAD_MASTER_URL": master_url, "SALAD_PORT": port,
                                      "SALAD_WORKER_NAME": key, **WORKER_ENV})
        for port in (ports["shared"], ports["master"], ports["worker"], ports["worker-b"]):
            wait_ready(f"http://127.0.0.1:{port}/readyz", stack)
        stack.shared_url, stack.master_url = shared_url, master_url
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
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            url = f"http://127.0.0.1:{chart_port(container, get['port'])}{get['path']}"
            assert httpx.get(url, timeout=5).status_code == 200, f"{service} {probe}: {url}"
        metrics = httpx.get(f"http://127.0.0.1:{chart_port(container, 'http')}/metrics", timeout=5)
        assert metrics.status_code == 200 and "salad_" in metrics.text


def busy_slots(port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
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
    while busy_slots(ports["worker-b"]) < slots:  # both slots busy: no claim is in flight
        assert time.monotonic() < deadline, f"worker-b never got busy\n{stack.logs()}"
        time.sleep(0.2)

    elapsed, code = stop(stack, "worker-b")
    assert code == 0, f"worker-b exited {code} (137 means killed)\n{stack.logs()}"
    assert elapsed < GRACE_SECONDS, f"worker-b took {elapsed:.1f} s to stop, grace is {GRACE_SECONDS} s"

    stack.run("worker-c", "worker", {"SALAD_MASTER_URL": stack.master_url, "SALAD_PORT": ports["worker"],
                                     "SALAD_WORKER_NAME": "worker-c", **WORKER_ENV})
    final = wait_order(stack, order_id, timeout=60)
    assert final["status"] == "completed", final
    by_worker = {t["fruit"]: (t["worker"], t["attempts"]) for t in final["tasks"]}
    assert [w for w, _ in by_worker.values()].count("worker-b") == slots, by_worker
    assert all(attempts == 1 for _, attempts in by_worker.values()), f"a task was retried: {by_worker}"
