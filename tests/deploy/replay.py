"""A replay of the user's cluster path with Docker containers: `helm install --wait`, `helm test`,
`kubectl scale`, `helm upgrade`, played the way Helm and the kubelet would, on one machine.

The chart is rendered with Helm's Go SDK; the harness then acts on the rendered objects only, whatever
their names: ConfigMaps and Secrets feed env and envFrom; each Service name resolves to the pods its selector
matches (Docker network aliases on a private network); Deployments, StatefulSets, DaemonSets, Jobs and Pods
run their pods as containers (init containers first, probes, restarts with back-off, graceful termination).
Custom resources and objects only an API server acts on (ServiceAccount, PodDisruptionBudget, HPA...) are
kept, not acted on.

Each pod is a sandbox container holding the network namespace (hostname = pod name, the Service aliases),
which its containers join (`--network container:`), as they join the kubelet's pause container.

Known differences from a cluster, on purpose: a Service name resolves to every pod it selects from the pod's
start to its end, ready or not (a cluster lists ready pods only), and leads to the pod's own port (a Service
whose port differs from its targetPort is noted in `Replay.notes`); no API server (no service account token,
no service-link variables); images are never pulled; volumes are emptyDir and PersistentVolumeClaims only.
"""

import atexit
import base64
import copy
import hashlib
import http.client
import json
import math
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .docker import remove_runs, run_labels

LABEL = "salad.replay"  # on every container, volume and network of a replay: its run id (and its pid)
WORKDIR = Path(tempfile.gettempdir()) / "salad-replay"  # emptyDir volumes, /<run>-<pid>/<pod>/<uid>/<name>
# Helm's install order of kinds (releaseutil.InstallOrder); hooks of one weight are created in this order.
KIND_ORDER = ["Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
              "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
              "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
              "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList",
              "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController",
              "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
              "IngressClass", "Ingress", "APIService"]
CONTROLLERS = {"Deployment", "StatefulSet", "DaemonSet", "Pod"}  # what --wait waits for
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of Kubernetes' generated name suffixes
UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


class ReplayError(AssertionError):
    """A phase failed: the message says what did not get ready or complete, and why."""


class ConfigError(Exception):
    """A container cannot be created (the kubelet's CreateContainerConfigError, ErrImageNeverPull...)."""


# --- Small helpers ---------------------------------------------------------------------------------------
def suffix(n: int = 5) -> str:
    return "".join(random.choice(NAME_CHARS) for _ in range(n))


def quantity(value) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return float(number) * UNITS[unit]


def scaled(value, total: int, round_up: bool) -> int:
    """An int-or-percent of a rolling update (maxSurge rounds up, maxUnavailable down)."""
    if isinstance(value, str) and value.endswith("%"):
        exact = total * float(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def backoff(restarts: int, cap: float = 300) -> float:
    """The kubelet restarts a container at once the first time, then after 10 s, 20 s, ... up to 5 min."""
    return 0 if restarts <= 0 else min(10 * 2 ** (restarts - 1), cap)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, the rest stays."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def hook_events(obj: dict) -> list[str]:
    hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook", "")
    return [h.strip() for h in hook.split(",") if h.strip()]


def kind_order(obj: dict) -> int:
    return KIND_ORDER.index(obj["kind"]) if obj["kind"] in KIND_ORDER else len(KIND_ORDER)


def hook_order(obj: dict) -> tuple:
    """Helm runs hooks by weight, then kind, then name."""
    weight = int(obj["metadata"].get("annotations", {}).get("helm.sh/hook-weight", "0"))
    return weight, kind_order(obj), obj["metadata"]["name"]


def get_path(values: dict, path: str):
    for key in path.split("."):
        values = values.get(key) if isinstance(values, dict) else None
    return values


def set_path(values: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def template_hash(template: dict) -> str:
    digest = int(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest(), 16)
    return "".join(NAME_CHARS[(digest >> (5 * i)) % len(NAME_CHARS)] for i in range(10))


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(spec: dict, port) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    return next(p["containerPort"] for p in spec.get("ports", []) if p.get("name") == port)


# --- Probes and handlers ---------------------------------------------------------------------------------
@dataclass
class Probe:
    """One declared probe of a container and its counters, timed as the kubelet times it."""

    kind: str  # startup, liveness, readiness
    spec: dict
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    last: str = ""  # what the last run saw, for error messages

    def record(self, ok: bool, message: str) -> str | None:
        """Counts a result; returns "pass" or "fail" when a threshold is reached."""
        self.next_at, self.last = time.monotonic() + self.spec.get("periodSeconds", 10), message
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            return "pass" if self.successes >= self.spec.get("successThreshold", 1) else None
        self.successes, self.failures = 0, self.failures + 1
        return "fail" if self.failures >= self.spec.get("failureThreshold", 3) else None


def run_handler(docker, handler: dict, pod_ip: str, container: "Container",
                timeout: float) -> tuple[bool, str]:
    """A probe or lifecycle handler, as the kubelet runs it: (success, what happened)."""
    if get := handler.get("httpGet"):
        port, path = container_port(container.spec, get["port"]), get.get("path", "/")
        https = get.get("scheme") == "HTTPS"
        connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        headers = {h["name"]: h["value"] for h in get.get("httpHeaders", [])}
        headers.setdefault("User-Agent", "kube-probe/replay")
        try:
            connection = connection_class(get.get("host") or pod_ip, port, timeout=timeout)
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = " ".join(response.read(300).decode(errors="replace").split())[:120]
            connection.close()
        except (OSError, http.client.HTTPException) as error:
            return False, f"GET {path} on port {port}: {error or type(error).__name__}"
        return 200 <= response.status < 400, f"GET {path} -> {response.status} {body}".strip()
    if tcp := handler.get("tcpSocket"):
        port = container_port(container.spec, tcp["port"])
        try:
            socket.create_connection((tcp.get("host") or pod_ip, port), timeout=timeout).close()
            return True, f"tcp {port} open"
        except OSError as error:
            return False, f"tcp {port}: {error}"
    if command := handler.get("exec", {}).get("command"):
        try:
            result = docker("exec", container.docker_name, *command, check=False, timeout=timeout + 5)
        except subprocess.TimeoutExpired:
            return False, f"exec {' '.join(command)}: timed out after {timeout} s"
        output = (result.stdout + result.stderr).strip()[-200:]
        return result.returncode == 0, f"exec {' '.join(command)}: exit {result.returncode} {output}".strip()
    return False, f"handler {sorted(handler)} is not replayed"


# --- Pods ------------------------------------------------------------------------------------------------
@dataclass
class Container:
    """One container of a pod, as the kubelet tracks it."""

    spec: dict
    docker_name: str
    created: bool = False
    running: bool = False
    started_at: float = 0.0
    restarts: int = 0
    retry_at: float = 0.0  # when a container waiting to (re)start tries next
    started: bool = False  # its startup probe passed (or it has none)
    ready: bool = False
    exit_code: int | None = None  # of its last run
    done: bool = False  # exited for good: an init container with 0, or per restartPolicy
    waiting: str = ""  # why it is not running
    probes: dict[str, Probe] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec["name"]


class Pod:
    """A pod, in a thread of its own: its sandbox, the init containers one after the other to completion,
    then its containers under their probes, restarted per restartPolicy with back-off."""

    def __init__(self, replay: "Replay", name: str, template: dict, revision: str = ""):
        self.replay, self.name, self.revision = replay, name, revision  # revision: its template's hash
        self.namespace = template["metadata"].get("namespace") or replay.namespace
        self.labels = dict(template["metadata"].get("labels", {}))
        self.spec = copy.deepcopy(template["spec"])
        self.uid = uuid.uuid4().hex[:8]
        self.policy = self.spec.get("restartPolicy", "Always")
        self.ip, self.volumes = "", {}
        self.phase, self.reason = "Pending", "created"
        self.created_at = time.monotonic()
        self.terminating, self.deleting = False, None  # deleting: the thread running terminate()
        self.exit_codes: dict[str, int | None] = {}  # of the containers a deletion stopped
        self.stopping, self.finished = threading.Event(), threading.Event()
        self.sandbox = self.docker_name("POD")  # named as dockershim named them
        self.init_containers = [Container(s, self.docker_name(s["name"]))
                                for s in self.spec.get("initContainers", [])]
        self.containers = [Container(s, self.docker_name(s["name"])) for s in self.spec["containers"]]
        self.thread = threading.Thread(target=self._run, name=f"pod {name}", daemon=True)

    def docker_name(self, container: str) -> str:
        return f"k8s_{container}_{self.name}_{self.namespace}_{self.uid}_0"

    @property
    def ready(self) -> bool:
        return self.phase == "Running" and not self.terminating and all(c.ready for c in self.containers)

    def start(self) -> "Pod":
        self.thread.start()
        return self

    def wait(self, timeout: float) -> bool:
        """Until the pod completes (Succeeded or Failed); False on timeout."""
        return self.finished.wait(max(0.0, timeout)) and self.phase in ("Succeeded", "Failed")

    # -- the kubelet's side -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._start_sandbox()
            for container in self.init_containers:
                if not self._run_init(container):
                    return
            self.phase, self.reason = "Running", ""
            for container in self.containers:
                self._start(container)
            self._supervise()
        except Exception as error:  # noqa: BLE001 (a bug or an engine failure: the pod fails, visibly)
            if not self.stopping.is_set():
                self.phase, self.reason = "Failed", f"{type(error).__name__}: {error}"
        finally:
            self.finished.set()

    def _start_sandbox(self) -> None:
        aliases = [a for name in self.replay.dns_names(self) for a in ("--network-alias", name)]
        self.replay.docker("run", "--detach", "--name", self.sandbox, "--hostname",
                           (self.spec.get("hostname") or self.name)[:63], "--network", self.replay.network,
                           *aliases, *self.replay.labels(self), "--read-only", "--cap-drop", "ALL",
                           "--user", "65535", "--entrypoint", "sleep", self.replay.pause_image, "infinity")
        self.ip = self.replay.docker.ip(self.sandbox, self.replay.network)
        self.volumes = self.replay.prepare_volumes(self)

    def _run_init(self, container: Container) -> bool:
        """To completion; a failure starts it again after a back-off (restartPolicy Never fails the pod)."""
        while not self.stopping.is_set():
            self.reason = f"init container {container.name} running"
            delay = 10.0  # a container that could not be created: tried again
            if self._start(container):
                code = self.replay.wait_exit(container.docker_name, self.stopping)
                if code is None:
                    return False
                container.running, container.exit_code = False, code
                if code == 0:
                    container.done, container.waiting = True, ""
                    return True
                container.waiting = f"exited {code}"
                if self.policy == "Never":
                    self.phase, self.reason = "Failed", f"init container {container.name} exited {code}"
                    return False
                delay = backoff(container.restarts)
                container.restarts += 1
            self.reason = f"init container {container.name} {container.waiting} (back-off {delay:.0f} s)"
            if self.stopping.wait(delay):
                return False
        return False

    def _start(self, container: Container) -> bool:
        """Creates the container, or starts it again; a config error leaves it waiting."""
        try:
            self.replay.forget_exit(container.docker_name)
            if container.created:
                self.replay.docker("start", container.docker_name)
            else:
                args = self.replay.run_args(self, container)
                self.replay.docker("run", "--detach", "--name", container.docker_name, *args)
                container.created = True
        except (ConfigError, AssertionError) as error:  # AssertionError: docker failed, its stderr says why
            container.waiting = " ".join(str(error).split())[:300]
            if not container.created:  # a container docker created but could not start
                self.replay.docker("rm", "--force", container.docker_name, check=False)
            return False
        container.running, container.started_at, container.waiting = True, time.monotonic(), ""
        declared = {kind: container.spec.get(f"{kind}Probe") for kind in ("startup", "liveness", "readiness")}
        container.probes = {kind: Probe(kind, spec) for kind, spec in declared.items() if spec}
        for probe in container.probes.values():
            probe.next_at = container.started_at + probe.spec.get("initialDelaySeconds", 0)
        container.started = "startup" not in container.probes
        container.ready = container.started and "readiness" not in container.probes
        return True

    def _supervise(self) -> None:
        """Probes, exits and restarts until the pod is deleted or, without restartPolicy Always, done."""
        deadline = self.spec.get("activeDeadlineSeconds")
        while not self.stopping.is_set():
            now = time.monotonic()
            if deadline is not None and now - self.created_at > deadline:
                self.replay.terminate_containers(self, grace=0)
                self.phase, self.reason = "Failed", f"DeadlineExceeded: active for over {deadline} s"
                return
            for container in self.containers:
                self._check(container, now)
            if all(c.done for c in self.containers):
                failed = [c for c in self.containers if c.exit_code]
                self.phase = "Failed" if failed else "Succeeded"
                self.reason = "; ".join(f"container {c.name} exited {c.exit_code}" for c in failed)
                self.replay.docker("rm", "--force", self.sandbox, check=False)
                return
            due = [p.next_at for c in self.containers if c.running for p in c.probes.values()]
            self.stopping.wait(max(0.05, min([now + 0.5, *due]) - time.monotonic()))

    def _check(self, container: Container, now: float) -> None:
        if container.done:
            return
        if container.running:
            code = self.replay.exit_code(container.docker_name)
            if code is None:
                for probe in list(container.probes.values()):
                    if time.monotonic() >= probe.next_at and not self.stopping.is_set():
                        self._probe(container, probe)
                return
            container.running, container.ready, container.exit_code = False, False, code
            if self.policy == "Never" or (self.policy == "OnFailure" and code == 0):
                container.done = True
                return
            container.retry_at = now + backoff(container.restarts)
            container.restarts += 1
            delay = container.retry_at - now
            container.waiting = f"exited {code} ({container.restarts} restarts, back-off {delay:.0f} s)"
        if now >= container.retry_at and not self._start(container):
            container.retry_at = now + 10

    def _probe(self, container: Container, probe: Probe) -> None:
        """Runs a due probe: startup gates the others; a failed startup or liveness probe restarts."""
        if probe.kind != "startup" and not container.started:
            probe.next_at = time.monotonic() + 0.5
            return
        ok, message = run_handler(self.replay.docker, probe.spec, self.ip, container,
                                  probe.spec.get("timeoutSeconds", 1))
        verdict = probe.record(ok, message)
        if probe.kind == "startup" and verdict == "pass":
            container.started, container.ready = True, "readiness" not in container.probes
            del container.probes["startup"]  # it runs until it passes once
        elif probe.kind == "readiness" and verdict:
            container.ready = verdict == "pass"
        elif verdict == "fail" and probe.kind != "readiness" and not self.stopping.is_set():
            container.waiting = f"killed: {probe.kind} probe failed {probe.failures} times ({message})"
            container.ready = False
            self.replay.stop_container(self, container, probe.spec.get("terminationGracePeriodSeconds"))

    # -- the API's side -----------------------------------------------------------------------------------
    def terminate(self, grace: float | None = None) -> dict[str, int | None]:
        """Deletion: unready at once, then each running container's preStop hook, SIGTERM, and SIGKILL once
        the grace period is over; returns their exit codes."""
        self.terminating, started = True, time.monotonic()
        self.stopping.set()
        self.thread.join(timeout=60)
        if self.phase not in ("Succeeded", "Failed"):
            self.exit_codes = self.replay.terminate_containers(self, grace)
            self.phase, self.reason = "Terminated", f"deleted in {time.monotonic() - started:.1f} s"
        self.replay.docker("rm", "--force", self.sandbox, check=False)
        return self.exit_codes

    def describe(self, lines: int = 5) -> str:
        """Why the pod is not ready, or failed: its state, its containers' last probe results, and the last
        log lines of the first container in the way."""
        parts, culprit = [], None
        pending_init = [c for c in self.init_containers if not c.done][:1]
        for c in pending_init or self.containers:
            bits = [c.waiting] if c.waiting else []
            bits += [f"{p.kind} {p.last} ({p.failures} failures in a row)"
                     for p in c.probes.values() if p.failures]
            if not c.running and c.exit_code is not None and not bits:
                bits.append(f"exited {c.exit_code}")
            if c.running and not bits:
                bits.append(f"running for {time.monotonic() - c.started_at:.0f} s"
                            + ("" if c.started or c in pending_init else ", startup probe not passed yet"))
            if c.restarts:
                bits.append(f"{c.restarts} restarts")
            kind = "init container" if c in pending_init else "container"
            parts.append(f"{kind} {c.name}: {'; '.join(bits) or 'ready'}")
            if culprit is None and (c in pending_init or not c.ready):
                culprit = c
        state = f"{self.phase}: {self.reason}" if self.reason else self.phase
        text = f"pod {self.name} ({state}): " + " | ".join(parts)
        if culprit is not None and culprit.created:
            logs = "\n".join(f"    {line}" for line in self.replay.logs(culprit.docker_name, lines))
            text += f"; last log lines of {culprit.name}:\n{logs}"
        return text


# --- Controllers -----------------------------------------------------------------------------------------
class Workload:
    """A Deployment, StatefulSet, DaemonSet (one node: one pod) or bare Pod, and its pods, kept as its
    controller keeps them: replicas, rolling updates, scale-down deleting the least useful pods first."""

    def __init__(self, replay: "Replay", obj: dict):
        self.replay, self.obj, self.kind, self.name = replay, obj, obj["kind"], obj["metadata"]["name"]
        # Kubernetes defaults spec.replicas to 1 (e.g. a Deployment an autoscaler owns renders none).
        self.replicas = obj["spec"].get("replicas", 1) if self.kind in ("Deployment", "StatefulSet") else 1
        self.pods: list[Pod] = []
        self.stopped: list[Pod] = []  # pods deleted by scale-down or rollout, with their exit codes
        self.rolling: threading.Thread | None = None
        self.error = ""

    @property
    def ref(self) -> str:
        return f"{self.kind.lower()}/{self.name}"

    @property
    def template(self) -> dict:
        return self.obj if self.kind == "Pod" else self.obj["spec"]["template"]

    def new_pod(self, ordinal: int = 0) -> Pod:
        """A pod of the current template, named and labelled as its controller does."""
        template, revision = copy.deepcopy(self.template), template_hash(self.template)
        template.setdefault("metadata", {}).setdefault("namespace", self.obj["metadata"].get("namespace"))
        labels = template["metadata"].setdefault("labels", {})
        if self.kind == "StatefulSet":
            name = f"{self.name}-{ordinal}"
            labels.update({"controller-revision-hash": f"{self.name}-{revision}",
                           "statefulset.kubernetes.io/pod-name": name})
            template["spec"].update(hostname=name, subdomain=self.obj["spec"].get("serviceName", ""))
            for claim in self.obj["spec"].get("volumeClaimTemplates", []):
                volume = claim["metadata"]["name"]
                template["spec"].setdefault("volumes", []).append(
                    {"name": volume, "persistentVolumeClaim": {"claimName": f"{volume}-{name}"}})
        elif self.kind == "Deployment":
            labels["pod-template-hash"] = revision
            name = f"{self.name}-{revision}-{suffix()}"
        else:
            name = self.name if self.kind == "Pod" else f"{self.name}-{suffix()}"
        return Pod(self.replay, name, template, revision).start()

    def current(self, pod: Pod) -> bool:
        return pod.revision == template_hash(self.template)

    def ready_count(self) -> int:
        return sum(p.ready and self.current(p) for p in self.pods)

    def settled(self) -> bool:
        """What --wait waits for: the replicas ready on the current template, no rollout under way."""
        return (self.ready_count() >= self.replicas and all(self.current(p) for p in self.pods)
                and not (self.rolling and self.rolling.is_alive()))

    def scale(self, replicas: int) -> list[Pod]:
        """Starts or deletes pods to reach the count; returns the deleted pods (terminating in threads)."""
        self.replicas = replicas
        ordered = self.kind == "StatefulSet" and self.obj["spec"].get("podManagementPolicy") != "Parallel"
        while len(self.pods) < replicas:
            self.pods.append(self.new_pod(ordinal=len(self.pods)))
            if ordered and len(self.pods) < replicas:  # OrderedReady: the next pod once this one is ready
                self.replay.wait_until(lambda p=self.pods[-1]: p.ready, self.replay.timeout, "ordered start")
        if self.kind == "StatefulSet":  # the highest ordinals go
            extra = self.pods[replicas:][::-1]
        else:  # the ReplicaSet's ranking: unready pods first, then the newest
            extra = sorted(self.pods, key=lambda p: (p.ready, -p.created_at))[:len(self.pods) - replicas]
        for pod in extra:
            self.delete(pod, wait=ordered)
        return extra

    def delete(self, pod: Pod, wait: bool) -> None:
        self.pods.remove(pod)
        self.stopped.append(pod)
        pod.deleting = threading.Thread(target=pod.terminate, name=f"delete {pod.name}", daemon=True)
        pod.deleting.start()
        if wait:
            pod.deleting.join()

    def roll(self, new_obj: dict) -> None:
        """A changed pod template: the pods replaced in a thread, as a Deployment's RollingUpdate (maxSurge,
        maxUnavailable) or Recreate strategy does, or a StatefulSet's rolling update (one pod at a time)."""
        self.obj = new_obj
        self.rolling = threading.Thread(target=self._roll, name=f"roll {self.ref}", daemon=True)
        self.rolling.start()

    def _roll(self) -> None:
        deadline = time.monotonic() + self.replay.timeout
        try:
            if self.kind != "Deployment":  # the highest ordinal first: delete, start again, wait ready
                for index in reversed(range(len(self.pods))):
                    self.delete(self.pods[index], wait=True)
                    self.pods.insert(index, self.new_pod(ordinal=index))
                    self.replay.wait_until(lambda i=index: self.pods[i].ready, deadline - time.monotonic(),
                                           f"{self.pods[index].name} ready")
                return
            strategy = self.obj["spec"].get("strategy", {})
            if strategy.get("type") == "Recreate":
                for pod in list(self.pods):
                    self.delete(pod, wait=True)
            rolling = strategy.get("rollingUpdate", {})
            surge = scaled(rolling.get("maxSurge", "25%"), self.replicas, round_up=True)
            unavailable = scaled(rolling.get("maxUnavailable", "25%"), self.replicas, round_up=False)
            unavailable = unavailable or (0 if surge else 1)
            while any(not self.current(p) for p in self.pods) or len(self.pods) < self.replicas:
                if time.monotonic() > deadline:
                    raise ReplayError(f"rollout not done after {self.replay.timeout:.0f} s")
                new = [p for p in self.pods if self.current(p)]
                while len(new) < self.replicas and len(self.pods) < self.replicas + surge:
                    new.append(self.new_pod())
                    self.pods.append(new[-1])
                available = sum(p.ready for p in self.pods)
                for pod in sorted((p for p in self.pods if not self.current(p)), key=lambda p: p.ready):
                    if pod.ready and available - 1 < self.replicas - unavailable:
                        break
                    available -= pod.ready
                    self.delete(pod, wait=False)
                time.sleep(0.5)
        except Exception as error:  # noqa: BLE001 (reported by describe(), as `kubectl rollout status` would)
            self.error = str(error)

    def describe(self, waited: float) -> str:
        head = f"{self.kind.lower()} {self.name} {self.ready_count()}/{self.replicas} ready"
        head += f" after {waited:.0f} s"
        head += f" ({self.error})" if self.error else ""
        unready = [p for p in self.pods if not p.ready] or [p for p in self.pods if not self.current(p)]
        return "; ".join([head] + [p.describe() for p in unready[:2]])


class Job:
    """A Job to completion: pods one after the other until `completions` succeed; each failure counts
    against backoffLimit (the next pod after 10 s, 20 s, ...); activeDeadlineSeconds bounds the whole."""

    def __init__(self, replay: "Replay", obj: dict):
        self.replay, self.obj, self.name = replay, obj, obj["metadata"]["name"]
        self.pods: list[Pod] = []

    def run(self, timeout: float) -> None:
        spec = self.obj["spec"]
        limit, completions = spec.get("backoffLimit", 6), spec.get("completions", 1)
        deadline = time.monotonic() + min(timeout, spec.get("activeDeadlineSeconds") or math.inf)
        failures = succeeded = 0
        while succeeded < completions:
            template = copy.deepcopy(spec["template"])
            template.setdefault("metadata", {}).setdefault("namespace", self.obj["metadata"].get("namespace"))
            pod = Pod(self.replay, f"{self.name}-{suffix()}", template).start()
            self.pods.append(pod)
            if not pod.wait(deadline - time.monotonic()):
                pod.terminate()
                raise ReplayError(f"job {self.name}: DeadlineExceeded; {pod.describe()}")
            if pod.phase == "Succeeded":
                succeeded += 1
                continue
            failures += 1 + sum(c.restarts for c in pod.containers)
            if failures > limit:
                raise ReplayError(f"job {self.name}: BackoffLimitExceeded ({failures} failures, backoffLimit "
                                  f"{limit}); {pod.describe()}")
            time.sleep(min(backoff(failures, cap=360), max(0.0, deadline - time.monotonic())))


# --- The replay ------------------------------------------------------------------------------------------
class Replay:
    """One release on a private Docker network of its own: `install`, `test`, `scale`, `upgrade`, then
    `cleanup`. `lookups` maps value paths to the (Secret, key) where the chart keeps what it generates when
    they are empty (see `render`); `post_render` transforms the rendered objects (Helm's --post-renderer);
    `pause_image` runs the pods' sandboxes (`sleep infinity`); `limits` applies resources.limits."""

    def __init__(self, docker, chart: Path, *, pause_image: str, release: str = "demo",
                 namespace: str = "salad", lookups: dict[str, tuple[str, str]] | None = None,
                 post_render: Callable[[list[dict]], list[dict]] | None = None, limits: bool = True):
        self.docker, self.chart, self.pause_image, self.limits = docker, Path(chart), pause_image, limits
        self.release, self.namespace, self.post_render = release, namespace, post_render
        self.lookups = lookups or {}
        self.run = uuid.uuid4().hex[:8]
        self.network = f"salad-replay-{self.run}"
        self.workdir = WORKDIR / f"{self.run}-{os.getpid()}"
        self.timeout = 240.0
        self.objects: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) -> live object
        self.manifest: list[dict] = []  # the release's own objects, as last applied
        self.hooks: list[dict] = []  # the hooks of the last render
        self.workloads: dict[tuple[str, str], Workload] = {}  # (kind, name) -> its controller
        self.jobs: list[Job] = []
        self.hook_pods: list[Pod] = []
        self.kept: dict[str, str] = {}  # generated values, as `lookup` would find them
        self.notes: list[str] = []
        self._images: dict[str, dict] = {}
        self._exits: dict[str, int] = {}
        self._exits_changed = threading.Condition()
        self._events = subprocess.Popen(  # container exits as they happen
            [docker.path, "events", "--format", "{{json .}}", "--filter", "type=container",
             "--filter", "event=die", "--filter", f"label={LABEL}={self.run}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=docker.env)
        atexit.register(self._events.kill)  # also when a test run is interrupted before `cleanup`
        threading.Thread(target=self._watch_events, name="docker events", daemon=True).start()
        self.cleanup(stale_only=True)  # what interrupted runs left
        self.docker("network", "create", "--internal", *self.labels(), self.network)

    # -- Helm ---------------------------------------------------------------------------------------------
    def render(self, values: dict, *, is_install: bool) -> list[dict]:
        """The chart's objects for these values, as Helm renders them.

        Helm's `lookup` returns nothing in the offline SDK, so the values the chart generates when left
        empty (tokens, the database password) would come out different on every render, where real Helm's
        `lookup` finds them in the live Secret and keeps them. The replay does it by hand: every render gets
        the generated values seen so far (`kept`, read from the rendered Secrets at `lookups`) wherever the
        values leave them empty; the install's too, whose values are drawn by a first render, so that install
        and upgrades agree on them (and on the checksums of them in pod templates) unless an upgrade sets new
        ones on purpose."""
        import helm_python as helm

        def once(values: dict) -> list[dict]:
            with helm.Chart.load(self.chart) as chart:
                rendered = chart.render(values=values, name=self.release, namespace=self.namespace,
                                        is_install=is_install, is_upgrade=not is_install)
            objects = [o for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
                       for o in yaml.safe_load_all(text) if o]
            for obj in objects:
                obj["metadata"].setdefault("namespace", self.namespace)
            return self.post_render(objects) if self.post_render else objects

        values = copy.deepcopy(values)
        objects = once(values)
        self.kept = self.kept or self._generated(objects)
        missing = {path: value for path, value in self.kept.items() if not get_path(values, path)}
        for path, value in missing.items():
            set_path(values, path, value)
        objects = once(values) if missing else objects
        self.kept.update(self._generated(objects))
        return objects

    def _generated(self, objects: list[dict]) -> dict[str, str]:
        secrets = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "Secret"}
        return {path: base64.b64decode(secrets[name][key]).decode()
                for path, (name, key) in self.lookups.items() if key in secrets.get(name, {})}

    def install(self, values: dict, *, wait: bool = True, timeout: float = 240) -> None:
        """helm install [--wait]: pre-install hooks, the release's objects, --wait, post-install hooks."""
        self.timeout = timeout
        objects = self.render(values, is_install=True)
        self.hooks = [o for o in objects if hook_events(o)]
        self._hooks("pre-install", timeout)
        self._apply([o for o in objects if not hook_events(o)])
        if wait:
            self.wait_ready(timeout)
        self._hooks("post-install", timeout)

    def upgrade(self, values: dict, *, wait: bool = True, timeout: float = 240) -> list[str]:
        """helm upgrade [--wait]: pre-upgrade hooks, the objects applied (a changed pod template rolls its
        workload), --wait, post-upgrade hooks. Returns the workloads that rolled."""
        self.timeout = timeout
        objects = self.render(values, is_install=False)
        self.hooks = [o for o in objects if hook_events(o)]
        self._hooks("pre-upgrade", timeout)
        rolled = self._apply([o for o in objects if not hook_events(o)])
        if wait:
            self.wait_ready(timeout)
        self._hooks("post-upgrade", timeout)
        return rolled

    def test(self, timeout: float = 300) -> dict[str, dict]:
        """helm test: the `test` hooks run to completion, each must succeed. Returns, per pod, its phase,
        each container's exit code and the pod's log lines."""
        results = {}
        tests = [o for o in self.hooks if {"test", "test-success"} & set(hook_events(o))]
        for obj in sorted(tests, key=hook_order):
            if pod := self._run_hook(obj, "helm test", timeout):
                results[pod.name] = {
                    "phase": pod.phase, "exit_codes": {c.name: c.exit_code for c in pod.containers},
                    "logs": [line for c in pod.containers for line in self.logs(c.docker_name, 40)]}
        return results

    def _hooks(self, event: str, timeout: float) -> None:
        """The hooks of one event, by weight: objects created, Jobs and Pods run to completion (a failure
        fails the phase). Delete policies are not replayed."""
        for obj in sorted((o for o in self.hooks if event in hook_events(o)), key=hook_order):
            self._run_hook(obj, f"{event} hook", timeout)

    def _run_hook(self, obj: dict, phase: str, timeout: float) -> Pod | None:
        self._put(obj)
        what = f"{phase} {obj['kind'].lower()}/{obj['metadata']['name']}"
        if obj["kind"] == "Job":
            self.jobs.append(job := Job(self, obj))
            try:
                job.run(timeout)
            except ReplayError as error:
                raise ReplayError(f"{what} failed: {error}") from None
            return job.pods[-1]
        if obj["kind"] == "Pod":
            self.hook_pods.append(pod := Pod(self, obj["metadata"]["name"], obj).start())
            if not pod.wait(timeout):
                pod.terminate()
                raise ReplayError(f"{what} not done after {timeout:.0f} s: {pod.describe(lines=20)}")
            if pod.phase != "Succeeded":
                raise ReplayError(f"{what} failed: {pod.describe(lines=20)}")
            return pod
        return None

    def _put(self, obj: dict) -> None:
        self.objects[(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def _apply(self, objects: list[dict]) -> list[str]:
        """The release's objects created or updated in Helm's kind order: a workload whose pod template
        changed rolls; a replica count the chart changed applies, an unchanged one keeps what `kubectl scale`
        set (Helm's three-way merge); objects gone from the chart are deleted. Returns what rolled."""
        previous = {(o["kind"], o["metadata"]["name"]): o for o in self.manifest}
        rolled = []
        for obj in sorted(objects, key=kind_order):
            self._put(obj)
            key = (obj["kind"], obj["metadata"]["name"])
            if obj["kind"] == "Job" and key not in previous:  # started, not waited for (no --wait-for-jobs)
                self.jobs.append(job := Job(self, obj))
                threading.Thread(target=job.run, args=(self.timeout,), daemon=True).start()
            if obj["kind"] not in CONTROLLERS:
                continue
            workload = self.workloads.get(key)
            if workload is None:
                self.workloads[key] = workload = Workload(self, obj)
                threading.Thread(target=workload.scale, args=(workload.replicas,), daemon=True).start()
                continue
            old = previous.get(key, workload.obj)
            if obj["kind"] != "Pod" and obj["spec"].get("replicas") != old["spec"].get("replicas"):
                workload.scale(obj["spec"].get("replicas", 1))
            if workload.template != (obj if obj["kind"] == "Pod" else obj["spec"]["template"]):
                workload.roll(obj)
                rolled.append(workload.ref)
            workload.obj = obj
        current = {(o["kind"], o["metadata"]["name"]) for o in objects}
        for key, obj in previous.items():
            if key not in current:
                self.objects.pop((key[0], obj["metadata"]["namespace"], key[1]), None)
                if key in self.workloads:
                    self.workloads.pop(key).scale(0)
        self.manifest = objects
        return rolled

    def wait_ready(self, timeout: float, phase: str = "--wait") -> None:
        """Helm's --wait: every Deployment, StatefulSet, DaemonSet and Pod of the release ready (readiness
        probes passing) on its current template, every rollout done; else an error naming what is not."""
        started = time.monotonic()
        while not all(w.settled() for w in self.workloads.values()):
            if time.monotonic() - started > timeout:
                unready = [w for w in self.workloads.values() if not w.settled()]
                raise ReplayError(f"{phase}: " + "\n".join(w.describe(timeout) for w in unready))
            time.sleep(0.5)

    # -- kubectl ------------------------------------------------------------------------------------------
    def workload(self, ref: str) -> Workload:
        """By reference, as kubectl takes it: deployment/<name>."""
        kind, _, name = ref.partition("/")
        return next(w for (k, n), w in self.workloads.items() if k.lower() == kind.lower() and n == name)

    def scale(self, ref: str, replicas: int, *, wait: bool = True, timeout: float = 120) -> list[Pod]:
        """kubectl scale <ref> --replicas=N; with wait, until the replicas are ready and the deleted pods
        have stopped (their containers' exit codes in `pod.exit_codes`). Returns the deleted pods."""
        workload = self.workload(ref)
        deleted = workload.scale(replicas)
        if wait:
            self.wait_until(lambda: workload.ready_count() >= replicas and not any(
                p.deleting.is_alive() for p in deleted), timeout, f"{ref} scaled to {replicas}")
        return deleted

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise ReplayError(f"{what}: not after {timeout:.0f} s")
            time.sleep(0.2)

    def secret(self, name: str) -> dict[str, str]:
        return self.data("Secret", self.namespace, name)

    def service_pods(self, service: str) -> list[Pod]:
        """The ready pods a Service selects: where its clients would be sent."""
        selector = self.objects[("Service", self.namespace, service)]["spec"].get("selector", {})
        return [p for w in self.workloads.values() for p in w.pods if p.ready and selects(selector, p.labels)]

    def run_outside(self, name: str, image: str, *args: str, env: dict | None = None,
                    aliases: list[str] = ()) -> str:
        """A container beside the release on its network (e.g. an external database under its host name);
        removed with the replay. Returns its name."""
        container = f"salad-replay-{self.run}-{name}"
        self.docker("run", "--detach", "--name", container, "--network", self.network, *self.labels(),
                    *[a for alias in aliases for a in ("--network-alias", alias)],
                    *[f"--env={k}={v}" for k, v in (env or {}).items()], image, *args)
        return container

    # -- Services, env, volumes ---------------------------------------------------------------------------
    def dns_names(self, pod: Pod) -> list[str]:
        """The names a pod answers to: each Service selecting it (<svc>, <svc>.<ns>, <svc>.<ns>.svc,
        <svc>.<ns>.svc.cluster.local), and <hostname>.<subdomain>... under its headless Service."""
        names = []
        for (kind, namespace, name), service in list(self.objects.items()):
            spec = service.get("spec", {})
            if kind != "Service" or namespace != pod.namespace or spec.get("type") == "ExternalName":
                continue
            bases = [name] if selects(spec.get("selector", {}), pod.labels) else []
            if spec.get("clusterIP") == "None" and pod.spec.get("subdomain") == name:
                bases.append(f"{pod.spec.get('hostname') or pod.name}.{name}")
            domains = ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")
            names += [f"{base}{domain}" for base in bases for domain in domains]
            for port in spec.get("ports", []) if bases[:1] == [name] else []:
                target = port.get("targetPort", port["port"])
                owners = [c for c in pod.spec["containers"] if isinstance(target, int)
                          or any(p.get("name") == target for p in c.get("ports", []))]
                if owners and container_port(owners[0], target) != port["port"]:
                    note = f"Service {name}: port {port['port']} -> {target}; replayed: to {port['port']}"
                    self.notes += [note] if note not in self.notes else []
        return names

    def data(self, kind: str, namespace: str, name: str, optional: bool = False) -> dict[str, str]:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            if optional:
                return {}
            raise ConfigError(f'CreateContainerConfigError: {kind.lower()} "{name}" not found')
        if kind == "Secret":
            encoded = obj.get("data") or {}
            data = {k: base64.b64decode(v).decode(errors="replace") for k, v in encoded.items()}
            return {**data, **(obj.get("stringData") or {})}
        return {k: str(v) for k, v in (obj.get("data") or {}).items()}

    def container_env(self, pod: Pod, spec: dict) -> dict[str, str]:
        """envFrom, then env in order (a value may use $(VAR) of the variables before it)."""
        env: dict[str, str] = {}
        for source in spec.get("envFrom", []):
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if ref := source.get(key):
                    data = self.data(kind, pod.namespace, ref["name"], ref.get("optional", False))
                    env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "metadata.uid": pod.uid,
                  "status.podIP": pod.ip, "spec.nodeName": "replay",
                  "spec.serviceAccountName": pod.spec.get("serviceAccountName", "default")}
        for var in spec.get("env", []):
            source = var.get("valueFrom", {})
            if "valueFrom" not in var:
                env[var["name"]] = expand(var.get("value", ""), env)
            elif ref := source.get("fieldRef"):
                labels = re.fullmatch(r"metadata\.labels\['(.+)'\]", ref["fieldPath"])
                env[var["name"]] = pod.labels.get(labels.group(1), "") if labels else fields[ref["fieldPath"]]
            for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                if ref := source.get(key):
                    data = self.data(kind, pod.namespace, ref["name"], ref.get("optional", False))
                    if ref["key"] not in data and not ref.get("optional"):
                        raise ConfigError(f"CreateContainerConfigError: couldn't find key {ref['key']} in "
                                          f"{kind} {pod.namespace}/{ref['name']}")
                    env.update({var["name"]: data[ref["key"]]} if ref["key"] in data else {})
        return env

    def prepare_volumes(self, pod: Pod) -> dict[str, tuple[str, str]]:
        """Pod volume -> (mount type, source): an emptyDir a directory (0777, with fsGroup group-owned and
        setgid, as the kubelet makes it), a PersistentVolumeClaim a named Docker volume."""
        sources = {}
        group = pod.spec.get("securityContext", {}).get("fsGroup")
        for volume in pod.spec.get("volumes", []):
            if "emptyDir" in volume:
                path = self.workdir / pod.name / pod.uid / volume["name"]
                path.mkdir(parents=True)
                os.chown(path, -1, -1 if group is None else group)
                path.chmod(0o777 if group is None else 0o2777)
                sources[volume["name"]] = ("bind", str(path))
            elif claim := volume.get("persistentVolumeClaim"):
                volume_name = self.claim_volume(claim["claimName"], pod.namespace, group)
                sources[volume["name"]] = ("volume", volume_name)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise ConfigError(f"volume {volume['name']}: {kinds} is not replayed")
        return sources

    def claim_volume(self, claim: str, namespace: str, group: int | None) -> str:
        """A PersistentVolumeClaim: a named Docker volume, kept while the replay lives (across pod restarts
        and rollouts); with fsGroup its root group-owned, group-writable and setgid, as the kubelet does."""
        name = f"salad-replay-{self.run}-{namespace}-{claim}"
        if self.docker("volume", "inspect", name, check=False).returncode != 0:
            self.docker("volume", "create", *self.labels(), name)
            mountpoint = self.docker("volume", "inspect", "--format", "{{.Mountpoint}}", name).stdout.strip()
            if group is not None and os.path.isdir(mountpoint):  # an engine on this machine
                os.chown(mountpoint, -1, group)
                os.chmod(mountpoint, 0o2775)
        return name

    # -- containers ---------------------------------------------------------------------------------------
    def labels(self, pod: Pod | None = None) -> list[str]:
        return run_labels(LABEL, self.run) + (["--label", f"{LABEL}.pod={pod.name}"] if pod else [])

    def image(self, reference: str) -> dict:
        if reference not in self._images:
            result = self.docker("image", "inspect", reference, check=False)
            if result.returncode != 0:
                raise ConfigError(f"ErrImageNeverPull: image {reference} is not present (nothing is pulled)")
            self._images[reference] = json.loads(result.stdout)[0]
        return self._images[reference]

    def run_args(self, pod: Pod, container: Container) -> list[str]:
        """`docker run` arguments for a container spec: env, securityContext, resource limits, volumes and
        command/args (command replaces the image's ENTRYPOINT, and its CMD with it; args replaces CMD)."""
        spec = container.spec
        env = self.container_env(pod, spec)
        args = ["--network", f"container:{pod.sandbox}", *self.labels(pod)]
        args += [f"--env={k}={v}" for k, v in env.items()]
        args += ["--workdir", spec["workingDir"]] if spec.get("workingDir") else []
        args += self.security_args(pod, spec, self.image(spec["image"]))
        limits = spec.get("resources", {}).get("limits", {}) if self.limits else {}
        if "memory" in limits:
            memory = f"{int(quantity(limits['memory']))}b"
            args += ["--memory", memory, "--memory-swap", memory]  # no swap, as on a node
        if "cpu" in limits:
            args += ["--cpus", f"{quantity(limits['cpu']):g}"]
        for mount in spec.get("volumeMounts", []):
            if mount.get("subPath"):
                raise ConfigError(f"volumeMount {mount['name']}: subPath is not replayed")
            kind, source = pod.volumes[mount["name"]]
            options = ",volume-nocopy" if kind == "volume" else ""
            options += ",readonly" if mount.get("readOnly") else ""
            args += ["--mount", f"type={kind},src={source},dst={mount['mountPath']}{options}"]
        command = [expand(a, env) for a in spec.get("command") or []]
        arguments = [expand(a, env) for a in spec.get("args") or []]
        if command:
            return [*args, "--entrypoint", command[0], spec["image"], *command[1:], *arguments]
        return [*args, spec["image"], *arguments]

    def security_args(self, pod: Pod, spec: dict, image: dict) -> list[str]:
        """The pod's and the container's securityContext (the container's wins) as Docker flags."""
        pod_context = pod.spec.get("securityContext", {})
        inherited = ("runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile")
        context = {k: v for k, v in pod_context.items() if k in inherited} | spec.get("securityContext", {})
        image_user = (image["Config"].get("User") or "0").split(":")[0]
        user, group = context.get("runAsUser"), context.get("runAsGroup")
        effective = image_user if user is None else str(user)
        args = [] if user is None and group is None else [
            "--user", effective if group is None else f"{effective}:{group}"]
        if context.get("runAsNonRoot") and not effective.isdigit():
            raise ConfigError(f"CreateContainerConfigError: image has non-numeric user ({effective}), cannot "
                              "verify user is non-root")
        if context.get("runAsNonRoot") and effective == "0":
            raise ConfigError("CreateContainerConfigError: runAsNonRoot and the image will run as root")
        for gid in [pod_context.get("fsGroup"), *pod_context.get("supplementalGroups", [])]:
            args += ["--group-add", str(gid)] if gid is not None else []
        args += ["--read-only"] if context.get("readOnlyRootFilesystem") else []
        no_escalation = context.get("allowPrivilegeEscalation") is False
        args += ["--security-opt", "no-new-privileges"] if no_escalation else []
        args += ["--privileged"] if context.get("privileged") else []
        args += [a for cap in context.get("capabilities", {}).get("drop", []) for a in ("--cap-drop", cap)]
        args += [a for cap in context.get("capabilities", {}).get("add", []) for a in ("--cap-add", cap)]
        if context.get("seccompProfile", {}).get("type") == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        return args

    def _watch_events(self) -> None:
        for line in self._events.stdout:
            attributes = json.loads(line)["Actor"]["Attributes"]
            with self._exits_changed:
                self._exits[attributes["name"]] = int(attributes.get("exitCode", -1))
                self._exits_changed.notify_all()

    def forget_exit(self, name: str) -> None:
        with self._exits_changed:
            self._exits.pop(name, None)

    def exit_code(self, name: str) -> int | None:
        return self._exits.get(name)

    def wait_exit(self, name: str, stop: threading.Event) -> int | None:
        """The exit code once the container exits (from `docker events`, and by inspect now and then in case
        an event was missed); None if `stop` is set first."""
        while not stop.is_set():
            with self._exits_changed:
                if self._exits_changed.wait_for(lambda: name in self._exits, timeout=5):
                    return self._exits[name]
            state = self.docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", name,
                                check=False).stdout.split()
            if state and state[0] == "false":
                return int(state[1])
        return None

    def logs(self, name: str, lines: int = 5) -> list[str]:
        result = self.docker("logs", "--tail", str(lines), name, check=False)
        return [line[:240] for line in (result.stdout + result.stderr).splitlines()[-lines:]]

    def stop_container(self, pod: Pod, container: Container, grace: float | None = None) -> int | None:
        """preStop hook, then SIGTERM (the image's stop signal), SIGKILL once the grace period is over."""
        grace = pod.spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace
        started = time.monotonic()
        if (pre_stop := container.spec.get("lifecycle", {}).get("preStop")) and grace > 0:
            run_handler(self.docker, pre_stop, pod.ip, container, grace)
        remaining = max(0, math.ceil(grace - (time.monotonic() - started)))
        self.docker("stop", "--time", str(remaining), container.docker_name, check=False,
                    timeout=remaining + 60)
        state = self.docker("inspect", "--format", "{{.State.ExitCode}}", container.docker_name, check=False)
        return int(state.stdout.strip()) if state.returncode == 0 else None

    def terminate_containers(self, pod: Pod, grace: float | None) -> dict[str, int | None]:
        """Every running container of the pod stopped at once, each within the pod's grace period."""
        codes: dict[str, int | None] = {}
        def stop(container: Container) -> None:
            codes[container.name] = self.stop_container(pod, container, grace)

        threads = [threading.Thread(target=stop, args=(c,)) for c in pod.init_containers + pod.containers
                   if c.running]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return codes

    # -- clean-up -----------------------------------------------------------------------------------------
    def cleanup(self, stale_only: bool = False) -> None:
        """Removes this replay's containers, volumes, network and directories; with stale_only, those of
        replays whose process is gone (interrupted runs), and nothing of a replay still running."""
        if not stale_only:
            for pod in self.all_pods():
                pod.stopping.set()
            self._events.kill()
        remove_runs(self.docker, LABEL, None if stale_only else self.run)
        for directory in WORKDIR.iterdir() if WORKDIR.is_dir() else []:
            run, _, pid = directory.name.partition("-")
            if run == self.run or (stale_only and pid.isdigit() and not os.path.exists(f"/proc/{pid}")):
                shutil.rmtree(directory, ignore_errors=True)

    def all_pods(self) -> list[Pod]:
        return ([p for w in self.workloads.values() for p in w.pods + w.stopped]
                + [p for j in self.jobs for p in j.pods] + self.hook_pods)
