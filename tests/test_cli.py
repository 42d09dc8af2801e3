"""The `salad` command as a user runs it: demo and up on the embedded PostgreSQL, order/status/workers."""

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from salad.cli.stack import free_port


def salad(*args: str, timeout: float = 120, cwd: Path | None = None,
          **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "salad", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "COLUMNS": "120", **env})


def test_demo_runs_a_salad_on_the_embedded_default_and_prints_its_completion_time(tmp_path):
    done = salad("demo", "--fruits", "6", "--workers", "2", "--time-scale", "0.02", timeout=300)  # > start timeout

    assert done.returncode == 0, done.stdout + done.stderr
    assert "The salad is ready! Enjoy!" in done.stdout
    assert "6 fruits in" in done.stdout
    assert "worker-1" in done.stdout and "worker-2" in done.stdout


@pytest.fixture
def workdir():
    """A working folder for `salad up` that other users may enter: as root, the embedded PostgreSQL runs as
    its own user, which must reach .salad/postgres (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="salad-up-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def salad_up(folder: Path) -> tuple[subprocess.Popen, str]:
    """`salad up` in `folder`, on its embedded PostgreSQL, until its stack is up (its client token written);
    returns the process and Shared's URL."""
    import os

    token_file = folder / ".salad" / "client.token"
    token_file.unlink(missing_ok=True)
    shared_port, master_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "SALAD_DATABASE_URL"} | {"COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "salad", "up", "--workers", "1", "--time-scale", "0.01",
         "--shared-port", str(shared_port), "--master-port", str(master_port)],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C works, even under `&`
    deadline = time.monotonic() + 240  # PostgreSQL, then the services (START_TIMEOUT: 120 s)
    while not (token_file.exists() and token_file.read_text()):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "salad up did not start"
        time.sleep(0.2)
    return process, f"http://127.0.0.1:{shared_port}"


def stop(process: subprocess.Popen, sig: int) -> str:
    process.send_signal(sig)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 0, output
    return output


def test_up_keeps_its_postgresql_between_runs_and_stops_it_on_sigterm_and_ctrl_c(workdir):
    pid_file = workdir / ".salad" / "postgres" / "postmaster.pid"
    first, shared_url = salad_up(workdir)
    assert pid_file.exists()
    ordered = salad("order", "apple", "kiwi", "--wait", "--json", "--shared-url", shared_url, cwd=workdir)
    assert ordered.returncode == 0, ordered.stdout + ordered.stderr
    order_id = json.loads(ordered.stdout)["id"]
    stop(first, signal.SIGTERM)
    assert not pid_file.exists(), "salad up left its PostgreSQL running"

    second, shared_url = salad_up(workdir)
    try:
        shown = salad("status", str(order_id), "--json", "--shared-url", shared_url, cwd=workdir)
    finally:
        output = stop(second, signal.SIGINT)

    assert "starting PostgreSQL in .salad/postgres" in output
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert json.loads(shown.stdout)["status"] == "completed"
    assert not pid_file.exists(), "salad up left its PostgreSQL running after Ctrl-C"


def test_demo_reports_a_service_that_cannot_start_with_the_end_of_its_log():
    broken = salad("demo", "--fruits", "2", SALAD_MAX_FRUITS="0")

    assert broken.returncode == 1
    assert "error: shared exited with code 1; its log" in broken.stdout, broken.stdout + broken.stderr
    assert "max_fruits" in broken.stdout  # the log's last lines say which setting
    assert "Traceback" not in broken.stdout + broken.stderr


@pytest.fixture
def stack(make_stack, postgres_url):
    return make_stack(postgres_url, workers=2, slots=2, time_scale=0.01,
                      env={"SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"})


def test_order_wait_json_status_and_workers(stack):
    ordered = salad("order", "apple", "kiwi", "mango", "--wait", "--json", "--shared-url", stack.shared_url,
                    SALAD_CLIENT_TOKEN=stack.client_token)

    assert ordered.returncode == 0, ordered.stderr
    final = json.loads(ordered.stdout)
    assert final["status"] == "completed" and final["counts"]["done"] == 3

    shown = salad("status", str(final["id"]), "--shared-url", stack.shared_url, "--token", stack.client_token)
    assert shown.returncode == 0 and "completed" in shown.stdout and "kiwi" in shown.stdout

    listed = json.loads(salad("workers", "--json", "--master-url", stack.master_url,
                              SALAD_CLIENT_TOKEN=stack.client_token).stdout)
    assert sorted(w["name"] for w in listed) == ["worker-1", "worker-2"]


def test_order_wait_shows_progress_and_the_completion_time(stack):
    ordered = salad("order", "pear", "plum", "--wait", "--shared-url", stack.shared_url,
                    SALAD_CLIENT_TOKEN=stack.client_token)

    assert ordered.returncode == 0, ordered.stderr
    assert "2/2" in ordered.stdout
    assert "The salad is ready! Enjoy!" in ordered.stdout


def test_clear_errors_for_an_unreachable_service_and_a_refused_order(stack):
    nowhere = f"http://127.0.0.1:{free_port()}"

    unreachable = salad("order", "apple", "--shared-url", nowhere)
    refused = salad("order", "", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN=stack.client_token)
    missing = salad("status", "424242", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN=stack.client_token)
    wrong_token = salad("order", "apple", "--shared-url", stack.shared_url, SALAD_CLIENT_TOKEN="not-a-token")

    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stdout
    assert refused.returncode == 1 and "422" in refused.stdout and "fruits.0" in refused.stdout
    assert missing.returncode == 1 and "order 424242 not found" in missing.stdout
    assert wrong_token.returncode == 1 and "401" in wrong_token.stdout and "SALAD_CLIENT_TOKEN" in wrong_token.stdout


def test_failed_lists_failed_tasks_and_requeue_resumes_their_order(make_stack, postgres_url):
    limits = {"SALAD_TASK_TIMEOUT_SECONDS": "0.2", "SALAD_EXECUTION_TIME_MIN": "30", "SALAD_EXECUTION_TIME_MAX": "30",
              "SALAD_MAX_ATTEMPTS": "2", "SALAD_INTAKE_INTERVAL": "0.1", "SALAD_OUTBOX_INTERVAL": "0.1"}
    stack = make_stack(postgres_url, workers=1, slots=1, time_scale=1.0, env=limits)
    auth = {"SALAD_CLIENT_TOKEN": stack.client_token, "SALAD_MASTER_URL": stack.master_url}
    ordered = json.loads(salad("order", "coconut", "--wait", "--json", "--shared-url", stack.shared_url, **auth).stdout)
    assert ordered["status"] == "failed"

    listed = json.loads(salad("failed", "--json", "--order", str(ordered["id"]), **auth).stdout)
    table = salad("failed", **auth)
    requeued = salad("requeue", "--order", str(ordered["id"]), **auth)
    neither = salad("requeue", **auth)

    assert [(t["fruit"], len(t["failures"]), t["failures"][0]["worker"]) for t in listed] == [("coconut", 2, "worker-1")]
    assert "coconut" in table.stdout and "stopped after 0.2 s" in table.stdout
    assert requeued.returncode == 0 and "1 task(s) queued again" in requeued.stdout
    assert neither.returncode == 1 and "TASK_ID or --order" in neither.stdout
