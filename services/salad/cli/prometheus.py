"""A local Prometheus scraping a local stack (`salad up --prometheus`, and the observability tests)."""

import json
import shutil
import subprocess
from pathlib import Path
from string import Template

CONFIG_TEMPLATE = Path(__file__).with_name("prometheus-local.yml")
REPO_RULES = Path(__file__).resolve().parents[3] / "helm" / "salad" / "rules" / "salad-rules.yaml"  # in a checkout
JOBS = ("salad-shared", "salad-master", "salad-worker")  # the job names the chart's ServiceMonitors give
APT_HINT = "install Debian's package: apt-get install -y prometheus (it provides prometheus and promtool)"
# What `salad up --prometheus` suggests to query, each showing data once a salad is done: the queue depth, and
# the p95 salad completion time (a histogram's bare name has no series; its quantiles come from _bucket).
TRY_QUERIES = (
    "max(salad_queue_depth)",
    "histogram_quantile(0.95, sum by (le) (rate(salad_order_completion_seconds_bucket[5m])))",
)


def find_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found on PATH: {APT_HINT}")
    return path


def render_config(targets: dict[str, list[str]], scrape_interval: str = "5s", rule_files: list = ()) -> str:
    """The config template filled in: `targets` maps each job to its host:port list."""
    values = {f"{job.removeprefix('salad-').upper()}_TARGETS": json.dumps(list(targets.get(job, [])))
              for job in JOBS}
    values["SCRAPE_INTERVAL"] = scrape_interval
    values["RULE_FILES"] = json.dumps([str(f) for f in rule_files])
    return Template(CONFIG_TEMPLATE.read_text()).substitute(values)


def start(config: str, workdir: Path, port: int, log=subprocess.DEVNULL) -> subprocess.Popen:
    """Start Prometheus with `config` on 127.0.0.1:port, storing its data in workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(config)
    return subprocess.Popen([
        find_binary("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
    ], stdout=log, stderr=subprocess.STDOUT)
