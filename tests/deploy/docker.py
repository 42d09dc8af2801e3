"""Docker for the deploy tests: the CLI, an engine (one started for the session if none answers), and the
images, built once per session with Docker's layer cache: the base (scripts/base-image.sh), salad-shared,
salad-master, salad-worker, and a local stand-in for the official postgres image
(tests/deploy/postgres-standin).

Registered as fixtures by tests/deploy/conftest.py. Containers run on private Docker networks (user-defined
bridges, with Docker's embedded DNS answering network aliases): no host network, no published port.
"""

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from .manifests import CHART, REPO

SERVICES = ("shared", "master", "worker")
BASE_TAG = os.environ.get("SALAD_TEST_BASE_IMAGE", "salad-base:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STANDIN_DIR = Path(__file__).with_name("postgres-standin")
STANDIN_LABEL = "salad.test.standin=postgres"  # marks the stand-in, so that a real postgres image is kept
# The engine started for the session: bridges for user-defined networks, but no default bridge, and no
# iptables rules, NAT or IP forwarding turned on on the host. Docker's embedded DNS (network aliases) and the
# host reaching containers on a bridge need none of them (checked by the `private_network` fixture):
# containers of a network reach each other and the host, and nothing beyond.
DOCKERD_ARGS = ["--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false"]


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

    def build(self, tag: str, context: Path, *args: str) -> float:
        """docker build on the host network (pip and apt reach their archives), pip given the CA bundle;
        returns the seconds taken."""
        command = ["build", "--network", "host", "--tag", tag, *args]
        if os.path.exists(CA_BUNDLE):  # pip behind a TLS-intercepting proxy
            command += ["--secret", f"id=pip_cert,src={CA_BUNDLE}"]
        started = time.monotonic()
        self(*command, str(context), timeout=1200)
        return time.monotonic() - started

    def inspect_image(self, tag: str) -> dict | None:
        result = self("image", "inspect", tag, check=False)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def ip(self, container: str, network: str) -> str:
        template = f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}'
        return self("inspect", "--format", template, container).stdout.strip()


def start_dockerd(docker: Docker, log_path: str) -> subprocess.Popen | None:
    """As root with no engine running, start one for the session (DOCKERD_ARGS), images kept in the usual
    /var/lib/docker so that the next session finds its layers."""
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        return None
    with open(log_path, "w") as log:
        process = subprocess.Popen([dockerd, *DOCKERD_ARGS], stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
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
def private_network(docker, base_image) -> None:
    """Checks once that the engine gives what the tests rely on: on a user-defined internal network, a
    network alias resolves from another container, and the host reaches a container at its address."""
    name = f"salad-netcheck-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--internal", "--label", "salad.test=netcheck", name)
    try:
        docker("run", "--detach", "--name", name, "--network", name, "--network-alias", "probe.salad.svc",
               "--label", "salad.test=netcheck", base_image, "python3", "-m", "http.server", "8080")
        resolved = docker("run", "--rm", "--network", name, "--label", "salad.test=netcheck", base_image,
                          "getent", "hosts", "probe.salad.svc", check=False)
        address = docker.ip(name, name)
        assert resolved.returncode == 0 and address in resolved.stdout, (
            f"Docker's embedded DNS does not resolve a network alias ({resolved.stdout}{resolved.stderr}); "
            f"the engine must support user-defined networks (dockerd {' '.join(DOCKERD_ARGS)} does here)")
        import httpx

        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"http://{address}:8080/", timeout=2)
                break
            except httpx.HTTPError as error:
                assert time.monotonic() < deadline, f"the host cannot reach a container at {address}: {error}"
                time.sleep(0.3)
    finally:
        docker("rm", "--force", name, check=False)
        docker("network", "rm", name, check=False)


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
        seconds = docker.build(tag, REPO, "--file", str(REPO / f"Dockerfile.{service}"),
                               "--build-arg", f"BASE_IMAGE={base_image}")
        built[service] = {"tag": tag, "seconds": seconds, "inspect": docker.inspect_image(tag)}
    return built


def chart_postgres_image() -> str:
    """The image reference the chart renders for the bundled PostgreSQL (values postgresql.image)."""
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        image = chart.merge_values({})["postgresql"]["image"]
    return f"{image['registry']}/{image['repository']}:{image['tag']}"


@pytest.fixture(scope="session")
def postgres_image(docker, base_image) -> str:
    """The chart's PostgreSQL image reference, present locally: the real image if someone loaded it, else
    the stand-in built from the base image and tagged with that reference (nothing can be pulled here)."""
    reference = chart_postgres_image()
    present = docker.inspect_image(reference)
    key, value = STANDIN_LABEL.split("=")
    if present is None or (present["Config"].get("Labels") or {}).get(key) == value:
        docker.build(reference, STANDIN_DIR, "--build-arg", f"BASE_IMAGE={base_image}",
                     "--label", STANDIN_LABEL)
    return reference


def run_labels(label: str, run: str) -> list[str]:
    """Labels of every object a test run makes: `<label>=<run>` and the process id, for `remove_runs`."""
    return ["--label", f"{label}={run}", "--label", f"{label}.pid={os.getpid()}"]


def remove_runs(docker: Docker, label: str, run: str | None = None) -> None:
    """Removes the containers (and their anonymous volumes), volumes and networks of one run (`run_labels`),
    or without `run` those of runs whose process is gone (interrupted), never those of a live one."""
    def doomed(owner: str, pid: str) -> bool:
        if run is not None:
            return owner == run
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            return True
        except PermissionError:
            pass
        return False

    for kind, listing in (("container", ["ps", "--all"]), ("volume", ["volume", "ls"]),
                          ("network", ["network", "ls"])):
        key = "{{.Name}}" if kind == "volume" else "{{.ID}}"
        rows = docker(*listing, "--filter", f"label={label}", "--format",
                      f'{key} {{{{.Label "{label}"}}}} {{{{.Label "{label}.pid"}}}}', check=False).stdout
        rows = [row.split() for row in rows.splitlines()]
        names = [row[0] for row in rows if len(row) == 3 and doomed(*row[1:])]
        if names:
            remove = ["rm", "--force", "--volumes"] if kind == "container" else [kind, "rm"]
            docker(*remove, *names, check=False, timeout=300)


def wait_postgres(docker: Docker, container: str, timeout: float = 60) -> None:
    """Until pg_isready answers inside the container (the stand-in's or the official image's)."""
    deadline = time.monotonic() + timeout
    while docker("exec", container, "pg_isready", "--quiet", "--host=127.0.0.1", check=False).returncode:
        if time.monotonic() > deadline:
            logs = docker("logs", "--tail", "20", container, check=False)
            raise AssertionError(f"PostgreSQL in {container} not ready within {timeout} s:\n"
                                 f"{logs.stdout}{logs.stderr}")
        time.sleep(0.3)
